"""The one Stripe adapter: webhook signature checks and the three API calls the product makes (customer, Checkout
Session, Billing Portal session). `stripe` is imported on first use, and the API client is created once per
instance, so functions that never talk to Stripe never load it.

Configuration (`shared.runtime.config`; the secrets from Secret Manager in production): STRIPE_API_KEY,
STRIPE_WEBHOOK_SECRET, and optionally STRIPE_API_BASE (another API host: the tests' local server, or stripe-mock) and
STRIPE_MAX_NETWORK_RETRIES (default 2; the library retries connection errors, 409/429/5xx with the same idempotency
key).

Stripe's failures become the product's problems: unreachable or 5xx/429 → 503 `unavailable` (retry), a refused
request → 502 `billing_provider_error`, a rejected API key → 503 `billing_not_configured`. (An idempotency clash,
e.g. two retries in flight at once, is a 503 too: the retry gets the first request's answer.)
"""

from __future__ import annotations

import json
from typing import Any

from shared.domain.errors import (
    BillingNotConfigured,
    BillingProviderError,
    InvalidSignature,
    MalformedJson,
    Unavailable,
)
from shared.runtime.config import config
from shared.runtime.instance import PerInstance

SIGNATURE_TOLERANCE_SECONDS = 300
TIMEOUT_SECONDS = 10.0


def verify_event(payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event in `payload` if `signature` (the Stripe-Signature header) signs these exact bytes with the webhook
    secret and is at most 5 minutes old; else InvalidSignature."""
    configured = config().stripe_webhook_secret
    secret = configured.get_secret_value() if configured else ""
    if not secret:
        raise BillingNotConfigured("STRIPE_WEBHOOK_SECRET is not set, so no event can be verified.")
    if not signature:
        raise InvalidSignature("The Stripe-Signature header is missing.")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSignature("The body is not UTF-8, so Stripe did not send it.") from exc
    import stripe

    try:
        stripe.Webhook.construct_event(text, signature, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as exc:
        raise InvalidSignature(f"The Stripe-Signature header does not verify: {exc.user_message or exc}") from exc
    except ValueError as exc:  # signed, but not JSON
        raise MalformedJson(f"The event could not be parsed as JSON: {exc}") from exc
    return json.loads(text)


class Gateway:
    def __init__(self, api_key: str, *, api_base: str | None = None, max_network_retries: int = 2) -> None:
        import stripe

        self._stripe = stripe
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS),
        )

    def _call(self, what: str, fn: Any, params: dict[str, Any], idempotency_key: str | None) -> Any:
        stripe = self._stripe
        options = {"idempotency_key": idempotency_key} if idempotency_key else None
        try:
            return fn(params=params, options=options)
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            raise BillingNotConfigured(f"Stripe refused this deployment's API key ({what}).") from exc
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError, stripe.IdempotencyError) as exc:
            raise Unavailable(f"Stripe did not answer ({what}); try again shortly.") from exc
        except stripe.StripeError as exc:
            raise BillingProviderError(f"Stripe refused to {what}: {exc.user_message or exc}") from exc

    def create_customer(self, *, account_id: str, name: str, idempotency_key: str) -> str:
        customer = self._call("create a customer", self.client.v1.customers.create,
                              {"name": name, "metadata": {"account_id": account_id}}, idempotency_key)
        return customer.id

    def create_checkout_session(self, *, customer: str, price: str, account_id: str, plan: str, success_url: str,
                                cancel_url: str, idempotency_key: str | None) -> tuple[str, str]:
        session = self._call("create a Checkout Session", self.client.v1.checkout.sessions.create, {
            "mode": "subscription",
            "customer": customer,
            "line_items": [{"price": price, "quantity": 1}],
            "client_reference_id": account_id,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": {"account_id": account_id, "plan": plan},
            "subscription_data": {"metadata": {"account_id": account_id, "plan": plan}},
        }, idempotency_key)
        return session.id, session.url

    def create_portal_session(self, *, customer: str, return_url: str, idempotency_key: str | None = None) -> str:
        session = self._call("create a Billing Portal session", self.client.v1.billing_portal.sessions.create,
                             {"customer": customer, "return_url": return_url}, idempotency_key)
        return session.url


def _configured() -> Gateway:
    settings = config()
    if settings.stripe_api_key is None:
        raise BillingNotConfigured("STRIPE_API_KEY is not set.")
    return Gateway(settings.stripe_api_key.get_secret_value(), api_base=settings.stripe_api_base,
                   max_network_retries=settings.stripe_max_network_retries)


_gateway: PerInstance[Gateway] = PerInstance(_configured)


def get_gateway() -> Gateway:
    """This instance's Stripe client, created on first use."""
    return _gateway.get()


def reset_gateway() -> None:
    """Forget the client (tests that change the configuration)."""
    _gateway.set(None)
