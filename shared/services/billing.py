"""Billing use cases: the Stripe webhook, Checkout and Billing Portal sessions, and the account view.

Each reads what it needs in one batched read (the webhook: a second read when the account is not named in the event,
and one of the kept events when it links a customer that has some), decides in `shared.domain.billing`, and writes in
one atomic commit guarded by the account's update time (and the webhook: by the Stripe customer's document's). Stripe
is reached only through `shared.adapters.stripe`.

Events that arrive before their customer is linked to an account are kept (`stripe_unmatched/{event}`, listed on
`stripe_customers/{customer}.pending`) and applied, in Stripe's order, by the delivery that links the customer: the
re-apply approach rather than reading the subscription from Stripe's API at link time (README, "Payments that start
outside qorch", says why).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from shared.adapters import stripe as stripe_gateway
from shared.adapters.firestore import DeleteField, DocRef, Snapshot, Store, WriteConflict, Writes
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
    AccountUsage,
    AccountView,
    CheckoutSession,
    CheckoutSessionRequest,
    PlanLimits,
    PortalSession,
    WebhookReceipt,
)
from shared.domain.plans import catalog
from shared.runtime.config import config
from shared.services import idempotency
from shared.services.auth import Principal
from shared.services.idempotency import IdempotencyRequest, Outcome

MAX_ATTEMPTS = 10
# Stripe retries a delivery for 3 days and an operator can resend an event for 30; past that a redelivery is still
# harmless (the per-subscription order ignores it), so the record can go (TTL policy on `expires_at`).
EVENT_RECORD_TTL = timedelta(days=90)
# Kept events applied by one commit: each is two writes (its record, its kept record), within Firestore's 500.
KEPT_PER_COMMIT = 100
_UNKNOWN_PRICE = "not one of the plans"  # in an applied event's detail: an operator must fix the plans or prices
_BILLING_FIELDS = ("plan", "stripe_customer_id", "former_stripe_customers", "former_stripe_customers_deleted",
                   "subscriptions")


def now() -> datetime:
    return datetime.now(UTC)


def grace_period() -> timedelta:
    return timedelta(days=config().billing_grace_days)


def _load_account(snapshot: Snapshot | None) -> Account:
    if snapshot is None or not snapshot.exists:
        raise NotFound("The account of this API key no longer exists.")
    return Account.model_validate(snapshot.to_dict())


# ---- webhook -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CustomerDoc:
    """`stripe_customers/{id}` as read: the account the customer is linked to (None: none yet), and the events kept
    until one is (`pending`: event id → type, created, received_at, expires_at)."""

    snap: Snapshot | None
    account_id: str | None
    pending: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, snap: Snapshot | None) -> _CustomerDoc:
        data = snap.to_dict() if snap is not None and snap.exists else {}
        return cls(snap, data.get("account_id"), dict(data.get("pending") or {}))

    def write(self, writes: Writes, ref: DocRef, fields: dict[str, Any], drop: tuple[str, ...] = ()) -> None:
        """Write `fields` (and remove `drop`) only if the document is still as read: absent, or unchanged. Every
        writer of a customer's document goes through this precondition, which serializes keeping an event and
        linking the customer: one of two racing deliveries fails its commit and decides again."""
        if self.snap is not None and self.snap.exists:
            writes.update(ref, {**fields, **{f: DeleteField for f in drop}}, if_updated_at=self.snap.update_time)
        else:
            writes.create(ref, fields)


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
    outcome, detail, more = _receive(store, event, log)
    while more:  # more kept events than one commit holds: the rest, a commit at a time
        more = _apply_rest(store, event, log)
    return _receipt(event, outcome, log, detail)


def _receive(store: Store, event: StripeEvent, log: dict[str, Any]) -> tuple[str, str, bool]:
    """Decide and commit one delivery: (outcome, detail, whether kept events are left for another commit)."""
    event_ref = store.stripe_event(event.id)
    customer_ref = store.stripe_customer(event.customer) if event.customer else None
    refs = [event_ref, *([customer_ref] if customer_ref else []), *(store.account(a) for a in event.account_hints)]
    refs = list({r.path: r for r in refs}.values())
    for _ in range(MAX_ATTEMPTS):
        at = now()
        snaps = store.get_many(refs)
        if snaps[event_ref.path].exists:
            return "duplicate", "already processed", False
        customer = _CustomerDoc.of(snaps.get(customer_ref.path) if customer_ref else None)
        account_id, why = _account_for(event, customer.account_id)
        account_snap: Snapshot | None = None
        if account_id is not None:
            account_ref = store.account(account_id)
            account_snap = snaps.get(account_ref.path) or store.get(account_ref)
            if not account_snap.exists:
                why = f"no account {account_id}"
        writes = Writes()
        more = False
        if account_id is None or account_snap is None or not account_snap.exists:
            # Kept under its customer until a later event links the customer to an account (then applied), unless
            # the customer is linked already (the event names another account, or a deleted one: an operator's).
            keep = customer_ref is not None and customer.account_id is None
            writes.create(event_ref, _event_record(event, "unmatched", None, at, why))
            writes.create(store.stripe_unmatched(event.id), {
                "event_id": event.id, "type": event.type, "created": event.created, "customer": event.customer,
                "subscription": event.subscription_id, "account_hints": event.account_hints, "reason": why,
                "kept_for_link": keep, **({"payload": json.dumps(event.payload())} if keep else {}),
                "received_at": at, "expires_at": at + EVENT_RECORD_TTL})  # TTL/cleanup
            if keep:
                assert customer_ref is not None
                pending = {i: p for i, p in customer.pending.items() if p["expires_at"] > at}  # their records expired
                pending[event.id] = {"type": event.type, "created": event.created, "received_at": at,
                                     "expires_at": at + EVENT_RECORD_TTL}
                customer.write(writes, customer_ref, {"account_id": None, "pending": pending,
                                                      "expires_at": at + EVENT_RECORD_TTL})
                why += f"; kept until customer {event.customer} is linked to an account"
            outcome, detail = "unmatched", why
        else:
            before = Account.model_validate(account_snap.to_dict())
            decision = billing.apply(before, event, catalog(), at)
            outcome, detail = decision.outcome, decision.detail
            writes.create(event_ref, _event_record(event, outcome, account_id, at, detail))
            account = decision.account
            deleted = decision.deleted_customer is not None
            links = customer_ref is not None and customer.account_id is None and (
                decision.link_customer == event.customer or deleted)
            kept: list[str] = []
            log.pop("kept_events", None)  # from an attempt that lost its race
            if customer_ref is not None and customer.pending and (links or customer.account_id == account_id):
                applied = _apply_kept(store, writes, account, account_id, customer.pending, event.id, at)
                account, kept, deleted = applied.account, applied.done, deleted or applied.deleted
                detail += f"; applied {len(kept)} kept event(s) of customer {event.customer}"
                detail += "".join(f" [{d}]" for d in applied.details if _UNKNOWN_PRICE in d)
                log["kept_events"] = kept
            left = {i: p for i, p in customer.pending.items() if i not in kept} if kept else customer.pending
            more = bool(kept) and bool(left)
            changes = _changes(before, account)
            if changes:
                writes.update(account_ref, changes, if_updated_at=account_snap.update_time)
            if customer_ref is not None and (links or deleted or kept):
                fields: dict[str, Any] = {"account_id": account_id}
                fields |= {"deleted": True, "deleted_at": at} if deleted else {}
                fields |= {"deleted": False, "linked_at": at} if links and not deleted else {}
                fields |= {"pending": left} if left else {}
                customer.write(writes, customer_ref, fields,
                               drop=("expires_at",) + (() if left else ("pending",)))
            log["account_id"] = account_id
            if _UNKNOWN_PRICE in detail:
                log["severity"] = "ERROR"  # a customer pays for a price the plans file does not know
        try:
            store.commit(writes)
        except WriteConflict:
            # The account or the customer's document changed (a concurrent delivery kept an event, linked the
            # customer or applied one), or a concurrent delivery of this event won: re-read and decide again.
            continue
        if outcome == "unmatched":
            log["severity"] = "WARNING"
        return outcome, detail, more
    raise Unavailable("The account is changing too fast; Stripe will deliver the event again.")


def _apply_rest(store: Store, event: StripeEvent, log: dict[str, Any]) -> bool:
    """Apply the next commit's worth of the kept events still listed on the (now linked) customer of `event`;
    whether some are still left. Only for customers with more kept events than one commit holds."""
    assert event.customer is not None
    customer_ref = store.stripe_customer(event.customer)
    for _ in range(MAX_ATTEMPTS):
        at = now()
        customer = _CustomerDoc.of(store.get(customer_ref))
        if customer.account_id is None or not customer.pending:
            return False
        account_ref = store.account(customer.account_id)
        account_snap = store.get(account_ref)
        if not account_snap.exists:
            return False
        writes = Writes()
        before = Account.model_validate(account_snap.to_dict())
        applied = _apply_kept(store, writes, before, customer.account_id, customer.pending, event.id, at)
        left = {i: p for i, p in customer.pending.items() if i not in applied.done}
        if changes := _changes(before, applied.account):
            writes.update(account_ref, changes, if_updated_at=account_snap.update_time)
        fields: dict[str, Any] = {"pending": left} if left else {}
        fields |= {"deleted": True, "deleted_at": at} if applied.deleted else {}
        customer.write(writes, customer_ref, fields, drop=() if left else ("pending",))
        try:
            store.commit(writes)
        except WriteConflict:
            continue
        log["kept_events"] = [*log.get("kept_events", []), *applied.done]
        if any(_UNKNOWN_PRICE in d for d in applied.details):
            log["severity"] = "ERROR"
        return bool(left)
    raise Unavailable("The account is changing too fast; Stripe will deliver the event again.")


class _Applied(NamedTuple):
    account: Account  # after the kept events
    done: list[str]  # the kept events dealt with: applied, refused (another account's), or expired
    deleted: bool  # one of them deleted the customer
    details: list[str]  # what each applied one did


def _apply_kept(store: Store, writes: Writes, account: Account, account_id: str, pending: dict[str, dict[str, Any]],
                linked_by: str, at: datetime) -> _Applied:
    """Apply the oldest kept events (up to KEPT_PER_COMMIT) to `account`, in Stripe's order, adding their writes:
    each event's record now says what it did, and its kept record says it was applied. One batched read."""
    order = sorted(pending, key=lambda i: (*billing.stripe_order(pending[i]["type"], pending[i]["created"]),
                                           pending[i]["received_at"], i))[:KEPT_PER_COMMIT]
    snaps = store.get_many([store.stripe_unmatched(i) for i in order])
    plans, deleted, details = catalog(), False, []
    for event_id in order:
        ref = store.stripe_unmatched(event_id)
        snap = snaps[ref.path]
        if not snap.exists or not snap.get("payload"):
            continue  # expired (TTL or cleanup, 90 days): nothing left to apply
        kept = StripeEvent.parse(json.loads(snap.get("payload")))
        target, why = _account_for(kept, account_id)
        if target != account_id:  # e.g. a checkout session naming another account: an operator's, as if it came now
            writes.update(ref, {"kept_for_link": False, "reason": why}, if_updated_at=None)
            continue
        decision = billing.apply(account, kept, plans, at)
        account = decision.account
        deleted = deleted or decision.deleted_customer is not None
        details.append(decision.detail)
        record = _event_record(kept, decision.outcome, account_id, snap.get("received_at"), decision.detail)
        writes.set(store.stripe_event(event_id), {**record, "applied_at": at, "linked_by": linked_by})
        writes.update(ref, {"kept_for_link": False, "account_id": account_id, "outcome": decision.outcome,
                            "applied_at": at, "linked_by": linked_by}, if_updated_at=None)
    return _Applied(account, order, deleted, details)


def _account_for(event: StripeEvent, mapped: str | None) -> tuple[str | None, str]:
    """The account an event belongs to, or None and why not. A checkout session names its account
    (`client_reference_id`); anything else is found through its Stripe customer (`mapped`: the account its
    document links it to), or else through the `account_id` metadata this service puts on the subscriptions it
    sells."""
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
    account = _load_account(store.get(store.account(principal.account_id)))
    standing = billing.standing(account, catalog(), now(), grace_period())
    view = AccountView(
        id=account.id, name=account.name, plan=standing.plan_name, entitlement=standing.entitlement,
        limits=PlanLimits(**standing.plan.limits()) if standing.plan else None,
        usage=AccountUsage(active_workflows=account.active_workflows))
    return view.model_dump(mode="json")
