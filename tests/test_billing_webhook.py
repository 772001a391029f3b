"""POST /v1/stripe/webhook against the real Firestore emulator, with payloads signed by the stripe library."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from shared.adapters.firestore import Store, firestore_client, use_store
from tests import billing_support
from tests.billing_support import (
    DAY,
    PRICE_PRO,
    PRICE_STARTER,
    at,
    checkout_session,
    customer_tenant,
    deliver,
    event,
    invoice,
    now_s,
    sign,
    stored_account,
    subscription,
    uid,
    unconfigure,
)
from tests.helpers import snapshot_all, together

billing_env = billing_support.billing_env  # fixture
WEBHOOK = "/v1/stripe/webhook"


def active_event(account_id: str | None, customer: str, sub_id: str, *, created: int | None = None,
                 status: str = "active", price: str = PRICE_PRO, period_end: int | None = None) -> dict:
    t = created or now_s()
    return event("customer.subscription.updated",
                 subscription(sub_id, customer, status, price, period_end or t + 30 * DAY, account_id=account_id), t)


# ---- signature ---------------------------------------------------------------------------------------------------


def _bad_deliveries(ev: dict) -> dict[str, tuple[bytes | str, str | None]]:
    payload = json.dumps(ev)
    return {
        "missing": (payload, None),
        "empty": (payload, ""),
        "malformed": (payload, "this is not a signature"),
        "no v1 scheme": (payload, sign(payload).replace("v1=", "v0=")),
        "wrong secret": (payload, sign(payload, "whsec_someone_else")),
        "tampered": (payload.replace('"active"', '"trialing"'), sign(payload)),
        "too old": (payload, sign(payload, timestamp=now_s() - 301 - 60)),
        "not utf-8": (b"\xff\xfe" + payload.encode(), sign(payload)),
    }


@pytest.mark.parametrize("case", list(_bad_deliveries(event("x", {}, 1))))
def test_a_bad_signature_is_400_and_writes_nothing(api, billing_env, case):
    tenant = customer_tenant(api)
    ev = active_event(tenant.account_id, "cus_sig", "sub_sig")
    payload, header = _bad_deliveries(ev)[case]
    before = snapshot_all(api.store)
    headers = {"Content-Type": "application/json"} | ({"Stripe-Signature": header} if header is not None else {})
    r = api.request("POST", WEBHOOK, data=payload, headers=headers)
    assert r.status == 400 and r.code == "invalid_signature", r.body
    assert snapshot_all(api.store) == before


def test_a_signature_within_the_tolerance_verifies(api, billing_env):
    tenant = customer_tenant(api)
    r = deliver(api, active_event(tenant.account_id, "cus_tol", "sub_tol"), timestamp=now_s() - 240)
    assert r.status == 200 and r.body["outcome"] == "applied", r.body


def test_without_a_webhook_secret_nothing_is_verified_or_written(api, billing_env, monkeypatch):
    tenant = customer_tenant(api)
    unconfigure(monkeypatch, "STRIPE_WEBHOOK_SECRET")
    before = snapshot_all(api.store)
    r = deliver(api, active_event(tenant.account_id, "cus_x", "sub_x"))
    assert r.status == 503 and r.code == "billing_not_configured"
    assert snapshot_all(api.store) == before


def test_the_webhook_takes_no_api_key_and_only_post(api, billing_env):
    assert api.get(WEBHOOK).status == 405
    before = snapshot_all(api.store)
    r = api.request("POST", WEBHOOK, data="x" * (256 * 1024 + 1), headers={"Stripe-Signature": "t=1,v1=00"})
    assert r.status == 413 and r.code == "payload_too_large"
    signed_nonsense = '{"hello": "world"}'
    r = api.request("POST", WEBHOOK, data=signed_nonsense, headers={"Stripe-Signature": sign(signed_nonsense)})
    assert r.status == 422 and r.code == "validation_error"
    assert snapshot_all(api.store) == before


# ---- applying events ---------------------------------------------------------------------------------------------


def test_a_subscription_gates_workflow_creation_and_the_plan_follows_its_price(api, billing_env):
    tenant = customer_tenant(api)
    cus, sub, t = uid("cus"), uid("sub"), now_s()
    r = api.post("/v1/workflows", {"title": "x"}, tenant.owner)
    assert r.status == 402 and r.body["checkout"] == "POST /v1/billing/checkout-session"
    assert deliver(api, event("customer.subscription.created", subscription(
        sub, cus, "incomplete", PRICE_STARTER, t + 30 * DAY, account_id=tenant.account_id), t)).status == 200
    assert api.post("/v1/workflows", {"title": "x"}, tenant.owner).status == 402
    assert deliver(api, active_event(tenant.account_id, cus, sub, created=t + 1, price=PRICE_STARTER)).status == 200
    account = api.get("/v1/account", tenant.owner).body
    assert account["plan"] == "starter" and account["entitlement"]["entitled"]
    assert account["entitlement"]["status"] == "active" and account["entitlement"]["subscription_id"] == sub
    assert api.post("/v1/workflows", {"title": "x"}, tenant.owner).status == 201
    # An upgrade in the portal: the price changes, so does the plan and its limits.
    assert deliver(api, active_event(tenant.account_id, cus, sub, created=t + 2, price=PRICE_PRO)).status == 200
    account = api.get("/v1/account", tenant.owner).body
    assert account["plan"] == "pro" and account["limits"]["max_active_workflows"] == 50
    assert stored_account(api, tenant.account_id)["plan"] == "pro"
    deleted = event("customer.subscription.deleted", subscription(sub, cus, "canceled", PRICE_PRO, t + 30 * DAY),
                    t + 3)
    assert deliver(api, deleted).body["outcome"] == "applied"
    r = api.post("/v1/workflows", {"title": "x"}, tenant.owner)
    assert r.status == 402 and r.body["entitlement"]["status"] == "canceled"


def test_a_redelivered_event_changes_nothing_and_costs_one_read(api, billing_env):
    tenant = customer_tenant(api)
    ev = active_event(tenant.account_id, uid("cus"), uid("sub"))
    first = deliver(api, ev)
    assert first.status == 200 and first.body == {"received": True, "event_id": ev["id"], "outcome": "applied"}
    before = snapshot_all(api.store)
    api.store.rpcs.clear()
    again = deliver(api, ev)
    assert again.status == 200 and again.body["outcome"] == "duplicate"
    assert dict(api.store.rpcs) == {"batch_get": 1}
    assert snapshot_all(api.store) == before


def test_an_event_naming_its_account_costs_one_read_and_one_commit(api, billing_env):
    tenant = customer_tenant(api)
    api.store.rpcs.clear()
    assert deliver(api, active_event(tenant.account_id, uid("cus"), uid("sub"))).body["outcome"] == "applied"
    assert dict(api.store.rpcs) == {"batch_get": 1, "commit": 1}


def test_concurrent_deliveries_of_one_event_apply_it_once(api, billing_env):
    tenant = customer_tenant(api)
    ev = active_event(tenant.account_id, uid("cus"), uid("sub"))
    payload = json.dumps(ev)

    def send(_: int) -> str:
        client = api.client.application.test_client()
        r = client.post(WEBHOOK, data=payload, headers={"Stripe-Signature": sign(payload)})
        return r.get_json()["outcome"] if r.status_code == 200 else str(r.status_code)

    outcomes = together(8, send)
    assert sorted(outcomes) == ["applied"] + ["duplicate"] * 7
    record = api.store.get(api.store.stripe_event(ev["id"])).data
    assert record["outcome"] == "applied" and record["account_id"] == tenant.account_id


def test_a_late_active_never_reactivates_a_deleted_subscription(api, billing_env):
    tenant = customer_tenant(api)
    cus, sub, t = uid("cus"), uid("sub"), now_s()
    deleted = event("customer.subscription.deleted", subscription(sub, cus, "canceled", PRICE_PRO, t + DAY,
                                                                  account_id=tenant.account_id), t)
    assert deliver(api, deleted).body["outcome"] == "applied"
    before = stored_account(api, tenant.account_id)
    late = active_event(tenant.account_id, cus, sub, created=t - 60)
    r = deliver(api, late)
    assert r.status == 200 and r.body["outcome"] == "stale"
    assert stored_account(api, tenant.account_id) == before
    assert api.store.get(api.store.stripe_event(late["id"])).get("outcome") == "stale"  # seen, so not re-decided
    assert api.post("/v1/workflows", {"title": "x"}, tenant.owner).status == 402


def test_a_stale_past_due_never_locks_out_a_customer_who_has_since_paid(api, billing_env):
    tenant = customer_tenant(api)
    cus, sub, t = uid("cus"), uid("sub"), now_s() - 10 * DAY
    end = t + 30 * DAY
    paid = event("invoice.paid", invoice(cus, sub, "subscription_cycle", PRICE_PRO, end, paid=True,
                                         account_id=tenant.account_id), t + 100)
    assert deliver(api, paid).body["outcome"] == "applied"
    stale = active_event(tenant.account_id, cus, sub, created=t, status="past_due", period_end=t)
    assert deliver(api, stale).body["outcome"] == "stale"
    entitlement = api.get("/v1/account", tenant.owner).body["entitlement"]
    assert entitlement["entitled"] and entitlement["status"] == "active"


def test_past_due_keeps_access_until_the_grace_period_ends(api, billing_env):
    tenant = customer_tenant(api)
    cus, sub = uid("cus"), uid("sub")
    ended_yesterday = now_s() - DAY
    deliver(api, active_event(tenant.account_id, cus, sub, created=now_s() - 100, status="past_due",
                              period_end=ended_yesterday))
    entitlement = api.get("/v1/account", tenant.owner).body["entitlement"]
    assert entitlement["entitled"] and entitlement["status"] == "past_due"
    assert datetime.fromisoformat(entitlement["grace_until"]) == at(ended_yesterday) + timedelta(days=3)
    assert api.post("/v1/workflows", {"title": "x"}, tenant.owner).status == 201
    # Four days past the period end: the grace period (3 days) is over.
    deliver(api, active_event(tenant.account_id, cus, sub, created=now_s() - 50, status="past_due",
                              period_end=now_s() - 4 * DAY))
    before = snapshot_all(api.store)
    r = api.post("/v1/workflows", {"title": "x"}, tenant.owner)
    assert r.status == 402 and r.body["entitlement"]["status"] == "past_due"
    assert "portal" in r.body["detail"]
    assert snapshot_all(api.store) == before


def test_an_event_no_account_claims_is_kept_for_an_operator(api, billing_env, capsys):
    ev = active_event(None, "cus_nobody", "sub_nobody")
    r = deliver(api, ev)
    assert r.status == 200 and r.body["outcome"] == "unmatched"
    kept = api.store.get(api.store.stripe_unmatched(ev["id"])).data
    assert kept["customer"] == "cus_nobody" and kept["subscription"] == "sub_nobody" and kept["type"] == ev["type"]
    assert "no account knows customer cus_nobody" in kept["reason"]
    line = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"stripe_webhook"' in x][-1]
    assert line["severity"] == "WARNING" and line["outcome"] == "unmatched" and line["stripe_event_id"] == ev["id"]
    assert deliver(api, ev).body["outcome"] == "duplicate"
    assert deliver(api, active_event("acct_gone", "cus_2", "sub_2")).body["outcome"] == "unmatched"


def test_events_of_other_types_are_ignored_logged_and_write_nothing(api, billing_env, capsys):
    before = snapshot_all(api.store)
    for ev in (event("customer.updated", {"id": "cus_1", "object": "customer"}, now_s()),
               event("checkout.session.completed", checkout_session("acct_1", "cus_1", "sub_1") | {"mode": "payment"},
                     now_s())):
        r = deliver(api, ev)
        assert r.status == 200 and r.body["outcome"] == "ignored"
    assert snapshot_all(api.store) == before
    assert '"outcome": "ignored"' in capsys.readouterr().out


def test_checkout_completed_links_the_customer_so_later_events_need_no_metadata(api, billing_env):
    tenant = customer_tenant(api)
    cus, sub, t = uid("cus"), uid("sub"), now_s()
    r = deliver(api, event("checkout.session.completed", checkout_session(tenant.account_id, cus, sub), t))
    assert r.body["outcome"] == "applied"
    stored = stored_account(api, tenant.account_id)
    assert stored["stripe_customer_id"] == cus and stored["subscriptions"][sub]["status"] == "incomplete"
    assert api.store.get(api.store.stripe_customer(cus)).get("account_id") == tenant.account_id
    api.store.rpcs.clear()
    r = deliver(api, active_event(None, cus, sub, created=t + 1))  # no account_id metadata: found by customer
    assert r.body["outcome"] == "applied"
    assert dict(api.store.rpcs) == {"batch_get": 1, "get": 1, "commit": 1}
    assert api.get("/v1/account", tenant.owner).body["entitlement"]["entitled"]


def test_a_checkout_for_a_customer_of_another_account_is_not_applied(api, billing_env):
    a, b = customer_tenant(api, "A"), customer_tenant(api, "B")
    cus = uid("cus")
    deliver(api, event("checkout.session.completed", checkout_session(a.account_id, cus, uid("sub")), now_s()))
    before = stored_account(api, b.account_id)
    r = deliver(api, event("checkout.session.completed", checkout_session(b.account_id, cus, uid("sub")), now_s()))
    assert r.body["outcome"] == "unmatched"
    assert stored_account(api, b.account_id) == before


def test_a_deleted_customer_is_unlinked_and_its_late_events_are_ignored(api, billing_env):
    tenant = customer_tenant(api)
    cus, sub, t = uid("cus"), uid("sub"), now_s()
    deliver(api, event("checkout.session.completed", checkout_session(tenant.account_id, cus, sub), t))
    deliver(api, active_event(None, cus, sub, created=t + 1))
    r = deliver(api, event("customer.deleted", {"id": cus, "object": "customer", "deleted": True}, t + 2))
    assert r.body["outcome"] == "applied"
    stored = stored_account(api, tenant.account_id)
    assert stored["stripe_customer_id"] is None and stored["former_stripe_customers"] == [cus]
    assert stored["subscriptions"][sub]["status"] == "canceled"
    assert api.store.get(api.store.stripe_customer(cus)).get("deleted") is True
    assert deliver(api, active_event(None, cus, uid("sub"), created=t + 3)).body["outcome"] == "stale"
    assert api.post("/v1/workflows", {"title": "x"}, tenant.owner).status == 402
    r = api.post("/v1/billing/portal-session", key=tenant.owner)
    assert r.status == 409 and r.code == "no_billing_account"


def test_a_price_that_is_no_plan_is_applied_but_not_entitled_and_logged_as_an_error(api, billing_env, capsys):
    tenant = customer_tenant(api)
    r = deliver(api, active_event(tenant.account_id, uid("cus"), uid("sub"), price="price_from_the_dashboard"))
    assert r.body["outcome"] == "applied"
    line = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"stripe_webhook"' in x][-1]
    assert line["severity"] == "ERROR" and "price_from_the_dashboard" in line["detail"]
    entitlement = api.get("/v1/account", tenant.owner).body["entitlement"]
    assert not entitlement["entitled"] and "price_from_the_dashboard" in entitlement["reason"]


def test_older_api_payloads_are_understood(api, billing_env):
    tenant = customer_tenant(api)
    cus, sub, t = uid("cus"), uid("sub"), now_s()
    end = t - DAY
    deliver(api, event("customer.subscription.updated", subscription(
        sub, cus, "past_due", PRICE_PRO, end, account_id=tenant.account_id, legacy=True), t))
    entitlement = api.get("/v1/account", tenant.owner).body["entitlement"]
    assert entitlement["entitled"] and datetime.fromisoformat(entitlement["current_period_end"]) == at(end)
    paid = event("invoice.paid", invoice(cus, sub, "subscription_cycle", PRICE_PRO, end + 30 * DAY, paid=True,
                                         legacy=True), t + 1)
    assert deliver(api, paid).body["outcome"] == "applied"
    assert api.get("/v1/account", tenant.owner).body["entitlement"]["status"] == "active"


def test_an_unreachable_store_is_503_and_the_retry_applies_once(api, billing_env, emulator, project_id,
                                                                 monkeypatch):
    tenant = customer_tenant(api)
    ev = active_event(tenant.account_id, uid("cus"), uid("sub"))
    before = snapshot_all(api.store)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")  # nothing listens there
    dead = Store(firestore_client(project_id), timeout_seconds=0.5)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator.address)
    use_store(dead)
    try:
        r = deliver(api, ev)
    finally:
        use_store(api.store)
    assert r.status == 503 and r.code == "unavailable" and r.headers.get("Retry-After")
    assert snapshot_all(api.store) == before
    assert deliver(api, ev).body["outcome"] == "applied"  # Stripe's retry
    assert deliver(api, ev).body["outcome"] == "duplicate"
