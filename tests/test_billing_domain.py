"""The billing domain alone (pure, no store): ordering, exactly-once folding, entitlement over time. The same rules
are exercised end to end through the webhook in test_billing_webhook.py and test_billing_chaos.py."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta

import pytest

from shared.domain import billing
from shared.domain.billing import StripeEvent
from shared.domain.errors import PaymentRequired, QuotaExceeded
from shared.domain.models import Account
from shared.runtime.config import load_plans
from tests import billing_support
from tests.billing_support import (
    DAY,
    PRICE_PRO,
    PRICE_STARTER,
    at,
    checkout_session,
    comparable,
    event,
    invoice,
    life,
    subscription,
)

CATALOG = load_plans(environ={"QORCH_STRIPE_PRICE_PRO": PRICE_PRO, "QORCH_STRIPE_PRICE_STARTER": PRICE_STARTER})
GRACE = timedelta(days=3)
T0 = 1_700_000_000
NOW = at(T0)
ACCT, CUS, SUB = "acct_dom", "cus_dom", "sub_dom"


def fresh() -> Account:
    return Account(id=ACCT, name="Domain", created_at=NOW)


def fold(events: list[dict], account: Account | None = None) -> tuple[Account, Counter]:
    return billing_support.fold(account or fresh(), events, CATALOG, NOW)


def standing_at(account: Account, when: datetime) -> billing.Standing:
    return billing.standing(account, CATALOG, when, GRACE)


def test_the_life_in_order_goes_through_the_expected_statuses():
    events = life(ACCT, CUS, SUB, T0)
    statuses = [fold(events[:k])[0].subscriptions[SUB].status for k in range(1, len(events) + 1)]
    assert statuses == ["incomplete", "incomplete", "active", "active", "past_due", "past_due", "active",
                        "active", "canceled"]
    final, applied = fold(events)
    assert final.plan == "pro" and final.stripe_customer_id == CUS
    assert sum(applied.values()) == len(events)  # in order, every event is news


@pytest.mark.parametrize("length", range(1, 10))
def test_any_order_with_duplicates_ends_where_the_in_order_delivery_ends(length):
    """The chaos property on every prefix of the life (so not only the final `deleted`, which wins anyway):
    300 random orders with random duplicates each; the stored state and the entitlement at several instants
    equal the in-order result, and no event is applied twice."""
    rng = random.Random(length)
    prefix = life(ACCT, CUS, SUB, T0)[:length]
    expected, _ = fold(prefix)
    instants = [at(T0 + d * DAY) for d in (0, 1, 31, 45, 62, 64, 70)]
    for _ in range(300):
        delivery = prefix + rng.choices(prefix, k=rng.randint(0, length))
        rng.shuffle(delivery)
        got, applied = fold(delivery)
        assert comparable(got) == comparable(expected), [e["id"] for e in delivery]
        assert all(n == 1 for n in applied.values())
        for when in instants:
            assert standing_at(got, when) == standing_at(expected, when)


def test_a_late_active_never_reactivates_a_deleted_subscription():
    deleted = event("customer.subscription.deleted", subscription(SUB, CUS, "canceled", PRICE_PRO, T0 + 30 * DAY),
                    T0 + 10)
    late = event("customer.subscription.updated", subscription(SUB, CUS, "active", PRICE_PRO, T0 + 30 * DAY), T0 + 5)
    later = event("customer.subscription.updated", subscription(SUB, CUS, "active", PRICE_PRO, T0 + 30 * DAY), T0 + 50)
    account, _ = fold([deleted])
    for e in (late, later):  # older, and even a (bogus) newer one: canceled is final
        decision = billing.apply(account, StripeEvent.parse(e), CATALOG, NOW)
        assert decision.outcome == "stale" and decision.account == account
    assert not standing_at(account, NOW).entitlement.entitled


def test_a_stale_past_due_never_locks_out_a_customer_who_has_since_paid():
    p2 = T0 + 60 * DAY
    paid = event("invoice.paid", invoice(CUS, SUB, "subscription_cycle", PRICE_PRO, p2, paid=True), T0 + 32 * DAY)
    stale = event("customer.subscription.updated", subscription(SUB, CUS, "past_due", PRICE_PRO, p2), T0 + 30 * DAY)
    stale_failure = event("invoice.payment_failed",
                          invoice(CUS, SUB, "subscription_cycle", PRICE_PRO, p2, paid=False), T0 + 30 * DAY)
    account, applied = fold([paid, stale, stale_failure])
    assert account.subscriptions[SUB].status == "active" and list(applied) == [paid["id"]]
    assert standing_at(account, at(p2 + 10 * DAY)).entitlement.entitled  # long after any grace would have ended


def test_within_one_second_the_snapshot_outranks_the_invoice_and_created_never_follows_updated():
    p1 = T0 + 30 * DAY
    created = event("customer.subscription.created", subscription(SUB, CUS, "trialing", PRICE_PRO, p1), T0)
    trial_invoice = event("invoice.paid", invoice(CUS, SUB, "subscription_create", PRICE_PRO, p1, paid=True), T0)
    for order in ([created, trial_invoice], [trial_invoice, created]):
        assert fold(order)[0].subscriptions[SUB].status == "trialing"
    updated = event("customer.subscription.updated", subscription(SUB, CUS, "active", PRICE_PRO, p1), T0)
    incomplete = event("customer.subscription.created", subscription(SUB, CUS, "incomplete", PRICE_PRO, p1), T0)
    assert fold([updated, incomplete])[0].subscriptions[SUB].status == "active"


def test_an_invoice_that_says_nothing_about_status_does_not_move_the_clock():
    """A proration invoice paid later must not hide an older status change that arrives after it."""
    p1 = T0 + 30 * DAY
    active = event("customer.subscription.updated", subscription(SUB, CUS, "active", PRICE_PRO, p1), T0)
    proration = event("invoice.payment_failed",
                      invoice(CUS, SUB, "subscription_update", PRICE_PRO, p1, paid=False), T0 + 20)
    past_due = event("customer.subscription.updated", subscription(SUB, CUS, "past_due", PRICE_PRO, p1), T0 + 10)
    account, _ = fold([active, proration, past_due])
    assert account.subscriptions[SUB].status == "past_due"
    assert billing.apply(fold([active])[0], StripeEvent.parse(proration), CATALOG, NOW).outcome == "ignored"


def test_past_due_is_entitled_until_the_period_end_plus_the_grace_period():
    end = T0 + 30 * DAY
    account, _ = fold([event("customer.subscription.updated",
                             subscription(SUB, CUS, "past_due", PRICE_PRO, end), T0)])
    grace_until = at(end) + GRACE
    inside = standing_at(account, grace_until - timedelta(seconds=1)).entitlement
    assert inside.entitled and inside.status == "past_due" and inside.grace_until == grace_until
    after = standing_at(account, grace_until).entitlement
    assert not after.entitled and after.grace_until == grace_until and "portal" in after.reason


@pytest.mark.parametrize("status", ["unpaid", "canceled", "incomplete", "incomplete_expired", "paused"])
def test_statuses_that_are_not_entitled(status):
    account, _ = fold([event("customer.subscription.updated",
                             subscription(SUB, CUS, status, PRICE_PRO, T0 + 30 * DAY), T0)])
    entitlement = standing_at(account, NOW).entitlement
    assert not entitlement.entitled and entitlement.status == status and entitlement.grace_until is None


@pytest.mark.parametrize("status", ["active", "trialing"])
def test_statuses_that_are_entitled(status):
    account, _ = fold([event("customer.subscription.updated",
                             subscription(SUB, CUS, status, PRICE_STARTER, T0 + 30 * DAY), T0)])
    st = standing_at(account, NOW)
    assert st.entitlement.entitled and st.plan is not None and st.plan.name == "starter"
    assert account.plan == "starter"  # the plan follows the price


def test_a_price_that_is_no_plan_is_not_entitled():
    account, _ = fold([event("customer.subscription.updated",
                             subscription(SUB, CUS, "active", "price_unknown", T0 + 30 * DAY), T0)])
    entitlement = standing_at(account, NOW).entitlement
    assert not entitlement.entitled and "price_unknown" in entitlement.reason


def test_the_operator_grant_counts_only_without_a_stripe_subscription():
    granted = fresh().model_copy(update={"entitled": True})
    assert standing_at(granted, NOW).entitlement.status == "granted"
    assert standing_at(granted, NOW).entitlement.entitled
    canceled, _ = fold([event("customer.subscription.deleted",
                              subscription(SUB, CUS, "canceled", PRICE_PRO, T0), T0)], granted)
    assert not standing_at(canceled, NOW).entitlement.entitled
    assert not standing_at(fresh(), NOW).entitlement.entitled
    assert standing_at(fresh(), NOW).entitlement.status == "none"


def test_the_best_of_several_subscriptions_decides():
    pro = event("customer.subscription.updated", subscription("sub_a", CUS, "active", PRICE_PRO, T0 + DAY), T0)
    starter = event("customer.subscription.updated",
                    subscription("sub_b", CUS, "active", PRICE_STARTER, T0 + DAY), T0 + 5)
    gone = event("customer.subscription.deleted", subscription("sub_a", CUS, "canceled", PRICE_PRO, T0 + DAY),
                 T0 + 9)
    both, _ = fold([pro, starter])
    assert standing_at(both, NOW).plan.name == "pro" and both.plan == "pro"
    one, _ = fold([pro, starter, gone])
    assert standing_at(one, NOW).plan.name == "starter" and one.plan == "starter"


def test_a_deleted_customer_cancels_its_subscriptions_and_grants_nothing_again():
    p1 = T0 + 30 * DAY
    active = event("customer.subscription.updated", subscription(SUB, CUS, "active", PRICE_PRO, p1), T0)
    gone = event("customer.deleted", {"id": CUS, "object": "customer"}, T0 + 100)
    account, _ = fold([active, gone])
    assert account.subscriptions[SUB].status == "canceled"
    assert account.stripe_customer_id is None and account.former_stripe_customers == [CUS]
    # Events from after the deletion are stale.
    for late in (event("customer.subscription.updated", subscription("sub_other", CUS, "active", PRICE_PRO, p1),
                       T0 + 101),
                 event("checkout.session.completed", checkout_session(ACCT, CUS, "sub_other"), T0 + 101),
                 event("customer.deleted", {"id": CUS, "object": "customer"}, T0 + 100)):
        assert billing.apply(account, StripeEvent.parse(late), CATALOG, NOW).outcome == "stale"
    # Older ones that arrive late say what the subscription was, as in the in-order delivery, where the deletion
    # then canceled it: they never grant, and never link the customer again.
    for late in (event("customer.subscription.updated", subscription("sub_other", CUS, "active", PRICE_STARTER, p1),
                       T0 + 50),
                 event("checkout.session.completed", checkout_session(ACCT, CUS, "sub_other", "starter"), T0 + 50)):
        decision = billing.apply(account, StripeEvent.parse(late), CATALOG, NOW)
        assert decision.outcome == "applied" and decision.link_customer is None
        other = decision.account.subscriptions["sub_other"]
        assert other.status == "canceled" and other.plan == "starter"
        assert decision.account.stripe_customer_id is None
        assert not standing_at(decision.account, NOW).entitlement.entitled


@pytest.mark.parametrize("seed", range(20))
def test_a_life_that_ends_with_the_customer_deleted_ends_the_same_in_any_order(seed):
    """Stripe cancels the subscription (customer.subscription.deleted) and deletes the customer in the same second;
    whichever arrives first, and wherever the rest of the life falls, the account ends as in order."""
    events = [
        *life(ACCT, CUS, SUB, T0)[:4],
        event("customer.subscription.deleted", subscription(SUB, CUS, "canceled", PRICE_PRO, T0 + 30 * DAY),
              T0 + 5 * DAY),
        event("customer.deleted", {"id": CUS, "object": "customer", "deleted": True}, T0 + 5 * DAY)]
    expected, _ = fold(events)
    assert expected.subscriptions[SUB].status == "canceled" and expected.subscriptions[SUB].plan == "pro"
    rng = random.Random(seed)
    for _ in range(50):
        delivery = events + rng.choices(events, k=rng.randint(0, len(events)))
        rng.shuffle(delivery)
        got, applied = fold(delivery)
        assert comparable(got) == comparable(expected), [e["id"] for e in delivery]
        assert all(n == 1 for n in applied.values())


def test_legacy_payload_shapes_mean_the_same():
    end = T0 + 30 * DAY
    for legacy in (False, True):
        sub = event("customer.subscription.updated", subscription(SUB, CUS, "past_due", PRICE_PRO, end,
                                                                  legacy=legacy), T0)
        account, _ = fold([sub])
        assert account.subscriptions[SUB].current_period_end == at(end)
        inv = StripeEvent.parse(event("invoice.paid", invoice(CUS, SUB, "subscription_cycle", PRICE_PRO, end,
                                                              paid=True, account_id=ACCT, legacy=legacy), T0 + 1))
        assert inv.subscription_id == SUB and inv.account_hints == [ACCT]
        assert billing.apply(account, inv, CATALOG, NOW).account.subscriptions[SUB].status == "active"


def test_events_this_service_does_not_act_on():
    assert not StripeEvent.parse(event("customer.updated", {"id": CUS}, T0)).handled
    payment_mode = checkout_session(ACCT, CUS, SUB) | {"mode": "payment", "subscription": None}
    assert not StripeEvent.parse(event("checkout.session.completed", payment_mode, T0)).handled
    one_off = invoice(CUS, SUB, "manual", PRICE_PRO, T0, paid=True)
    one_off.pop("parent")
    assert not StripeEvent.parse(event("invoice.paid", one_off, T0)).handled
    with pytest.raises(ValueError):
        StripeEvent.parse({"id": "evt_1", "type": "x"})
    with pytest.raises(ValueError):
        StripeEvent.parse(event("invoice.paid", {}, T0, event_id="evt/../x"))


def test_admit_workflow_says_how_to_pay_and_enforces_the_quota():
    with pytest.raises(PaymentRequired) as no:
        billing.admit_workflow(fresh().model_dump(), CATALOG, NOW, 3)
    assert no.value.extra["checkout"] == "POST /v1/billing/checkout-session"
    limit = CATALOG.get("starter").max_active_workflows
    account = fresh().model_copy(update={"entitled": True, "plan": "starter", "active_workflows": limit - 1})
    billing.admit_workflow(account.model_dump(), CATALOG, NOW, 3)
    full = account.model_copy(update={"active_workflows": limit})
    with pytest.raises(QuotaExceeded) as quota:
        billing.admit_workflow(full.model_dump(), CATALOG, NOW, 3)
    assert quota.value.extra == {"plan": "starter", "limit": limit, "active_workflows": limit}
    unknown = account.model_copy(update={"plan": "platinum"})
    with pytest.raises(PaymentRequired):
        billing.admit_workflow(unknown.model_dump(), CATALOG, NOW, 3)
