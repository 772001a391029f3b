"""Billing use cases: the Stripe webhook, Checkout and Billing Portal sessions, and the account view.

Each reads what it needs in one batched read (the webhook: a second read when the account is not named in the event,
and one of the kept events when it links a customer that has some), decides in `shared.domain.billing`, and writes in
one atomic commit guarded by the account's update time (and the webhook: by the Stripe customer's document's),
through the one commit loop (`shared.services.commits`: a lost race decides again; 409 when the attempts run out).
Stripe is reached only through `shared.adapters.stripe`.

Events that arrive before their customer is linked to an account are kept (`stripe_unmatched/{event}`, listed on
`stripe_customers/{customer}.pending`) and applied, in Stripe's order, by the delivery that links the customer: the
re-apply approach rather than reading the subscription from Stripe's API at link time (README, "Payments that start
outside qorch", says why).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

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
    CheckoutSession,
    CheckoutSessionRequest,
    PortalSession,
    WebhookReceipt,
)
from shared.runtime import clock
from shared.runtime.config import config
from shared.services import accounts, commits, idempotency
from shared.services.auth import Principal
from shared.services.idempotency import IdempotencyRequest, Outcome

# Stripe retries a delivery for 3 days and an operator can resend an event for 30; past that a redelivery is still
# harmless (the per-subscription order ignores it), so the record can go (TTL policy on `expires_at`).
EVENT_RECORD_TTL = timedelta(days=90)
# Kept events applied by one commit: each is two writes (its record, its kept record), within Firestore's 500.
KEPT_PER_COMMIT = 100
_UNKNOWN_PRICE = "not one of the plans"  # in an applied event's detail: an operator must fix the plans or prices
_BILLING_FIELDS = ("plan", "stripe_customer_id", "former_stripe_customers", "former_stripe_customers_deleted",
                   "subscriptions")


def grace_period() -> timedelta:
    return timedelta(days=config().billing_grace_days)


def _load_account(doc: Doc | None) -> Account:
    if doc is None or not doc.exists:
        raise NotFound("The account of this API key no longer exists.")
    return Account.model_validate(doc.data)


# ---- webhook -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CustomerDoc:
    """`stripe_customers/{id}` as read: the account the customer is linked to (None: none yet), and the events kept
    until one is (`pending`: event id → type, created, received_at, expires_at)."""

    doc: Doc | None
    account_id: str | None
    pending: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, doc: Doc | None) -> _CustomerDoc:
        data = doc.data if doc is not None and doc.data is not None else {}
        return cls(doc, data.get("account_id"), dict(data.get("pending") or {}))

    def write(self, writes: Writes, key: Key, fields: dict[str, Any], drop: tuple[str, ...] = ()) -> None:
        """Write `fields` (and remove `drop`) only if the document is still as read: absent, or unchanged. Every
        writer of a customer's document goes through this precondition, which serializes keeping an event and
        linking the customer: one of two racing deliveries fails its commit and decides again."""
        if self.doc is not None and self.doc.exists:
            writes.update(key, fields, remove=drop, if_updated_at=self.doc.update_time)
        else:
            writes.create(key, fields)


def receive_stripe_event(store: Store, payload: bytes, signature: str | None, log: dict[str, Any]) -> dict:
    """Verify, then apply the event exactly once and in order. Answers 200 for everything Stripe should not retry
    (applied, duplicate, stale, unmatched, ignored); a store failure raises Unavailable (503) and a race lost at
    every attempt VersionConflict (409): Stripe retries both."""
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
    event_key = store.stripe_event(event.id)
    customer_key = store.stripe_customer(event.customer) if event.customer else None
    keys = [event_key, *([customer_key] if customer_key else []), *(store.account(a) for a in event.account_hints)]

    def attempt(number: int) -> tuple[tuple[str, str, bool, dict[str, Any]], Writes]:
        at = clock.now()
        docs = store.get_many(keys)
        notes: dict[str, Any] = {}  # for the log line, once this attempt's commit has landed
        if docs[event_key].exists:
            return ("duplicate", "already processed", False, notes), Writes()
        customer = _CustomerDoc.of(docs[customer_key] if customer_key else None)
        account_id, why = _account_for(event, customer.account_id)
        account_doc: Doc | None = None
        if account_id is not None:
            account_key = store.account(account_id)
            account_doc = docs.get(account_key) or store.get(account_key)
            if not account_doc.exists:
                why = f"no account {account_id}"
        writes = Writes()
        more = False
        if account_id is None or account_doc is None or not account_doc.exists:
            # Kept under its customer until a later event links the customer to an account (then applied), unless
            # the customer is linked already (the event names another account, or a deleted one: an operator's).
            keep = customer_key is not None and customer.account_id is None
            writes.create(event_key, _event_record(event, "unmatched", None, at, why))
            writes.create(store.stripe_unmatched(event.id), {
                "event_id": event.id, "type": event.type, "created": event.created, "customer": event.customer,
                "subscription": event.subscription_id, "account_hints": event.account_hints, "reason": why,
                "kept_for_link": keep, **({"payload": json.dumps(event.payload())} if keep else {}),
                "received_at": at, "expires_at": at + EVENT_RECORD_TTL})  # TTL/cleanup
            if keep:
                assert customer_key is not None
                pending = {i: p for i, p in customer.pending.items() if p["expires_at"] > at}  # their records expired
                pending[event.id] = {"type": event.type, "created": event.created, "received_at": at,
                                     "expires_at": at + EVENT_RECORD_TTL}
                customer.write(writes, customer_key, {"account_id": None, "pending": pending,
                                                      "expires_at": at + EVENT_RECORD_TTL})
                why += f"; kept until customer {event.customer} is linked to an account"
            notes["severity"] = "WARNING"
            return ("unmatched", why, more, notes), writes
        before = Account.model_validate(account_doc.data)
        decision = billing.apply(before, event, config().plans, at)
        outcome, detail = decision.outcome, decision.detail
        writes.create(event_key, _event_record(event, outcome, account_id, at, detail))
        account = decision.account
        deleted = decision.deleted_customer is not None
        links = customer_key is not None and customer.account_id is None and (
            decision.link_customer == event.customer or deleted)
        kept: list[str] = []
        if customer_key is not None and customer.pending and (links or customer.account_id == account_id):
            applied = _apply_kept(store, writes, account, account_id, customer.pending, event.id, at)
            account, kept, deleted = applied.account, applied.done, deleted or applied.deleted
            detail += f"; applied {len(kept)} kept event(s) of customer {event.customer}"
            detail += "".join(f" [{d}]" for d in applied.details if _UNKNOWN_PRICE in d)
            notes["kept_events"] = kept
        left = {i: p for i, p in customer.pending.items() if i not in kept} if kept else customer.pending
        more = bool(kept) and bool(left)
        changes = _changes(before, account)
        if changes:
            writes.update(account_doc.key, changes, if_updated_at=account_doc.update_time)
        if customer_key is not None and (links or deleted or kept):
            fields: dict[str, Any] = {"account_id": account_id}
            fields |= {"deleted": True, "deleted_at": at} if deleted else {}
            fields |= {"deleted": False, "linked_at": at} if links and not deleted else {}
            fields |= {"pending": left} if left else {}
            customer.write(writes, customer_key, fields, drop=("expires_at",) + (() if left else ("pending",)))
        notes["account_id"] = account_id
        if _UNKNOWN_PRICE in detail:
            notes["severity"] = "ERROR"  # a customer pays for a price the plans file does not know
        return (outcome, detail, more, notes), writes

    # A lost race (the account or the customer's document changed: a concurrent delivery kept an event, linked the
    # customer or applied one; or a concurrent delivery of this event won) decides again on a fresh read.
    outcome, detail, more, notes = commits.run(
        store, attempt, busy="The account is changing too fast; Stripe will deliver the event again.")
    log.update(notes)
    return outcome, detail, more


def _apply_rest(store: Store, event: StripeEvent, log: dict[str, Any]) -> bool:
    """Apply the next commit's worth of the kept events still listed on the (now linked) customer of `event`;
    whether some are still left. Only for customers with more kept events than one commit holds."""
    assert event.customer is not None
    customer_key = store.stripe_customer(event.customer)

    def attempt(number: int) -> tuple[tuple[bool, _Applied | None], Writes]:
        at = clock.now()
        customer = _CustomerDoc.of(store.get(customer_key))
        if customer.account_id is None or not customer.pending:
            return (False, None), Writes()
        account_doc = store.get(store.account(customer.account_id))
        if not account_doc.exists:
            return (False, None), Writes()
        writes = Writes()
        before = Account.model_validate(account_doc.data)
        applied = _apply_kept(store, writes, before, customer.account_id, customer.pending, event.id, at)
        left = {i: p for i, p in customer.pending.items() if i not in applied.done}
        if changes := _changes(before, applied.account):
            writes.update(account_doc.key, changes, if_updated_at=account_doc.update_time)
        fields: dict[str, Any] = {"pending": left} if left else {}
        fields |= {"deleted": True, "deleted_at": at} if applied.deleted else {}
        customer.write(writes, customer_key, fields, drop=() if left else ("pending",))
        return (bool(left), applied), writes

    more, applied = commits.run(store, attempt,
                                busy="The account is changing too fast; Stripe will deliver the event again.")
    if applied is not None:
        log["kept_events"] = [*log.get("kept_events", []), *applied.done]
        if any(_UNKNOWN_PRICE in d for d in applied.details):
            log["severity"] = "ERROR"
    return more


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
    docs = store.get_many([store.stripe_unmatched(i) for i in order])
    plans, deleted, details = config().plans, False, []
    for event_id in order:
        key = store.stripe_unmatched(event_id)
        doc = docs[key]
        if not doc.exists or not doc.get("payload"):
            continue  # expired (TTL or cleanup, 90 days): nothing left to apply
        kept = StripeEvent.parse(json.loads(doc.get("payload")))
        target, why = _account_for(kept, account_id)
        if target != account_id:  # e.g. a checkout session naming another account: an operator's, as if it came now
            writes.update(key, {"kept_for_link": False, "reason": why}, if_updated_at=None)
            continue
        decision = billing.apply(account, kept, plans, at)
        account = decision.account
        deleted = deleted or decision.deleted_customer is not None
        details.append(decision.detail)
        record = _event_record(kept, decision.outcome, account_id, doc.get("received_at"), decision.detail)
        writes.set(store.stripe_event(event_id), {**record, "applied_at": at, "linked_by": linked_by})
        writes.update(key, {"kept_for_link": False, "account_id": account_id, "outcome": decision.outcome,
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


@dataclass
class _OwnerRead:
    """What an owner's billing call reads: the account and, with an Idempotency-Key, its record, in one batched read
    (read again on a commit retry)."""

    store: Store
    account_key: Key
    idem: IdempotencyRequest | None
    idem_key: Key | None
    at: datetime
    docs: dict[Key, Doc]

    @classmethod
    def read(cls, store: Store, principal: Principal, idem: IdempotencyRequest | None) -> _OwnerRead:
        account_key = store.account(principal.account_id)
        idem_key = store.idempotency(principal.account_id, idem.key_hash) if idem else None
        read = cls(store, account_key, idem, idem_key, clock.now(), {})
        read.again()
        return read

    def again(self) -> None:
        self.docs = self.store.get_many([self.account_key, *([self.idem_key] if self.idem_key else [])])

    def replayed(self) -> Outcome | None:
        """The answer recorded under the same Idempotency-Key, if a request with it finished first."""
        if self.idem is None or self.idem_key is None:
            return None
        return idempotency.replay(self.docs[self.idem_key], self.idem, self.at)

    def record(self, writes: Writes, outcome: Outcome) -> None:
        if self.idem is not None and self.idem_key is not None:
            writes.replace(self.idem_key, idempotency.record(self.idem, outcome, self.at), self.docs[self.idem_key])


def create_checkout_session(
    store: Store, principal: Principal, request: CheckoutSessionRequest, idem: IdempotencyRequest | None
) -> Outcome:
    """A Checkout Session in subscription mode for the plan's price, for the account's Stripe customer (made once:
    the Stripe idempotency key is the account's, so retries and races never make two)."""
    if not principal.is_owner:
        raise Forbidden("Only an OWNER may manage billing.")
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

    read = _OwnerRead.read(store, principal, idem)
    if replayed := read.replayed():
        return replayed
    account = _load_account(read.docs[read.account_key])
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
        if number:
            # The account changed (a workflow was created, or a concurrent checkout linked the same customer), or a
            # same-key request won: read again and write what is still missing.
            read.again()
            if replayed := read.replayed():
                return replayed, Writes()
        account_doc = read.docs[read.account_key]
        current = _load_account(account_doc)
        writes = Writes()
        if current.stripe_customer_id is None:
            writes.update(read.account_key, {"stripe_customer_id": customer}, if_updated_at=account_doc.update_time)
            writes.set(store.stripe_customer(customer), {"account_id": current.id, "deleted": False,
                                                         "linked_at": read.at})
        elif current.stripe_customer_id != customer:
            raise VersionConflict("The account's Stripe customer changed meanwhile; retry.")
        read.record(writes, outcome)
        return outcome, writes

    return commits.run(store, attempt, busy="The account is changing too fast; retry.")


def create_portal_session(store: Store, principal: Principal, idem: IdempotencyRequest | None) -> Outcome:
    """A Billing Portal session for the account's Stripe customer. With an Idempotency-Key, Stripe makes the session
    once (its idempotency key is derived from ours) and a repeat replays the first answer."""
    if not principal.is_owner:
        raise Forbidden("Only an OWNER may manage billing.")
    return_url = config().portal_return_url
    if not return_url:
        raise BillingNotConfigured("QORCH_PORTAL_RETURN_URL must be set.")
    gateway = stripe_gateway.get_gateway()
    read = _OwnerRead.read(store, principal, idem)
    if replayed := read.replayed():
        return replayed
    account = _load_account(read.docs[read.account_key])
    if account.stripe_customer_id is None or not account.subscriptions:
        raise NoBillingAccount("This account has never paid through Stripe: subscribe first "
                               f"({billing.CHECKOUT_HINT}).", checkout=billing.CHECKOUT_HINT)
    url = gateway.create_portal_session(customer=account.stripe_customer_id, return_url=return_url,
                                        idempotency_key=f"qorch-portal-{account.id}-{idem.key_hash}" if idem
                                        else None)
    outcome = Outcome(body=PortalSession(url=url).model_dump(mode="json"))

    def attempt(number: int) -> tuple[Outcome, Writes]:
        writes = Writes()
        if idem is None:
            return outcome, writes  # nothing of ours to write
        if number:  # a same-key request recorded its answer first: that one is the answer
            read.again()
            if replayed := read.replayed():
                return replayed, writes
        read.record(writes, outcome)
        return outcome, writes

    return commits.run(store, attempt, busy="Too many concurrent requests with this Idempotency-Key; retry.")


# ---- account -----------------------------------------------------------------------------------------------------


def get_account(store: Store, principal: Principal) -> dict:
    """The account and this month's usage totals (kept by the workflows' commits), in one batched read."""
    now = clock.now()
    account_key, month_key = store.account(principal.account_id), store.usage_month(principal.account_id,
                                                                                     now.strftime("%Y-%m"))
    docs = store.get_many([account_key, month_key])
    return accounts.account_view(_load_account(docs[account_key]), now, docs[month_key].data)
