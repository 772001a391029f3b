"""Configuration, read from the environment once per instance. No secrets have defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True, slots=True)
class Config:
    project: str
    store_timeout_seconds: float
    key_env: str  # the <env> part of new API keys: qo_<env>_...
    max_body_bytes: int = 256 * 1024


@cache
def config() -> Config:
    return Config(
        project=os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT") or "qorch-local",
        store_timeout_seconds=float(os.environ.get("QORCH_STORE_TIMEOUT_SECONDS", "10")),
        key_env=os.environ.get("QORCH_KEY_ENV", "live" if os.environ.get("K_SERVICE") else "dev"),
    )
