"""Configuration, read from the environment once per instance. No secrets have defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit


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
    # Browser origins allowed to call the API (CORS, shared/http/cors.py): exact, normalised origins.
    cors_origins: tuple[str, ...] = ()


def parse_origins(raw: str) -> tuple[str, ...]:
    """QORCH_CORS_ORIGINS: comma-separated exact origins, `scheme://host[:port]` (no path, no wildcard), normalised
    the way browsers send `Origin` (lower case, no default port)."""
    origins: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname or port == -1 or \
                parts.path or parts.query or parts.fragment or parts.username is not None or "*" in item:
            raise ValueError(f"QORCH_CORS_ORIGINS: {item!r} is not an origin (scheme://host[:port], no path)")
        scheme = parts.scheme.lower()
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        default = 443 if scheme == "https" else 80
        origins.append(f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else ""))
    return tuple(dict.fromkeys(origins))


@cache
def config() -> Config:
    return Config(
        project=os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT") or "qorch-local",
        store_timeout_seconds=float(os.environ.get("QORCH_STORE_TIMEOUT_SECONDS", "10")),
        key_env=os.environ.get("QORCH_KEY_ENV", "live" if os.environ.get("K_SERVICE") else "dev"),
        billing_grace_days=float(os.environ.get("QORCH_BILLING_GRACE_DAYS", "3")),
        checkout_success_url=os.environ.get("QORCH_CHECKOUT_SUCCESS_URL") or None,
        checkout_cancel_url=os.environ.get("QORCH_CHECKOUT_CANCEL_URL") or None,
        portal_return_url=os.environ.get("QORCH_PORTAL_RETURN_URL") or None,
        cors_origins=parse_origins(os.environ.get("QORCH_CORS_ORIGINS", "")),
    )
