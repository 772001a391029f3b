"""Billing use cases: the Stripe webhook, Checkout and Billing Portal sessions, and the account view.

Each reads what it needs in one batched read (the webhook: a second read only when the account is not named in the
event), decides in `shared.domain.billing`, and writes in one atomic commit guarded by the account's update time. Stripe
is reached only through `shared.adapters.stripe`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters import stripe as stripe_gateway
from shared.adapters.firestore import DocRef, Snapshot, Store, WriteConflict, Writes
from shared.domain import billing
from shared.domain.billing import StripeEvent
from shared.domain.errors import (
    AlreadySubscribed,
    BillingNotConfigured,
    Forbidden,
    NoBillingAccount,
    NotFound,
    Unavailable,
    ValidationFailed,
    VersionConflict,
)
from shared.domain.models import (
    Account,
    CheckoutSession,
    CheckoutSessionRequest,
    PortalSession,
    WebhookReceipt,
)
from shared.domain.plans import catalog
from shared.runtime.config import config
from shared.services import accounts, idempotency
from shared.services.auth import Principal
from shared.services.idempotency import IdempotencyRequest, Outcome

MAX_ATTEMPTS = 10
# Stripe retries a delivery for 3 days and an operator can resend an event for 30; past that a redelivery is still
# harmless (the per-subscription order ignores it), so the record can go (TTL policy on `expires_at`).
EVENT_RECORD_TTL = timedelta(days=90)
_BILLING_FIELDS = ("plan", "stripe_customer_id", "former_stripe_customers", "subscriptions")


def now() -> datetime:
    return datetime.now(UTC)


def grace_period() -> timedelta:
    return timedelta(days=config().billing_grace_days)


def _load_account(snapshot: Snapshot | None) -> Account:
    if snapshot is None or not snapshot.exists:
        raise NotFound("The account of this API key no longer exists.")
    return Account.model_validate(snapshot.to_dict())


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

    event_ref = store.stripe_event(event.id)
    customer_ref = store.stripe_customer(event.customer) if event.customer else None
    refs = [event_ref, *([customer_ref] if customer_ref else []), *(store.account(a) for a in event.account_hints)]
    refs = list({r.path: r for r in refs}.values())
    for _ in range(MAX_ATTEMPTS):
        at = now()
        snaps = store.get_many(refs)
        if snaps[event_ref.path].exists:
            return _receipt(event, "duplicate", log, "already processed")
        mapping = snaps.get(customer_ref.path) if customer_ref else None
        account_id, why = _account_for(event, mapping)
        account_snap: Snapshot | None = None
        if account_id is not None:
            account_ref = store.account(account_id)
            account_snap = snaps.get(account_ref.path) or store.get(account_ref)
            if not account_snap.exists:
                why = f"no account {account_id}"
        writes = Writes()
        if account_id is None or account_snap is None or not account_snap.exists:
            writes.create(event_ref, _event_record(event, "unmatched", None, at, why))
            writes.create(store.stripe_unmatched(event.id), {
                "event_id": event.id, "type": event.type, "created": event.created, "customer": event.customer,
                "subscription": event.subscription_id, "account_hints": event.account_hints, "reason": why,
                "received_at": at, "expires_at": at + EVENT_RECORD_TTL})  # for an operator, then TTL/cleanup
            outcome, detail = "unmatched", why
        else:
            account = Account.model_validate(account_snap.to_dict())
            decision = billing.apply(account, event, catalog(), at)
            outcome, detail = decision.outcome, decision.detail
            writes.create(event_ref, _event_record(event, outcome, account_id, at, detail))
            changes = _changes(account, decision.account)
            if changes:
                writes.update(store.account(account_id), changes, if_updated_at=account_snap.update_time)
            if decision.link_customer and not (mapping is not None and mapping.exists):
                writes.set(store.stripe_customer(decision.link_customer),
                           {"account_id": account_id, "deleted": False, "linked_at": at})
            if decision.deleted_customer:
                writes.set(store.stripe_customer(decision.deleted_customer),
                           {"account_id": account_id, "deleted": True, "deleted_at": at})
            log["account_id"] = account_id
            if outcome == "applied" and "not one of the plans" in detail:
                log["severity"] = "ERROR"  # a customer pays for a price the plans file does not know
        try:
            store.commit(writes)
        except WriteConflict:
            continue  # the account changed, or a concurrent delivery of this event won: re-read and decide again
        if outcome == "unmatched":
            log["severity"] = "WARNING"
        return _receipt(event, outcome, log, detail)
    raise Unavailable("The account is changing too fast; Stripe will deliver the event again.")


def _account_for(event: StripeEvent, mapping: Snapshot | None) -> tuple[str | None, str]:
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
    plans = catalog()
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

    account_ref = store.account(principal.account_id)
    idem_ref = store.idempotency(principal.account_id, idem.key_hash) if idem else None
    refs: list[DocRef] = [account_ref, *([idem_ref] if idem_ref else [])]
    snaps = store.get_many(refs)
    at = now()
    if idem and (replayed := idempotency.replay(snaps.get(idem_ref.path), idem, at)):
        return replayed
    account = _load_account(snaps[account_ref.path])
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

    for _ in range(MAX_ATTEMPTS):
        writes = Writes()
        if account.stripe_customer_id is None:
            writes.update(account_ref, {"stripe_customer_id": customer}, if_updated_at=snaps[account_ref.path]
                          .update_time)
            writes.set(store.stripe_customer(customer), {"account_id": account.id, "deleted": False,
                                                         "linked_at": at})
        elif account.stripe_customer_id != customer:
            raise VersionConflict("The account's Stripe customer changed meanwhile; retry.")
        if idem:
            writes.replace(idem_ref, idempotency.record(idem, outcome, at), snaps[idem_ref.path])
        if not writes.ops:
            return outcome
        try:
            store.commit(writes)
            return outcome
        except WriteConflict:
            # The account changed (a workflow was created, or a concurrent checkout linked the same customer),
            # or a same-key request won: re-read and write what is still missing.
            snaps = store.get_many(refs)
            if idem and (replayed := idempotency.replay(snaps.get(idem_ref.path), idem, at)):
                return replayed
            account = _load_account(snaps[account_ref.path])
    raise VersionConflict("The account is changing too fast; retry.")


def create_portal_session(store: Store, principal: Principal) -> dict:
    if not principal.is_owner:
        raise Forbidden("Only an OWNER key may manage billing.")
    return_url = config().portal_return_url
    if not return_url:
        raise BillingNotConfigured("QORCH_PORTAL_RETURN_URL must be set.")
    gateway = stripe_gateway.get_gateway()
    account = _load_account(store.get(store.account(principal.account_id)))
    if account.stripe_customer_id is None or not account.subscriptions:
        raise NoBillingAccount("This account has never paid through Stripe: subscribe first "
                               f"({billing.CHECKOUT_HINT}).", checkout=billing.CHECKOUT_HINT)
    url = gateway.create_portal_session(customer=account.stripe_customer_id, return_url=return_url)
    return PortalSession(url=url).model_dump(mode="json")


# ---- account -----------------------------------------------------------------------------------------------------


def get_account(store: Store, principal: Principal) -> dict:
    return accounts.account_view(_load_account(store.get(store.account(principal.account_id))), now())
