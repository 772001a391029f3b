"""What the billing tests share: the local Stripe API server and configuration fixtures, signed webhook delivery
(signed with the stripe library's own `generate_signature_header`), and builders of Stripe event payloads in the
current API shape (and the pre-2025-03-31 shape, which older webhook endpoints still receive)."""

from __future__ import annotations

import http.client
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import stripe

from shared.adapters.firestore import Store
from shared.adapters.stripe import reset_gateway
from shared.domain import billing, plans
from shared.domain.billing import StripeEvent
from shared.domain.models import Account
from shared.domain.state_machine import Role
from shared.runtime.config import config
from shared.services import accounts
from tests.helpers import Api, Response, Tenant
from tests.live import LiveServer
from tests.stripe_fake import FakeStripe

SECRET = "whsec_test_0123456789abcdefghijklmnopqrstuv"
API_KEY = "sk_test_qorch_fake_key"
PRICE_STARTER = "price_test_starter"
PRICE_PRO = "price_test_pro"
SUCCESS_URL = "https://app.example.com/billing/done?session_id={CHECKOUT_SESSION_ID}"
CANCEL_URL = "https://app.example.com/billing/cancelled"
RETURN_URL = "https://app.example.com/settings/billing"
DAY = 86_400

_ids = itertools.count(1)


def uid(prefix: str) -> str:
    return f"{prefix}_{int(time.time() * 1000) % 10**9}{next(_ids)}"


# ---- fixtures ----------------------------------------------------------------------------------------------------


_fake: FakeStripe | None = None


def fake_stripe() -> FakeStripe:
    """The process's local Stripe API server, started on first use (a daemon thread: it ends with the process)."""
    global _fake
    if _fake is None:
        _fake = FakeStripe().__enter__()
    return _fake


def _reload() -> None:
    config.cache_clear()  # the configuration (and the plans' price ids) is validated again on next use
    reset_gateway()


@pytest.fixture
def billing_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    """Stripe configured as in production, its API being the local server (no retries: a failure is visible).
    Test modules use it as `billing_env = billing_support.billing_env` (an import would trip ruff's F811)."""
    stripe_api = fake_stripe()
    stripe_api.reset()
    for name, value in {
        "STRIPE_API_KEY": API_KEY, "STRIPE_WEBHOOK_SECRET": SECRET, "STRIPE_API_BASE": stripe_api.url,
        "STRIPE_MAX_NETWORK_RETRIES": "0", "QORCH_STRIPE_PRICE_STARTER": PRICE_STARTER,
        "QORCH_STRIPE_PRICE_PRO": PRICE_PRO, "QORCH_CHECKOUT_SUCCESS_URL": SUCCESS_URL,
        "QORCH_CHECKOUT_CANCEL_URL": CANCEL_URL, "QORCH_PORTAL_RETURN_URL": RETURN_URL,
        "QORCH_BILLING_GRACE_DAYS": "3",
    }.items():
        monkeypatch.setenv(name, value)
    _reload()
    yield stripe_api
    _reload()  # before monkeypatch restores the environment; the next reader re-reads it


