"""Configuration, read from the environment once per instance. No secrets have defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

# Google's published X.509 certificates for the keys that sign Firebase ID tokens.
FIREBASE_CERTS_URL = "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"


class UnsafeConfiguration(RuntimeError):
    """A deployed instance configured in a way that would let anyone in: it must not start."""


@dataclass(frozen=True, slots=True)
class Config:
    project: str
    store_timeout_seconds: float
    key_env: str  # the <env> part of new API keys: qo_<env>_...
    max_body_bytes: int = 256 * 1024
    # Billing. Stripe's secrets (STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET) are read by `shared.adapters.stripe` only.
    billing_grace_days: float = 3.0  # past_due stays entitled until current_period_end + this
    checkout_success_url: str | None = None  # where Stripe Checkout sends the customer back to
    checkout_cancel_url: str | None = None
    portal_return_url: str | None = None  # where the Billing Portal's "return" link goes
    # Credentials. API keys (and people's memberships) are cached per instance for this long; 0 turns it off.
    key_cache_seconds: float = 5.0
    firebase_project: str = ""  # the Firebase project whose ID tokens are accepted (their `aud`)
    firebase_certs_url: str = FIREBASE_CERTS_URL
    # Set only against the Firebase Auth emulator, whose tokens are unsigned: never in production.
    auth_emulator_host: str | None = None


def refuse_unsafe_production(environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    """Production (Cloud Functions/Cloud Run set K_SERVICE) never runs with the Auth emulator variable: with it set,
    unsigned tokens would be accepted. `main.py` calls this at import, so such an instance fails to start."""
    if environ.get("K_SERVICE") and environ.get("FIREBASE_AUTH_EMULATOR_HOST"):
        raise UnsafeConfiguration(
            "FIREBASE_AUTH_EMULATOR_HOST is set on a deployed instance (K_SERVICE is set): ID tokens would not be "
            "verified. Remove the variable from the deployment.")


@cache
def config() -> Config:
    refuse_unsafe_production()
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT") or "qorch-local"
    return Config(
        project=project,
        store_timeout_seconds=float(os.environ.get("QORCH_STORE_TIMEOUT_SECONDS", "10")),
        key_env=os.environ.get("QORCH_KEY_ENV", "live" if os.environ.get("K_SERVICE") else "dev"),
        billing_grace_days=float(os.environ.get("QORCH_BILLING_GRACE_DAYS", "3")),
        checkout_success_url=os.environ.get("QORCH_CHECKOUT_SUCCESS_URL") or None,
        checkout_cancel_url=os.environ.get("QORCH_CHECKOUT_CANCEL_URL") or None,
        portal_return_url=os.environ.get("QORCH_PORTAL_RETURN_URL") or None,
        key_cache_seconds=max(0.0, float(os.environ.get("QORCH_KEY_CACHE_SECONDS") or "5")),
        firebase_project=os.environ.get("QORCH_FIREBASE_PROJECT") or project,
        firebase_certs_url=os.environ.get("QORCH_FIREBASE_CERTS_URL") or FIREBASE_CERTS_URL,
        auth_emulator_host=os.environ.get("FIREBASE_AUTH_EMULATOR_HOST") or None,
    )
