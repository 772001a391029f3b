"""Chaos, end to end: whole subscription lives delivered the way Stripe delivers them (late, twice, in any order)
through the real router over real HTTP, signed by the stripe library, into the Firestore emulator; the product's own
checkout talks to the local Stripe API stand-in. Each run uses a fresh account.

Two ways of paying: the product's `POST /v1/billing/checkout-session` (qorch made the customer, and Stripe copies the
session's `account_id` metadata onto the subscription and its invoices), and a Stripe-hosted Payment Link or Pricing
Table, which only passes `client_reference_id` = the account id (qorch never saw the customer, so every event that
arrives before `checkout.session.completed` is kept, and applied when that session links the customer).

Where each life ends (`GET /v1/account`: entitled, status, plan) is written below as data, from what Stripe's
subscription does in that life: never computed by the product's own `billing.apply`.

The order is random: each run prints its seed, and `QORCH_BILLING_SEED=<seed>` replays the whole test.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

from shared.services import accounts
from tests import billing_support
from tests.billing_support import (
    DAY,
    PRICE_PRO,
    PRICE_STARTER,
    checkout_session,
    customer_tenant,
    deliver_live,
    event,
    invoice,
    now_s,
    subscription,
    uid,
)
from tests.helpers import together

billing_env = billing_support.billing_env  # fixture
PRICES = {"starter": PRICE_STARTER, "pro": PRICE_PRO}
RANDOM_RUNS_PER_LIFE = 5  # x 10 lives: 50 random orders, plus each life once in order
LANES = 6  # clients delivering at once in the concurrent test
AGO = 50 * DAY  # a life starts this long ago, so that "now" is 10 days before the second period ends
P1, P2 = 30 * DAY, 60 * DAY  # the first and second period ends, from the start


@dataclass(frozen=True)
class Step:
    """One Stripe event of a life, `at` seconds after it starts."""

    kind: str  # checkout | created | updated | deleted | paid | failed | customer_deleted
    at: int
    status: str | None = None  # a subscription event's status
    reason: str | None = None  # an invoice's billing_reason
    plan: str | None = None  # the price's plan when it is not the plan bought at checkout (a portal upgrade)
    period_end: int = P1
    cancel_at_period_end: bool = False


@dataclass(frozen=True)
class Life:
    name: str
    qorch_checkout: bool  # True: POST /v1/billing/checkout-session; False: a Payment Link / Pricing Table
    plan: str  # the plan bought at checkout
    steps: tuple[Step, ...]
    ends: dict[str, Any]  # GET /v1/account once every event has arrived: entitled, status, plan


def ends(entitled: bool, status: str, plan: str) -> dict[str, Any]:
    return {"entitled": entitled, "status": status, "plan": plan}


PAYS = (Step("checkout", 0), Step("created", 0, "incomplete"), Step("paid", 1, reason="subscription_create"),
        Step("updated", 1, "active"))
RENEWAL_FAILS = (Step("failed", P1, reason="subscription_cycle", period_end=P2),
                 Step("updated", P1, "past_due", period_end=P2))
RENEWAL_PAID = (Step("paid", P1 + 2 * DAY, reason="subscription_cycle", period_end=P2),
                Step("updated", P1 + 2 * DAY, "active", period_end=P2))
CANCELLED = (Step("deleted", P1 + 8 * DAY, "canceled", period_end=P2),)
CUSTOMER_DELETED = (Step("deleted", 5 * DAY, "canceled"), Step("customer_deleted", 5 * DAY))

LIVES = (
    Life("payment link: pays, a renewal fails and is paid", False, "pro", PAYS + RENEWAL_FAILS + RENEWAL_PAID,
         ends(True, "active", "pro")),
    Life("payment link: pays, a renewal fails and is paid, then cancelled", False, "pro",
         PAYS + RENEWAL_FAILS + RENEWAL_PAID + CANCELLED, ends(False, "canceled", "pro")),
    Life("qorch checkout: pays, a renewal fails and is paid", True, "starter", PAYS + RENEWAL_FAILS + RENEWAL_PAID,
         ends(True, "active", "starter")),
    Life("qorch checkout: pays, a renewal fails and is paid, then cancelled", True, "pro",
         PAYS + RENEWAL_FAILS + RENEWAL_PAID + CANCELLED, ends(False, "canceled", "pro")),
    # The failed renewal's new period ends in 10 days: past_due keeps access until then + 3 days of grace.
    Life("payment link: a renewal fails, Stripe is still retrying", False, "pro", PAYS + RENEWAL_FAILS,
         ends(True, "past_due", "pro")),
    Life("payment link: a renewal fails and Stripe gives up", False, "starter",
         PAYS + RENEWAL_FAILS + (Step("updated", P1 + 15 * DAY, "unpaid", period_end=P2),),
         ends(False, "unpaid", "starter")),
    Life("payment link: the first payment never goes through", False, "pro",
         (Step("checkout", 0), Step("created", 0, "incomplete"), Step("failed", 1, reason="subscription_create"),
          Step("updated", DAY - 1, "incomplete_expired")),
         ends(False, "incomplete_expired", "pro")),
    Life("payment link: upgraded in the portal, then cancellation scheduled", False, "starter",
         (*PAYS, Step("updated", 10 * DAY, "active", plan="pro"),
          Step("updated", 20 * DAY, "active", plan="pro", cancel_at_period_end=True)),
         ends(True, "active", "pro")),
    Life("payment link: the customer is deleted in Stripe", False, "pro", PAYS + CUSTOMER_DELETED,
         ends(False, "canceled", "pro")),
    Life("qorch checkout: the customer is deleted in Stripe", True, "starter", PAYS + CUSTOMER_DELETED,
         ends(False, "canceled", "starter")),
)


# ---- one life's events, as Stripe would send them ----------------------------------------------------------------


@dataclass
class Paying:
    account_id: str
    owner: str
    customer: str
    sub_id: str
    metadata: bool  # whether Stripe's objects carry the account_id metadata (the product's checkout puts it there)


def start_paying(api, live, billing_env, life: Life) -> Paying:
    """A fresh account, and the customer who pays for it: made by the product's checkout through the local Stripe
    API (then the session Stripe was asked for is the one the events describe), or by a hosted page (a customer
    qorch never saw)."""
    tenant = customer_tenant(api, f"Lives {uid('a')}")
    if not life.qorch_checkout:
        return Paying(tenant.account_id, tenant.owner, uid("cus_hosted"), uid("sub"), metadata=False)
    r = live.request("POST", "/v1/billing/checkout-session", key=tenant.owner, body={"plan": life.plan})
    assert r.status == 200, r.body
    session = billing_env.calls_to("/v1/checkout/sessions")[-1].params
    assert session["client_reference_id"] == tenant.account_id
    assert session["subscription_data[metadata][account_id]"] == tenant.account_id
    assert session["line_items[0][price]"] == PRICES[life.plan]
    return Paying(tenant.account_id, tenant.owner, session["customer"], uid("sub"), metadata=True)


def events_of(life: Life, who: Paying, t0: int) -> list[dict]:
    a = who.account_id if who.metadata else None
    out = []
    for n, step in enumerate(life.steps, 1):
        price = PRICES[step.plan or life.plan]
        created, period_end = t0 + step.at, t0 + step.period_end
        if step.kind == "checkout":
            obj = checkout_session(who.account_id, who.customer, who.sub_id, life.plan, metadata=who.metadata)
            kind = "checkout.session.completed"
        elif step.kind in ("created", "updated", "deleted"):
            obj = subscription(who.sub_id, who.customer, step.status, price, period_end, account_id=a,
                               cancel_at_period_end=step.cancel_at_period_end)
            kind = f"customer.subscription.{step.kind}"
        elif step.kind in ("paid", "failed"):
            obj = invoice(who.customer, who.sub_id, step.reason, price, period_end, paid=step.kind == "paid",
                          account_id=a)
            kind = "invoice.paid" if step.kind == "paid" else "invoice.payment_failed"
        else:
            obj = {"id": who.customer, "object": "customer", "deleted": True,
                   "metadata": {"account_id": a} if a else {}}
            kind = "customer.deleted"
        out.append(event(kind, obj, created, event_id=f"evt_{who.sub_id}_{n}"))
    return out


def shuffled_with_duplicates(events: list[dict], rng: random.Random) -> list[dict]:
    delivery = events + rng.choices(events, k=rng.randint(1, len(events)))
    rng.shuffle(delivery)
    return delivery


def seed() -> int:
    chosen = int(os.environ.get("QORCH_BILLING_SEED") or random.SystemRandom().randrange(10**9))
    print(f"billing lives: seed {chosen} (replay with QORCH_BILLING_SEED={chosen})")
    return chosen


# ---- what must hold at the end of every delivery ------------------------------------------------------------------


def account_view(live, who: Paying) -> dict[str, Any]:
    r = live.request("GET", "/v1/account", key=who.owner)
    assert r.status == 200, r.body
    return {"entitled": r.body["entitlement"]["entitled"], "status": r.body["entitlement"]["status"],
            "plan": r.body["plan"]}


def assert_every_event_decided_once_for_the_account(api, who: Paying, events: list[dict], why: str) -> None:
    """Each event has one record (its id is the document's): decided for this account, none left unmatched; the
    customer is linked with nothing kept; every kept record says which delivery applied it."""
    store = api.store
    for ev in events:
        record = store.get(store.stripe_event(ev["id"])).data
        assert record["account_id"] == who.account_id and record["outcome"] in ("applied", "stale"), (why, record)
        kept = store.get(store.stripe_unmatched(ev["id"]))
        if kept.exists:
            assert kept.get("kept_for_link") is False and kept.get("applied_at") and kept.get("linked_by"), why
    customer = store.get(store.stripe_customer(who.customer)).data
    assert customer["account_id"] == who.account_id and "pending" not in customer and "expires_at" not in customer
    assert accounts.get_account(store, who.account_id).subscriptions[who.sub_id].id == who.sub_id


# ---- the tests ----------------------------------------------------------------------------------------------------


def test_every_life_in_fifty_random_orders_with_duplicates_ends_where_stripe_says(api, live, billing_env):
    base = seed()
    t0 = now_s() - AGO
    random_runs = 0
    for life_no, life in enumerate(LIVES):
        for run in range(RANDOM_RUNS_PER_LIFE + 1):
            who = start_paying(api, live, billing_env, life)
            events = events_of(life, who, t0)
            rng = random.Random(f"{base}/{life_no}/{run}")
            # Run 0 is the in-order delivery, which the expectation is about; the others are random.
            delivery = list(events) if run == 0 else shuffled_with_duplicates(events, rng)
            random_runs += run > 0
            order = [int(e["id"].rsplit("_", 1)[1]) for e in delivery]
            why = f"seed {base}, life {life.name!r}, run {run}, order {order}"
            print(why)

            answers: dict[str, list[str]] = {}
            for ev in delivery:
                r = deliver_live(live, ev)
                assert r.status == 200, (why, r.body)
                answers.setdefault(ev["id"], []).append(r.body["outcome"])
            for event_id, outcomes in answers.items():  # one decision per event; every other delivery: duplicate
                assert outcomes[0] in ("applied", "stale", "unmatched") and set(outcomes[1:]) <= {"duplicate"}, \
                    (why, event_id, outcomes)
            if life.qorch_checkout:  # qorch knows its customers: nothing ever waits for a link
                assert all(o[0] != "unmatched" for o in answers.values()), (why, answers)

            assert account_view(live, who) == life.ends, why
            assert_every_event_decided_once_for_the_account(api, who, events, why)
    assert random_runs >= 50


def test_lives_delivered_all_at_once_by_several_instances_end_where_stripe_says(api, live, billing_env):
    """Every delivery of a life (duplicates included) in flight at the same time, from LANES clients: the kept
    events, the link and the direct ones race in the store, and nothing is lost or applied twice."""
    base = seed()
    t0 = now_s() - AGO
    for life_no, life in enumerate(LIVES):
        who = start_paying(api, live, billing_env, life)
        events = events_of(life, who, t0)
        delivery = shuffled_with_duplicates(events, random.Random(f"{base}/together/{life_no}"))
        why = f"seed {base}, life {life.name!r}, at once: {[e['id'] for e in delivery]}"
        print(why)
        lanes = [delivery[i::LANES] for i in range(LANES)]

        def send(lane: int, lanes: list[list[dict]] = lanes) -> list[tuple[str, int, str]]:
            out = []
            for ev in lanes[lane]:
                r = deliver_live(live, ev)
                out.append((ev["id"], r.status, r.body.get("outcome")))
            return out

        answers = [a for lane in together(LANES, send) for a in lane]
        assert all(status == 200 for _, status, _ in answers), (why, answers)
        firsts = [eid for eid, _, outcome in answers if outcome != "duplicate"]
        assert sorted(firsts) == sorted(e["id"] for e in events), (why, answers)  # one decision per event
        assert account_view(live, who) == life.ends, why
        assert_every_event_decided_once_for_the_account(api, who, events, why)
