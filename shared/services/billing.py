"""Billing use cases: the Stripe webhook, Checkout and Billing Portal sessions, and the account view.

Each reads what it needs in one batched read (the webhook: a second read only when the account is not named in the
event), decides in `shared.domain.billing`, and writes in one atomic commit guarded by the account's update time. Stripe
is reached only through `shared.adapters.stripe`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.adapters import stripe as stripe_gateway
from shared.adapters.firestore import Doc, Key, Store, Writes
from shared.domain import billing
from shared.domain.billing import StripeEvent
from shared.domain.errors import (
    AlreadySubscribed,
    BillingNotConfigured,
    Forbidden,
    NoBillingAccount,
    NotFound,
    ValidationFailed,
    VersionConflict,
)
from shared.domain.models import (
    Account,
    AccountUsage,
    AccountView,
    CheckoutSession,
    CheckoutSessionRequest,
    PlanLimits,
    PortalSession,
    WebhookReceipt,
)
from shared.runtime import clock
from shared.runtime.config import config
from shared.services import commits, idempotency
from shared.services.auth import Principal
from shared.services.idempotency import IdempotencyRequest, Outcome

# Stripe retries a delivery for 3 days and an operator can resend an event for 30; past that a redelivery is still
# harmless (the per-subscription order ignores it), so the record can go (TTL policy on `expires_at`).
EVENT_RECORD_TTL = timedelta(days=90)
_BILLING_FIELDS = ("plan", "stripe_customer_id", "former_stripe_customers", "subscriptions")


def grace_period() -> timedelta:
    return timedelta(days=config().billing_grace_days)


def _load_account(doc: Doc | None) -> Account:
    if doc is None or not doc.exists:
        raise NotFound("The account of this API key no longer exists.")
    return Account.model_validate(doc.data)


# ---- webhook -----------------------------------------------------------------------------------------------------


def receive_stripe_event(store: Store, payload: bytes, signature: str | None, log: dict[str, Any]) -> dict:
    """Verify, then apply the event exactly once and in order. Answers 200 for everything Stripe should not retry
    (applied, duplicate, stale, unmatched, ignored); a store failure raises Unavailable (503: Stripe retries)."""
    data = stripe_gateway.verify_event(payload, signature)
    try:
        event = StripeEvent.parse(data)
    except ValueError as exc:
        raise ValidationFailed([{"field": "(body)", "message": str(exc)}]) from exc
    log.update(stripe_event_id=event.id, stripe_event_type=event.type)
    if not event.handled:
        return _receipt(event, "ignored", log, "this service does not act on it")

    event_key = store.stripe_event(event.id)
    customer_key = store.stripe_customer(event.customer) if event.customer else None
    keys = [event_key, *([customer_key] if customer_key else []), *(store.account(a) for a in event.account_hints)]

    def attempt(number: int) -> tuple[tuple[str, str, str | None], Writes]:
        at = clock.now()
        docs = store.get_many(keys)
        if docs[event_key].exists:
            return ("duplicate", "already processed", None), Writes()
        mapping = docs[customer_key] if customer_key else None
        account_id, why = _account_for(event, mapping)
        account_doc: Doc | None = None
        if account_id is not None:
            account_key = store.account(account_id)
            account_doc = docs.get(account_key) or store.get(account_key)
            if not account_doc.exists:
                why = f"no account {account_id}"
        writes = Writes()
        if account_id is None or account_doc is None or not account_doc.exists:
            writes.create(event_key, _event_record(event, "unmatched", None, at, why))
            writes.create(store.stripe_unmatched(event.id), {
                "event_id": event.id, "type": event.type, "created": event.created, "customer": event.customer,
                "subscription": event.subscription_id, "account_hints": event.account_hints, "reason": why,
                "received_at": at, "expires_at": at + EVENT_RECORD_TTL})  # for an operator, then TTL/cleanup
            return ("unmatched", why, None), writes
        account = Account.model_validate(account_doc.data)
        decision = billing.apply(account, event, config().plans, at)
        writes.create(event_key, _event_record(event, decision.outcome, account_id, at, decision.detail))
        changes = _changes(account, decision.account)
        if changes:
            writes.update(account_doc.key, changes, if_updated_at=account_doc.update_time)
        if decision.link_customer and not (mapping is not None and mapping.exists):
            writes.set(store.stripe_customer(decision.link_customer),
                       {"account_id": account_id, "deleted": False, "linked_at": at})
        if decision.deleted_customer:
            writes.set(store.stripe_customer(decision.deleted_customer),
                       {"account_id": account_id, "deleted": True, "deleted_at": at})
        return (decision.outcome, decision.detail, account_id), writes

    # A lost race (the account changed, or a concurrent delivery of this event won) decides again on a fresh read;
    # past the commit loop's attempts the answer is 409 and Stripe delivers the event again.
    outcome, detail, account_id = commits.run(
        store, attempt, busy="The account is changing too fast; Stripe will deliver the event again.")
    if account_id is not None:
        log["account_id"] = account_id
    if outcome == "applied" and "not one of the plans" in detail:
        log["severity"] = "ERROR"  # a customer pays for a price the plans file does not know
    elif outcome == "unmatched":
        log["severity"] = "WARNING"
    return _receipt(event, outcome, log, detail)


def _account_for(event: StripeEvent, mapping: Doc | None) -> tuple[str | None, str]:
    """The account an event belongs to, or None and why not. A checkout session names its account
    (`client_reference_id`); anything else is found through its Stripe customer, or else through the `account_id`
    metadata this service puts on the subscriptions it sells."""
    mapped = mapping.get("account_id") if mapping is not None and mapping.exists else None
    hints = event.account_hints
    if event.type == billing.CHECKOUT_COMPLETED and hints:
        if mapped is not None and mapped != hints[0]:
            return None, f"customer {event.customer} belongs to account {mapped}, the session names {hints[0]}"
        return hints[0], ""
    if mapped is not None:
        return mapped, ""
    if hints:
        return hints[0], ""
    return None, f"no account knows customer {event.customer}"


def _changes(before: Account, after: Account) -> dict[str, Any]:
    old, new = before.model_dump(mode="python"), after.model_dump(mode="python")
    return {f: new[f] for f in _BILLING_FIELDS if new[f] != old[f]}


def _event_record(event: StripeEvent, outcome: str, account_id: str | None, at: datetime, detail: str) -> dict:
    return {"type": event.type, "created": event.created, "account_id": account_id, "outcome": outcome,
            "detail": detail, "received_at": at, "expires_at": at + EVENT_RECORD_TTL}


def _receipt(event: StripeEvent, outcome: str, log: dict[str, Any], detail: str) -> dict:
    log.update(outcome=outcome, detail=detail)
    return WebhookReceipt(event_id=event.id, outcome=outcome).model_dump(mode="json")


# ---- checkout and portal -----------------------------------------------------------------------------------------


def create_checkout_session(
    store: Store, principal: Principal, request: CheckoutSessionRequest, idem: IdempotencyRequest | None
) -> Outcome:
    """A Checkout Session in subscription mode for the plan's price, for the account's Stripe customer (made once:
    the Stripe idempotency key is the account's, so retries and races never make two)."""
    if not principal.is_owner:
        raise Forbidden("Only an OWNER key may manage billing.")
    plans = config().plans
    plan = plans.find(request.plan)
    if plan is None or not plan.for_sale:
        raise ValidationFailed([{"field": "plan", "message": "must be a plan for sale: "
                                                             + ", ".join(p.name for p in plans.for_sale())}])
    if plan.price_id is None:
        raise BillingNotConfigured(f"The {plan.name} plan has no Stripe price here ({plan.price_env} is not set).")
    cfg = config()
    if not cfg.checkout_success_url or not cfg.checkout_cancel_url:
        raise BillingNotConfigured("QORCH_CHECKOUT_SUCCESS_URL and QORCH_CHECKOUT_CANCEL_URL must be set.")
    gateway = stripe_gateway.get_gateway()

    account_key = store.account(principal.account_id)
    idem_key = store.idempotency(principal.account_id, idem.key_hash) if idem else None
    keys: list[Key] = [account_key, *([idem_key] if idem_key else [])]
    docs = store.get_many(keys)
    at = clock.now()
    if idem and idem_key and (replayed := idempotency.replay(docs[idem_key], idem, at)):
        return replayed
    account = _load_account(docs[account_key])
    if (held := billing.has_open_subscription(account)) is not None:
        raise AlreadySubscribed(f"Subscription {held.id} is {held.status}: change plans, pay or cancel in the "
                                f"billing portal ({billing.PORTAL_HINT}).", subscription_id=held.id,
                                portal=billing.PORTAL_HINT)
    customer = account.stripe_customer_id
    if customer is None:
        # One key per customer the account ever has (a customer deleted in Stripe is replaced by a new one).
        key = f"qorch-customer-{account.id}-{len(account.former_stripe_customers)}"
        customer = gateway.create_customer(account_id=account.id, name=account.name, idempotency_key=key)
    session_id, url = gateway.create_checkout_session(
        customer=customer, price=plan.price_id, account_id=account.id, plan=plan.name,
        success_url=cfg.checkout_success_url, cancel_url=cfg.checkout_cancel_url,
        idempotency_key=f"qorch-checkout-{account.id}-{idem.key_hash}" if idem else None)
    outcome = Outcome(body=CheckoutSession(id=session_id, url=url).model_dump(mode="json"))

    def attempt(number: int) -> tuple[Outcome, Writes]:
        nonlocal docs
        if number:
            # The account changed (a workflow was created, or a concurrent checkout linked the same customer), or a
            # same-key request won: read again and write what is still missing.
            docs = store.get_many(keys)
            if idem and idem_key and (replayed := idempotency.replay(docs[idem_key], idem, at)):
                return replayed, Writes()
        current = _load_account(docs[account_key])
        writes = Writes()
        if current.stripe_customer_id is None:
            writes.update(account_key, {"stripe_customer_id": customer},
                          if_updated_at=docs[account_key].update_time)
            writes.set(store.stripe_customer(customer), {"account_id": current.id, "deleted": False,
                                                         "linked_at": at})
        elif current.stripe_customer_id != customer:
            raise VersionConflict("The account's Stripe customer changed meanwhile; retry.")
        if idem and idem_key:
            writes.replace(idem_key, idempotency.record(idem, outcome, at), docs[idem_key])
        return outcome, writes

    return commits.run(store, attempt, busy="The account is changing too fast; retry.")


def create_portal_session(store: Store, principal: Principal, idem: IdempotencyRequest | None) -> Outcome:
    """A Billing Portal session for the account's Stripe customer. With an Idempotency-Key, Stripe makes the session
    once (its idempotency key is derived from ours) and a repeat replays the first answer."""
    if not principal.is_owner:
        raise Forbidden("Only an OWNER key may manage billing.")
    return_url = config().portal_return_url
    if not return_url:
        raise BillingNotConfigured("QORCH_PORTAL_RETURN_URL must be set.")
    gateway = stripe_gateway.get_gateway()
    account_key = store.account(principal.account_id)
    idem_key = store.idempotency(principal.account_id, idem.key_hash) if idem else None
    keys: list[Key] = [account_key, *([idem_key] if idem_key else [])]
    docs = store.get_many(keys)
    at = clock.now()
    if idem and idem_key and (replayed := idempotency.replay(docs[idem_key], idem, at)):
        return replayed
    account = _load_account(docs[account_key])
    if account.stripe_customer_id is None or not account.subscriptions:
        raise NoBillingAccount("This account has never paid through Stripe: subscribe first "
                               f"({billing.CHECKOUT_HINT}).", checkout=billing.CHECKOUT_HINT)
    url = gateway.create_portal_session(customer=account.stripe_customer_id, return_url=return_url,
                                        idempotency_key=f"qorch-portal-{account.id}-{idem.key_hash}" if idem
                                        else None)
    outcome = Outcome(body=PortalSession(url=url).model_dump(mode="json"))

    def attempt(number: int) -> tuple[Outcome, Writes]:
        nonlocal docs
        writes = Writes()
        if idem is None or idem_key is None:
            return outcome, writes  # nothing of ours to write
        if number:  # a same-key request recorded its answer first: that one is the answer
            docs = store.get_many(keys)
            if replayed := idempotency.replay(docs[idem_key], idem, at):
                return replayed, writes
        writes.replace(idem_key, idempotency.record(idem, outcome, at), docs[idem_key])
        return outcome, writes

    return commits.run(store, attempt, busy="Too many concurrent requests with this Idempotency-Key; retry.")


# ---- account -----------------------------------------------------------------------------------------------------


def get_account(store: Store, principal: Principal) -> dict:
    account = _load_account(store.get(store.account(principal.account_id)))
    standing = billing.standing(account, config().plans, clock.now(), grace_period())
    view = AccountView(
        id=account.id, name=account.name, plan=standing.plan_name, entitlement=standing.entitlement,
        limits=PlanLimits(**standing.plan.limits()) if standing.plan else None,
        usage=AccountUsage(active_workflows=account.active_workflows))
    return view.model_dump(mode="json")