def unconfigure(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    for name in names:
        monkeypatch.delenv(name, raising=False)
    _reload()


def customer_tenant(api: Api, name: str = "Acme", *, plan: str = "dev", entitled: bool = False,
                    agent: bool = False) -> Tenant:
    """An account (not entitled unless said) with an owner key, and a DEVELOPER key if asked."""
    account = accounts.create_account(api.store, name, plan=plan, entitled=entitled)
    owner, _ = accounts.create_key(api.store, account.id, [Role.OWNER], name="owner")
    agents = {Role.DEVELOPER: accounts.create_key(api.store, account.id, [Role.DEVELOPER])[0]} if agent else {}
    return Tenant(account.id, owner, agents)


def stored_account(api: Api, account_id: str) -> dict:
    return api.store.get(api.store.account(account_id)).data


# ---- webhook delivery --------------------------------------------------------------------------------------------


def sign(payload: str, secret: str = SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


def deliver(api: Api, event: dict, *, secret: str = SECRET, timestamp: int | None = None,
            signature: str | None = None) -> Response:
    payload = json.dumps(event)
    header = signature if signature is not None else sign(payload, secret, timestamp)
    return api.request("POST", "/v1/stripe/webhook", data=payload,
                       headers={"Stripe-Signature": header, "Content-Type": "application/json"})


def deliver_live(server: LiveServer, event: dict, *, timeout: float = 15.0) -> Response:
    """`event` signed and POSTed over a real socket to the router `server` serves, as Stripe sends it."""
    payload = json.dumps(event).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("POST", "/v1/stripe/webhook", body=payload,
                     headers={"Stripe-Signature": sign(payload.decode()), "Content-Type": "application/json"})
        r = conn.getresponse()
        return Response(r.status, dict(r.getheaders()), json.loads(r.read().decode()))
    finally:
        conn.close()


def receive_elsewhere(store: Store, event: dict) -> str:
    """`event` received by another instance of the webhook, with its own Firestore client (`store`): the service
    called the way the entry point calls it. Its outcome."""
    from shared.services import billing as billing_service

    payload = json.dumps(event)
    return billing_service.receive_stripe_event(store, payload.encode(), sign(payload), {})["outcome"]


# ---- Stripe payloads ---------------------------------------------------------------------------------------------


def event(event_type: str, obj: dict, created: int, *, event_id: str | None = None,
          previous: dict | None = None) -> dict:
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {"id": event_id or uid("evt"), "object": "event", "api_version": "2026-10-28.endive", "created": created,
            "livemode": False, "type": event_type, "data": data, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}}


def subscription(sub_id: str, customer: str, status: str, price: str, period_end: int, *,
                 account_id: str | None = None, cancel_at_period_end: bool = False, legacy: bool = False) -> dict:
    item: dict[str, Any] = {"id": f"si_{sub_id}", "object": "subscription_item", "quantity": 1,
                            "price": {"id": price, "object": "price", "recurring": {"interval": "month"}}}
    obj: dict[str, Any] = {"id": sub_id, "object": "subscription", "customer": customer, "status": status,
                           "cancel_at_period_end": cancel_at_period_end,
                           "metadata": {"account_id": account_id} if account_id else {},
                           "items": {"object": "list", "data": [item]}}
    if legacy:  # before API 2025-03-31 the period was on the subscription
        obj["current_period_end"] = period_end
        obj["current_period_start"] = period_end - 30 * DAY
    else:
        item["current_period_end"] = period_end
        item["current_period_start"] = period_end - 30 * DAY
    return obj


def invoice(customer: str, sub_id: str, billing_reason: str, price: str, period_end: int, *,
            paid: bool, account_id: str | None = None, legacy: bool = False) -> dict:
    metadata = {"account_id": account_id} if account_id else {}
    obj: dict[str, Any] = {"id": uid("in"), "object": "invoice", "customer": customer,
                           "billing_reason": billing_reason, "status": "paid" if paid else "open"}
    period = {"start": period_end - 30 * DAY, "end": period_end}
    if legacy:
        obj["subscription"] = sub_id
        obj["subscription_details"] = {"metadata": metadata}
        obj["lines"] = {"data": [{"price": {"id": price, "object": "price"}, "period": period}]}
    else:
        obj["parent"] = {"type": "subscription_details",
                         "subscription_details": {"subscription": sub_id, "metadata": metadata}}
        obj["lines"] = {"data": [{"pricing": {"type": "price_details",
                                              "price_details": {"price": price, "product": "prod_x"}},
                                  "period": period}]}
    return obj


def checkout_session(account_id: str | None, customer: str, sub_id: str, plan: str = "pro", *,
                     metadata: bool = True) -> dict:
    """A completed subscription-mode session. `metadata=False`: as a Payment Link or Pricing Table makes it, which
    only passes `client_reference_id`."""
    return {"id": uid("cs_test"), "object": "checkout.session", "mode": "subscription", "status": "complete",
            "payment_status": "paid", "client_reference_id": account_id, "customer": customer,
            "subscription": sub_id,
            "metadata": {"account_id": account_id, "plan": plan} if account_id and metadata else {}}


def now_s() -> int:
    return int(time.time())


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def life(account_id: str, customer: str, sub_id: str, t0: int, *, price: str = PRICE_PRO,
         tag: str = "") -> list[dict]:
    """A realistic life of one subscription, in the order Stripe produces it: checkout completed; created
    incomplete; first invoice paid and updated active (same second); a renewal fails (invoice failed, updated
    past_due); the invoice is paid two days later (invoice paid, updated active); then the subscription is
    deleted. Events of one second are a realistic tie."""
    p1, p2 = t0 + 30 * DAY, t0 + 60 * DAY
    a = account_id
    tag = tag or uid("life")
    return [
        event("checkout.session.completed", checkout_session(a, customer, sub_id), t0, event_id=f"evt_{tag}_1"),
        event("customer.subscription.created", subscription(sub_id, customer, "incomplete", price, p1,
                                                             account_id=a), t0, event_id=f"evt_{tag}_2"),
        event("invoice.paid", invoice(customer, sub_id, "subscription_create", price, p1, paid=True,
                                      account_id=a), t0 + 1, event_id=f"evt_{tag}_3"),
        event("customer.subscription.updated", subscription(sub_id, customer, "active", price, p1, account_id=a),
              t0 + 1, previous={"status": "incomplete"}, event_id=f"evt_{tag}_4"),
        event("invoice.payment_failed", invoice(customer, sub_id, "subscription_cycle", price, p2, paid=False,
                                                account_id=a), p1, event_id=f"evt_{tag}_5"),
        event("customer.subscription.updated", subscription(sub_id, customer, "past_due", price, p2,
                                                            account_id=a),
              p1, previous={"status": "active", "current_period_end": p1}, event_id=f"evt_{tag}_6"),
        event("invoice.paid", invoice(customer, sub_id, "subscription_cycle", price, p2, paid=True, account_id=a),
              p1 + 2 * DAY, event_id=f"evt_{tag}_7"),
        event("customer.subscription.updated", subscription(sub_id, customer, "active", price, p2, account_id=a),
              p1 + 2 * DAY, previous={"status": "past_due"}, event_id=f"evt_{tag}_8"),
        event("customer.subscription.deleted", subscription(sub_id, customer, "canceled", price, p2, account_id=a),
              p1 + 8 * DAY, event_id=f"evt_{tag}_9"),
    ]


def fold(account: Account, events: list[dict], catalog: plans.Catalog, now: datetime) -> tuple[Account, Counter]:
    """The domain's answer for a delivery, deduplicated by event id the way the service does it: the account after
    it, and how many times each event was applied."""
    seen: set[str] = set()
    applied: Counter = Counter()
    for raw in events:
        ev = StripeEvent.parse(raw)
        if ev.id in seen:
            continue
        seen.add(ev.id)
        decision = billing.apply(account, ev, catalog, now)
        if decision.outcome == "applied":
            applied[ev.id] += 1
        account = decision.account
    return account, applied


def comparable(account: Account) -> dict:
    """What billing keeps on an account, without the bookkeeping times."""
    dump = account.model_dump(mode="json", include={"plan", "stripe_customer_id", "former_stripe_customers",
                                                    "former_stripe_customers_deleted", "subscriptions"})
    for sub in dump["subscriptions"].values():
        sub.pop("updated_at")
    return dump
