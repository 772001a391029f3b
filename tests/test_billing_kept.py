"""Events that arrive before their Stripe customer is linked to an account (a Payment Link or Pricing Table customer,
whose only pointer to the account is the checkout session's `client_reference_id`): kept, then applied by the
delivery that links the customer, exactly once, also when two instances of the webhook race.

"Another instance" is the webhook service called with a Store of its own (its own Firestore client on the same
emulator project), timed to run inside this instance's delivery, between its read and its commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from shared.adapters.firestore import Store, firestore_client
from shared.services import billing as billing_service
from tests import billing_support, test_store_down
from tests.billing_support import (
    DAY,
    PRICE_PRO,
    checkout_session,
    customer_tenant,
    deliver,
    deliver_live,
    event,
    now_s,
    receive_elsewhere,
    stored_account,
    subscription,
    uid,
)
from tests.helpers import ref, snapshot_all

billing_env = billing_support.billing_env  # fixture
outage = test_store_down.outage  # fixture: the product's store behind a cuttable proxy


@pytest.fixture
def other_instance(emulator, project_id) -> Store:
    return Store(firestore_client(project_id), timeout_seconds=10)


class Hosted:
    """An account paying through a Payment Link: a customer qorch never saw, and its subscription."""

    def __init__(self, api) -> None:
        self.tenant = customer_tenant(api)
        self.account_id = self.tenant.account_id
        self.customer, self.sub, self.t = uid("cus_link"), uid("sub"), now_s() - 100

    def checkout(self, account_id: str | None = None, at: int = 0, sub: str | None = None) -> dict:
        return event("checkout.session.completed",
                     checkout_session(account_id or self.account_id, self.customer, sub or self.sub, metadata=False),
                     self.t + at)

    def sub_event(self, status: str, at: int, kind: str = "updated", account_id: str | None = None) -> dict:
        return event(f"customer.subscription.{kind}",
                     subscription(self.sub, self.customer, status, PRICE_PRO, self.t + 30 * DAY,
                                  account_id=account_id), self.t + at)

    def life(self, n: int) -> list[dict]:
        """`n` events of the subscription, oldest first, that end `active` (statuses alternate before that)."""
        statuses = [("active" if (n - 1 - i) % 2 == 0 else "past_due") for i in range(n)]
        return [self.sub_event("incomplete", 1, "created")] + [self.sub_event(s, 1 + i)
                                                                for i, s in enumerate(statuses[1:], 1)]


def entitlement(api, hosted: Hosted) -> tuple[bool, str, str]:
    body = api.get("/v1/account", hosted.tenant.owner).body
    return body["entitlement"]["entitled"], body["entitlement"]["status"], body["plan"]


def before_first_commit(monkeypatch, store: Store, action: Callable[[], None]) -> list[bool]:
    """Run `action` once, just before `store`'s next commit goes out (after the delivery decided on what it read)."""
    real, fired = store.commit, []

    def commit(writes):
        if not fired:
            fired.append(True)
            action()
        return real(writes)

    monkeypatch.setattr(store, "commit", commit)
    return fired


def kept_record(api, event_id: str) -> dict:
    return api.store.get(api.store.stripe_unmatched(event_id)).data


def event_record(api, event_id: str) -> dict:
    return api.store.get(api.store.stripe_event(event_id)).data


# ---- kept, then applied by the link -----------------------------------------------------------------------------


