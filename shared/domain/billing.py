"""Billing domain: what a Stripe event does to an account, and whether an account is entitled right now.
Pure: no I/O and no `stripe` import (workflow creation calls `standing`, and must not load Stripe).

Stripe delivers events late, twice and out of order, so:

- Exactly once is the service's job (the event id is recorded in the commit that applies the event).
- Order: each subscription keeps the key `(created, rank)` of the last event applied to it (and its id). An event
  whose key is older is recorded as seen and ignored ("stale"). Stripe's `created` has one-second resolution, so
  within one second events are ordered by what they are (`RANK`): an inference from an invoice < the subscription's
  own `created` snapshot < an `updated` snapshot < `deleted`. Two events with the very same key apply in arrival
  order (Stripe gives nothing finer).
- A subscription that is `canceled` or `incomplete_expired` is final: no later or earlier event reopens it (nor does
  Stripe). A customer deleted in Stripe never grants anything again: its events older than its deletion still say
  what its subscriptions were (price, plan, period), as they would have had they arrived before it, but the status
  they leave is `canceled`; its events after the deletion are stale.
- Every applied event sets the fields it speaks about from its own payload, never from the state it lands on, so
  the last event applied decides the result whatever arrived before it. That is what makes any delivery order
  (with any duplicates) end where the in-order delivery ends.
- An event that arrives before any account is linked to its customer is kept (`StripeEvent.payload`). The delivery
  that links the customer applies the kept events right after its own, in Stripe's order (`stripe_order`), so the
  account ends where it would have had they all arrived after the link.

Entitlement (`standing`) is decided at request time, because `past_due` ends with time, not with an event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.errors import PaymentRequired, QuotaExceeded
from shared.domain.models import Account, Entitlement, Subscription
from shared.domain.plans import Catalog, Plan

ENTITLED = frozenset({"active", "trialing"})
GRACE = "past_due"
FINAL = frozenset({"canceled", "incomplete_expired"})
# A subscription the customer still has in Stripe (a new checkout would make a second one): manage it in the portal.
OPEN = frozenset({"active", "trialing", "past_due", "unpaid", "paused"})

CHECKOUT_COMPLETED = "checkout.session.completed"
SUB_CREATED = "customer.subscription.created"
SUB_UPDATED = "customer.subscription.updated"
SUB_DELETED = "customer.subscription.deleted"
INVOICE_PAID = "invoice.paid"
INVOICE_FAILED = "invoice.payment_failed"
CUSTOMER_DELETED = "customer.deleted"
HANDLED = frozenset({CHECKOUT_COMPLETED, SUB_CREATED, SUB_UPDATED, SUB_DELETED, INVOICE_PAID, INVOICE_FAILED,
                     CUSTOMER_DELETED})
RANK = {INVOICE_PAID: 0, INVOICE_FAILED: 0, SUB_CREATED: 1, SUB_UPDATED: 2, SUB_DELETED: 3, CUSTOMER_DELETED: 3}

CHECKOUT_HINT = "POST /v1/billing/checkout-session"
PORTAL_HINT = "POST /v1/billing/portal-session"

# Ids that may name a document (Stripe's ids and ours are all of this form).
_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def _id(value: Any) -> str | None:
    """An id field that Stripe may send as an id or as an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and _ID.match(value) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ts(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


# ---- events ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StripeEvent:
    id: str
    type: str
    created: int
    obj: dict[str, Any]

    @classmethod
    def parse(cls, data: Any) -> StripeEvent:
        """The parts of a (verified) event payload this service reads; ValueError if it is not an event."""
        data = _dict(data)
        event_id, event_type, created = _id(data.get("id")), data.get("type"), _int(data.get("created"))
        obj = _dict(data.get("data")).get("object")
        if event_id is None or not isinstance(event_type, str) or created is None or not isinstance(obj, dict):
            raise ValueError("not a Stripe event: id, type, created and data.object are required")
        return cls(event_id, event_type, created, obj)

    def payload(self) -> dict[str, Any]:
        """What `parse` needs to read this event back: what is kept of an event no account is linked to yet."""
        return {"id": self.id, "type": self.type, "created": self.created, "data": {"object": self.obj}}

    @property
    def handled(self) -> bool:
        """Whether this service acts on the event at all (anything else: 200, ignored, logged)."""
        if self.type not in HANDLED:
            return False
        if self.type == CHECKOUT_COMPLETED:
            return self.obj.get("mode") == "subscription"
        if self.type in (INVOICE_PAID, INVOICE_FAILED):
            return self.subscription_id is not None  # one-off invoices say nothing about a subscription
        return (self.customer if self.type == CUSTOMER_DELETED else self.subscription_id) is not None

    @property
    def customer(self) -> str | None:
        return _id(self.obj.get("id") if self.type == CUSTOMER_DELETED else self.obj.get("customer"))

    @property
    def subscription_id(self) -> str | None:
        if self.type in (SUB_CREATED, SUB_UPDATED, SUB_DELETED):
            return _id(self.obj.get("id"))
        if self.type == CHECKOUT_COMPLETED:
            return _id(self.obj.get("subscription"))
        if self.type in (INVOICE_PAID, INVOICE_FAILED):
            # API 2025-03-31 and later: parent.subscription_details.subscription; before: subscription.
            details = _dict(_dict(self.obj.get("parent")).get("subscription_details"))
            return _id(details.get("subscription")) or _id(self.obj.get("subscription"))
        return None

    @property
    def account_hints(self) -> list[str]:
        """Account ids the payload names: `client_reference_id` of a checkout session (authoritative), else the
        `account_id` metadata this service puts on the sessions and subscriptions it creates."""
        if self.type == CHECKOUT_COMPLETED:
            candidates = [self.obj.get("client_reference_id"), _dict(self.obj.get("metadata")).get("account_id")]
        elif self.type in (INVOICE_PAID, INVOICE_FAILED):
            details = _dict(_dict(self.obj.get("parent")).get("subscription_details"))
            legacy = _dict(self.obj.get("subscription_details"))
            candidates = [_dict(details.get("metadata")).get("account_id"),
                          _dict(legacy.get("metadata")).get("account_id")]
        else:
            candidates = [_dict(self.obj.get("metadata")).get("account_id")]
        return [c for c in candidates if _id(c)]


def stripe_order(event_type: str, created: int) -> tuple[int, int]:
    """Where an event stands in Stripe's order: its `created` second, then what it is (`RANK`). A checkout session
    carries no subscription state, so it ranks first within its second."""
    return created, RANK.get(event_type, -1)


def _subscription_fields(obj: dict[str, Any]) -> tuple[str | None, str | None, int | None, bool]:
    """(status, price id, current_period_end, cancel_at_period_end) of a subscription object. The period end is on
    the subscription before API 2025-03-31 and on its items since."""
    items = [i for i in (_dict(obj.get("items")).get("data") or []) if isinstance(i, dict)]
    price = next((p for p in (_id(i.get("price")) for i in items) if p), None)
    period_end = _int(obj.get("current_period_end"))
    if period_end is None:
        period_end = max((e for e in (_int(i.get("current_period_end")) for i in items) if e is not None),
                         default=None)
    status = obj.get("status") if isinstance(obj.get("status"), str) else None
    return status, price, period_end, bool(obj.get("cancel_at_period_end"))


def _invoice_fields(obj: dict[str, Any]) -> tuple[str | None, int | None]:
    """(price id, period end) of an invoice's subscription lines (legacy `price`, or `pricing.price_details`)."""
    lines = [ln for ln in (_dict(obj.get("lines")).get("data") or []) if isinstance(ln, dict)]
    prices = (_id(ln.get("price")) or _id(_dict(_dict(ln.get("pricing")).get("price_details")).get("price"))
              for ln in lines)
    price = next((p for p in prices if p), None)
    period_end = max((e for e in (_int(_dict(ln.get("period")).get("end")) for ln in lines) if e is not None),
                     default=None)
    return price, period_end


# ---- applying an event -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: str  # applied | stale | ignored
    account: Account  # the account after the event (unchanged unless applied)
    detail: str = ""
    link_customer: str | None = None  # a Stripe customer to index under this account
    deleted_customer: str | None = None


def _stale_reason(sub: Subscription | None, event: StripeEvent, former: bool) -> str | None:
    if sub is None:
        return None
    if sub.status in FINAL and not former:  # a deleted customer's subscription only ever ends canceled: no reopening
        return f"subscription {sub.id} is {sub.status}, which is final"
    if sub.last_event_created is None:
        return None
    if (event.created, RANK[event.type]) < (sub.last_event_created, sub.last_event_rank):
        return f"older than {sub.last_event_id}, the last event applied to {sub.id}"
    return None


def _with(account: Account, catalog: Catalog, subscriptions: dict[str, Subscription], **fields: Any) -> Account:
    primary = _primary(subscriptions.values(), catalog)
    plan = primary.plan if primary is not None and primary.plan else account.plan
    return account.model_copy(update={"subscriptions": subscriptions, "plan": plan, **fields})


def _primary(subs: Any, catalog: Catalog) -> Subscription | None:
    """The subscription whose plan the account follows: an open one on a known plan (largest first), else the one
    that changed last."""
    subs = list(subs)
    held = [s for s in subs if s.status in OPEN and catalog.find(s.plan)]
    if held:
        return max(held, key=lambda s: (s.status in ENTITLED or s.status == GRACE,
                                        catalog.get(s.plan or "").max_active_workflows))
    return max(subs, key=lambda s: (s.last_event_created or 0, s.last_event_rank), default=None)


def apply(account: Account, event: StripeEvent, catalog: Catalog, now: datetime) -> Decision:
    """What `event` does to `account` (which the service found for it). Pure."""
    customer = event.customer
    former = customer is not None and customer in account.former_stripe_customers
    if former:
        deleted_at = account.former_stripe_customers_deleted.get(customer or "")
        if event.type == CUSTOMER_DELETED or deleted_at is None or (
                stripe_order(event.type, event.created) > stripe_order(CUSTOMER_DELETED, deleted_at)):
            return Decision("stale", account, f"customer {customer} was deleted in Stripe")
    if event.type == CUSTOMER_DELETED:
        return _customer_deleted(account, event, catalog, now)
    if event.type == CHECKOUT_COMPLETED:
        return _checkout_completed(account, event, catalog, now, former)

    sub_id = event.subscription_id
    assert sub_id is not None, "handled events name their subscription"
    current = account.subscriptions.get(sub_id)
    if (why := _stale_reason(current, event, former)) is not None:
        return Decision("stale", account, why)

    if event.type in (SUB_CREATED, SUB_UPDATED, SUB_DELETED):
        status, price, period_end, cancel_at_period_end = _subscription_fields(event.obj)
        if event.type == SUB_DELETED:
            status = "canceled"
        if status is None:
            return Decision("ignored", account, "the subscription has no status")
    else:
        reason = event.obj.get("billing_reason")
        if event.type == INVOICE_PAID and reason in ("subscription_create", "subscription_cycle"):
            status = "active"
        elif event.type == INVOICE_FAILED and reason == "subscription_cycle":
            status = "past_due"
        elif event.type == INVOICE_FAILED and reason == "subscription_create":
            status = "incomplete"
        else:
            # e.g. a proration invoice: it says nothing about the subscription's status, so it does not move the
            # subscription's clock either (moving it would hide an older event that did matter).
            return Decision("ignored", account, f"invoice with billing_reason {reason!r} does not change status")
        price, period_end = _invoice_fields(event.obj)
        cancel_at_period_end = current.cancel_at_period_end if current else False

    if former and status not in FINAL:
        status = "canceled"  # Stripe canceled it with its customer
    plan = catalog.for_price(price) if price else None
    previous_price = current.price_id if current else None
    subscription = Subscription(
        id=sub_id,
        customer=customer or (current.customer if current else None),
        status=status,
        price_id=price or previous_price,
        plan=(plan.name if plan else None) if price else (current.plan if current else None),
        current_period_end=_ts(period_end) if period_end is not None else (
            current.current_period_end if current else None),
        cancel_at_period_end=cancel_at_period_end,
        last_event_created=event.created,
        last_event_rank=RANK[event.type],
        last_event_id=event.id,
        updated_at=now,
    )
    subscriptions = {**account.subscriptions, sub_id: subscription}
    fields: dict[str, Any] = {}
    if account.stripe_customer_id is None and customer is not None and not former:
        fields["stripe_customer_id"] = customer
    detail = f"{sub_id}: {current.status if current else 'new'} -> {status}"
    if former:
        detail += f" (customer {customer} was deleted in Stripe)"
    if price and plan is None:
        detail += f" (price {price} is not one of the plans: not entitled until it is)"
    return Decision("applied", _with(account, catalog, subscriptions, **fields), detail,
                    link_customer=None if former else customer)


def _checkout_completed(account: Account, event: StripeEvent, catalog: Catalog, now: datetime,
                        former: bool) -> Decision:
    """Links the customer and the subscription to the account. It carries no subscription status, so it does not
    take part in the subscription's ordering: an unknown subscription starts `incomplete` until its events say
    (`canceled` if the customer has since been deleted, which links nothing)."""
    customer, sub_id = event.customer, event.subscription_id
    subscriptions = dict(account.subscriptions)
    if sub_id is not None and sub_id not in subscriptions:
        plan = catalog.find(_dict(event.obj.get("metadata")).get("plan"))
        subscriptions[sub_id] = Subscription(id=sub_id, customer=customer,
                                             status="canceled" if former else "incomplete",
                                             price_id=plan.price_id if plan else None,
                                             plan=plan.name if plan else None, updated_at=now)
    if former:
        return Decision("applied", _with(account, catalog, subscriptions),
                        f"subscription {sub_id} of customer {customer}, deleted in Stripe since")
    fields = {"stripe_customer_id": account.stripe_customer_id or customer}
    return Decision("applied", _with(account, catalog, subscriptions, **fields),
                    f"linked customer {customer} and subscription {sub_id}", link_customer=customer)


def _customer_deleted(account: Account, event: StripeEvent, catalog: Catalog, now: datetime) -> Decision:
    """Stripe cancels a deleted customer's subscriptions at once; the account forgets the customer (a new checkout
    makes a new one) but remembers it and when it went, so that its late events grant nothing. The subscriptions'
    ordering keys stay those of their own last events: an older event that arrives later still fills in what the
    subscription was (see `apply`)."""
    customer = event.customer
    assert customer is not None
    subscriptions = {}
    for sub_id, sub in account.subscriptions.items():
        if sub.customer == customer and sub.status not in FINAL:
            sub = sub.model_copy(update={"status": "canceled", "updated_at": now})
        subscriptions[sub_id] = sub
    fields: dict[str, Any] = {
        "former_stripe_customers": [*account.former_stripe_customers, customer],
        "former_stripe_customers_deleted": {**account.former_stripe_customers_deleted, customer: event.created}}
    if account.stripe_customer_id == customer:
        fields["stripe_customer_id"] = None
    return Decision("applied", _with(account, catalog, subscriptions, **fields), f"customer {customer} deleted",
                    deleted_customer=customer)


# ---- entitlement -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Standing:
    """Whether the account may create workflows now, and the plan whose limits apply."""

    entitlement: Entitlement
    plan: Plan | None  # None: the account names a plan this service does not define
    plan_name: str


_REASONS = {
    "active": "The subscription is active.",
    "trialing": "The subscription is in its trial.",
    "unpaid": "Payments failed and Stripe stopped retrying: pay the open invoice in the billing portal "
              f"({PORTAL_HINT}).",
    "canceled": f"The subscription was canceled: subscribe again ({CHECKOUT_HINT}).",
    "incomplete": "The first payment has not gone through yet.",
    "incomplete_expired": f"The first payment never went through: subscribe again ({CHECKOUT_HINT}).",
    "paused": f"The subscription is paused: resume it in the billing portal ({PORTAL_HINT}).",
}


def subscription_entitlement(sub: Subscription, catalog: Catalog, now: datetime, grace: timedelta) -> Entitlement:
    base = {"status": sub.status, "subscription_id": sub.id, "current_period_end": sub.current_period_end,
            "cancel_at_period_end": sub.cancel_at_period_end}
    if sub.status in ENTITLED | {GRACE} and catalog.find(sub.plan) is None:
        return Entitlement(entitled=False, reason=f"The subscription's price ({sub.price_id}) is not one of this "
                                                  "service's plans; an operator has been alerted.", **base)
    if sub.status == GRACE:
        grace_until = sub.current_period_end + grace if sub.current_period_end else None
        if grace_until is not None and now < grace_until:
            return Entitlement(entitled=True, grace_until=grace_until,
                               reason="A payment failed and Stripe is retrying it; access continues until "
                                      f"grace_until. Update the payment method in the billing portal ({PORTAL_HINT}).",
                               **base)
        return Entitlement(entitled=False, grace_until=grace_until,
                           reason="A payment failed and the grace period is over: pay the open invoice in the "
                                  f"billing portal ({PORTAL_HINT}).", **base)
    reason = _REASONS.get(sub.status, f"Stripe reports the status {sub.status!r}.")
    if sub.status in ENTITLED and sub.cancel_at_period_end:
        reason += " It ends at current_period_end (cancellation scheduled)."
    return Entitlement(entitled=sub.status in ENTITLED, reason=reason, **base)


def standing(account: Account, catalog: Catalog, now: datetime, grace: timedelta) -> Standing:
    """Entitlement and plan at `now`. An account with Stripe subscriptions is decided by them alone (the best one
    wins); an account Stripe never linked a subscription to is decided by the operator's `entitled` grant."""
    plan_name = account.plan
    if account.subscriptions:
        judged = [(subscription_entitlement(s, catalog, now, grace), s) for s in account.subscriptions.values()]
        entitled = [(e, s) for e, s in judged if e.entitled]
        if entitled:
            entitlement, sub = max(entitled, key=lambda es: catalog.get(es[1].plan or "").max_active_workflows)
        else:
            entitlement, sub = max(judged, key=lambda es: (es[1].last_event_created or 0, es[1].last_event_rank,
                                                           es[1].updated_at))
        plan_name = sub.plan or account.plan
    elif account.entitled:
        entitlement = Entitlement(entitled=True, status="granted",
                                  reason="Granted by an operator; no Stripe subscription.")
    else:
        entitlement = Entitlement(entitled=False, status="none",
                                  reason=f"No subscription: subscribe ({CHECKOUT_HINT}).")
    plan = catalog.find(plan_name)
    if plan is None and entitlement.entitled:
        entitlement = entitlement.model_copy(update={
            "entitled": False,
            "reason": f"The account's plan {plan_name!r} is not defined; an operator has been alerted."})
    return Standing(entitlement, plan, plan_name)


def has_open_subscription(account: Account) -> Subscription | None:
    return next((s for s in account.subscriptions.values() if s.status in OPEN), None)


def admit_workflow(account_data: dict[str, Any] | None, catalog: Catalog, now: datetime, grace_days: float) -> Standing:
    """Raise unless the account may create one more workflow now: 402 if it is not entitled (saying how to pay),
    403 at its plan's `max_active_workflows`. Works on the account document the create already read."""
    if account_data is None:
        raise PaymentRequired(f"This account does not exist; subscribe ({CHECKOUT_HINT}).", checkout=CHECKOUT_HINT)
    account = Account.model_validate(account_data)
    st = standing(account, catalog, now, timedelta(days=grace_days))
    if not st.entitlement.entitled or st.plan is None:
        raise PaymentRequired(f"This account may not create workflows: {st.entitlement.reason}",
                              checkout=CHECKOUT_HINT, entitlement=st.entitlement.model_dump(mode="json"))
    limit = st.plan.max_active_workflows
    if account.active_workflows >= limit:
        raise QuotaExceeded(f"The {st.plan.name} plan allows {limit} active workflows at once and "
                            f"{account.active_workflows} are active: finish or cancel one, or change plans "
                            f"({PORTAL_HINT}).", plan=st.plan.name, limit=limit,
                            active_workflows=account.active_workflows)
    return st