def test_events_before_the_link_are_kept_and_the_link_applies_them_in_stripes_order(api, billing_env):
    h = Hosted(api)
    # Stripe's order: created incomplete, updated past_due, updated active; they arrive newest first.
    kept = [h.sub_event("incomplete", 1, "created"), h.sub_event("past_due", 2), h.sub_event("active", 3)]
    for ev in reversed(kept):
        r = deliver(api, ev)
        assert r.status == 200 and r.body["outcome"] == "unmatched"
    pending = api.store.get(api.store.stripe_customer(h.customer)).data
    assert pending["account_id"] is None and set(pending["pending"]) == {e["id"] for e in kept}
    assert entitlement(api, h) == (False, "none", "dev")

    link = h.checkout()
    r = deliver(api, link)
    assert r.status == 200 and r.body["outcome"] == "applied"
    assert entitlement(api, h) == (True, "active", "pro")
    sub = stored_account(api, h.account_id)["subscriptions"][h.sub]
    assert sub["last_event_id"] == kept[2]["id"]
    # Each kept event was decided once, by the link, in Stripe's order (the older ones applied, none stale).
    for ev in kept:
        record = event_record(api, ev["id"])
        assert (record["outcome"], record["account_id"], record["linked_by"]) == ("applied", h.account_id, link["id"])
        assert kept_record(api, ev["id"])["applied_at"] and kept_record(api, ev["id"])["kept_for_link"] is False
    linked = api.store.get(api.store.stripe_customer(h.customer)).data
    assert linked["account_id"] == h.account_id and not {"pending", "expires_at"} & set(linked)
    assert all(deliver(api, ev).body["outcome"] == "duplicate" for ev in [*kept, link])
    # The customer is linked: later events without any metadata are found through it.
    assert deliver(api, h.sub_event("past_due", 40)).body["outcome"] == "applied"
    assert entitlement(api, h)[1] == "past_due"


def test_reads_and_writes_per_delivery(api, billing_env):
    """The figures the README gives: store RPCs and documents read and written for each kind of delivery."""
    h = Hosted(api)
    n = 5

    def cost(ev: dict, outcome: str) -> tuple[dict, dict]:
        api.store.rpcs.clear()
        api.store.documents.clear()
        assert deliver(api, ev).body["outcome"] == outcome
        return dict(api.store.rpcs), dict(api.store.documents)

    # Unmatched: the event and the customer's document read together; the event's record, its kept record and
    # the customer's pending list written in one commit.
    life = h.life(n)
    for ev in life:
        assert cost(ev, "unmatched") == ({"batch_get": 1, "commit": 1}, {"read": 2, "written": 3})
    # The link that applies the n kept events: a second batched read (their kept records), one commit of its own
    # record, the account, the customer's document, and each kept event's record and kept record.
    assert cost(h.checkout(), "applied") == ({"batch_get": 2, "commit": 1}, {"read": 3 + n, "written": 3 + 2 * n})
    assert entitlement(api, h) == (True, "active", "pro")
    # Matched through the linked customer (no metadata): the account is read after the customer names it.
    assert cost(h.sub_event("past_due", 50), "applied") == ({"batch_get": 1, "get": 1, "commit": 1},
                                                            {"read": 3, "written": 2})
    # Matched by the account_id metadata qorch's own checkout puts on subscriptions: one read, one commit.
    assert cost(h.sub_event("active", 51, account_id=h.account_id), "applied") == (
        {"batch_get": 1, "commit": 1}, {"read": 3, "written": 2})
    # A redelivery: one read of one document, nothing written.
    assert cost(life[0], "duplicate") == ({"batch_get": 1}, {"read": 2})


def test_more_kept_events_than_one_commit_holds_are_applied_a_commit_at_a_time(api, billing_env, monkeypatch):
    monkeypatch.setattr(billing_service, "KEPT_PER_COMMIT", 2)
    h = Hosted(api)
    life = h.life(5)
    for ev in reversed(life):
        assert deliver(api, ev).body["outcome"] == "unmatched"
    api.store.rpcs.clear()
    link = h.checkout()
    assert deliver(api, link).body["outcome"] == "applied"
    assert api.store.rpcs["commit"] == 3  # the link with the two oldest, then two, then one
    assert entitlement(api, h) == (True, "active", "pro")
    assert stored_account(api, h.account_id)["subscriptions"][h.sub]["last_event_id"] == life[-1]["id"]
    assert all(event_record(api, e["id"])["linked_by"] == link["id"] for e in life)
    assert "pending" not in api.store.get(api.store.stripe_customer(h.customer)).data


def test_a_kept_session_that_names_another_account_stays_for_an_operator(api, billing_env):
    h = Hosted(api)
    stray = h.checkout("acct_nobody", sub=uid("sub"))
    r = deliver(api, stray)
    assert r.body["outcome"] == "unmatched"
    assert kept_record(api, stray["id"])["kept_for_link"] is True
    assert deliver(api, h.sub_event("active", 5)).body["outcome"] == "unmatched"
    assert deliver(api, h.checkout()).body["outcome"] == "applied"
    assert entitlement(api, h) == (True, "active", "pro")
    # Had it come after the link, that session would conflict with the customer's account: so it does now.
    record = kept_record(api, stray["id"])
    assert record["kept_for_link"] is False and "applied_at" not in record
    assert f"belongs to account {h.account_id}" in record["reason"]
    assert event_record(api, stray["id"])["outcome"] == "unmatched"
    assert set(stored_account(api, h.account_id)["subscriptions"]) == {h.sub}


def test_a_kept_event_whose_record_expired_is_skipped_and_expired_entries_are_pruned(api, billing_env,
                                                                                     monkeypatch):
    h = Hosted(api)
    old = h.sub_event("past_due", 2)
    with monkeypatch.context() as patch:
        patch.setattr(billing_service, "EVENT_RECORD_TTL", timedelta(seconds=-1))  # kept already expired
        assert deliver(api, old).body["outcome"] == "unmatched"
    gone = h.sub_event("incomplete", 1, "created")
    r = deliver(api, gone)
    assert r.status == 200 and r.body["outcome"] == "unmatched", r.body
    pending = api.store.get(api.store.stripe_customer(h.customer)).get("pending")
    assert set(pending) == {gone["id"]}  # the expired entry went with the next write
    ref(api.store, api.store.stripe_unmatched(gone["id"])).delete()  # as the TTL policy or the cleanup would
    assert deliver(api, h.checkout()).body["outcome"] == "applied"
    assert entitlement(api, h) == (False, "incomplete", "dev")  # the checkout alone; nothing left to apply
    assert "pending" not in api.store.get(api.store.stripe_customer(h.customer)).data


def test_a_kept_event_at_a_price_that_is_no_plan_makes_the_link_log_an_error(api, billing_env, capsys):
    """The typical Payment Link mistake (a price that is not a plan's): the alert must not be lost because the
    event that carried the price was kept and applied by the link."""
    h = Hosted(api)
    wrong = event("customer.subscription.updated", subscription(h.sub, h.customer, "active", "price_dashboard_only",
                                                                h.t + 30 * DAY), h.t + 5)
    assert deliver(api, wrong).body["outcome"] == "unmatched"
    assert deliver(api, h.checkout()).body["outcome"] == "applied"
    line = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"stripe_webhook"' in x][-1]
    assert line["severity"] == "ERROR" and "price_dashboard_only" in line["detail"]
    assert line["kept_events"] == [wrong["id"]]
    entitled, status, _ = entitlement(api, h)
    assert not entitled and status == "active"


# ---- two instances at once ----------------------------------------------------------------------------------------


def test_an_event_kept_while_the_link_is_being_decided_is_applied_by_it(api, billing_env, other_instance,
                                                                         monkeypatch):
    """The link reads the customer (nothing kept), then another instance keeps an event before the link commits:
    the link's precondition on the customer's document fails, it reads again and applies the event."""
    h = Hosted(api)
    late = h.sub_event("active", 5)
    fired = before_first_commit(monkeypatch, api.store,
                                lambda: assert_outcome(receive_elsewhere(other_instance, late), "unmatched"))
    api.store.rpcs.clear()
    link = h.checkout()
    assert deliver(api, link).body["outcome"] == "applied"
    assert fired and api.store.rpcs["commit"] == 2  # the first lost the race
    assert entitlement(api, h) == (True, "active", "pro")
    assert event_record(api, late["id"])["linked_by"] == link["id"]


def test_a_link_committed_while_an_event_is_being_kept_makes_it_apply_directly(api, billing_env, other_instance,
                                                                               monkeypatch):
    """The event reads the customer (not linked) and decides to keep it; another instance links the customer
    before it commits: keeping fails its precondition, the event reads again and applies to the account."""
    h = Hosted(api)
    link = h.checkout()
    fired = before_first_commit(monkeypatch, api.store,
                                lambda: assert_outcome(receive_elsewhere(other_instance, link), "applied"))
    late = h.sub_event("active", 5)
    assert deliver(api, late).body["outcome"] == "applied"
    assert fired and not api.store.get(api.store.stripe_unmatched(late["id"])).exists
    assert entitlement(api, h) == (True, "active", "pro")


def test_two_links_at_once_apply_a_kept_event_once(api, billing_env, other_instance, monkeypatch):
    h = Hosted(api)
    kept = h.sub_event("active", 5)
    assert deliver(api, kept).body["outcome"] == "unmatched"
    link = h.checkout()
    also_links = h.sub_event("active", 6, account_id=h.account_id)  # names the account: it would link too
    fired = before_first_commit(monkeypatch, api.store,
                                lambda: assert_outcome(receive_elsewhere(other_instance, link), "applied"))
    assert deliver(api, also_links).body["outcome"] == "applied"
    assert fired
    assert event_record(api, kept["id"])["linked_by"] == link["id"]  # not re-applied by the second
    assert stored_account(api, h.account_id)["subscriptions"][h.sub]["last_event_id"] == also_links["id"]


def test_two_events_kept_at_once_are_both_kept(api, billing_env, other_instance, monkeypatch):
    h = Hosted(api)
    first, second = h.sub_event("past_due", 5), h.sub_event("active", 6)
    fired = before_first_commit(monkeypatch, api.store,
                                lambda: assert_outcome(receive_elsewhere(other_instance, second), "unmatched"))
    assert deliver(api, first).body["outcome"] == "unmatched"
    assert fired
    pending = api.store.get(api.store.stripe_customer(h.customer)).get("pending")
    assert set(pending) == {first["id"], second["id"]}
    assert deliver(api, h.checkout()).body["outcome"] == "applied"
    assert entitlement(api, h) == (True, "active", "pro")


def assert_outcome(got: str, expected: str) -> None:
    assert got == expected


# ---- the store fails ----------------------------------------------------------------------------------------------


def test_a_store_cut_before_any_rpc_of_the_linking_delivery_writes_nothing(api, billing_env, live, outage):
    h = Hosted(api)
    for ev in h.life(3):
        assert deliver_live(live, ev).body["outcome"] == "unmatched"
    link = h.checkout()
    for at in range(1, 10):
        before = snapshot_all(outage.direct)
        outage.tripwire.arm(at, outage.proxy.cut)
        r = deliver_live(live, link)
        fired = outage.tripwire.fired
        outage.back()
        if not fired:
            assert r.status == 200 and r.body["outcome"] == "applied", r.body
            break
        assert (r.status, r.body["code"]) == (503, "unavailable"), r.body
        assert snapshot_all(outage.direct) == before, f"RPC {at} cut: something was written"
    assert at - 1 == 3  # read, read the kept events, commit: each was cut above
    assert entitlement(api, h) == (True, "active", "pro")


def test_a_link_whose_commit_reply_is_lost_applied_once_and_stripes_retry_is_a_duplicate(api, billing_env, live,
                                                                                        outage):
    h = Hosted(api)
    kept = h.life(2)
    for ev in kept:
        assert deliver_live(live, ev).body["outcome"] == "unmatched"
    link = h.checkout()
    outage.tripwire.arm(3, outage.proxy.deaf)  # the commit reaches the store; its reply never comes back
    r = deliver_live(live, link)
    assert outage.tripwire.fired and r.status == 503
    outage.back()
    assert deliver_live(live, link).body["outcome"] == "duplicate"  # Stripe's retry: the commit had landed
    assert entitlement(api, h) == (True, "active", "pro")
    assert all(event_record(api, e["id"])["linked_by"] == link["id"] for e in kept)
