"""The one configuration: every setting the product reads from the environment, in one pydantic-settings model,
validated once per instance at start (`main.py` and `make run` call `config()` first). A bad value stops the
instance with a message that names the variable, instead of failing customer requests later. The data files that
ship with the functions are loaded here too, so a bad one stops the instance the same way: the plans file
(`shared/domain/plans.json`, with each sold plan's Stripe price id from the variable the file names), the role
playbooks (`shared/domain/playbooks/*.md`, checked against the state table) and the model price table
(`shared/domain/prices.json`). The domain only parses what it is given; `.gcloudignore` keeps these files in the
deployed source (a test checks it).

To add a setting: one field below, named by its variable (`alias`), typed (the type is the validation), with a
default unless it is a secret (a secret is `SecretStr | None` and has no default: unset means the feature that
needs it answers 503), and a row in the README's configuration tables (tests/test_config.py checks that every
variable is listed there). Read it as `config().<field>`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.domain import plans as plans_domain
from shared.domain import playbooks as playbooks_domain
from shared.domain import pricing

DOMAIN_DIR = Path(__file__).resolve().parent.parent / "domain"
PLANS_FILE = DOMAIN_DIR / "plans.json"
PLAYBOOKS_DIR = DOMAIN_DIR / "playbooks"
PRICES_FILE = DOMAIN_DIR / "prices.json"
MAX_BODY_BYTES = 256 * 1024  # a fixed limit of the API (documented with it), not a deployment choice

Url = Annotated[str, Field(pattern=r"^https?://\S+$")]
# Google's published X.509 certificates for the keys that sign Firebase ID tokens.
FIREBASE_CERTS_URL = "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"


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
            raise ValueError(f"{item!r} is not an origin (scheme://host[:port], no path)")
        scheme = parts.scheme.lower()
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        default = 443 if scheme == "https" else 80
        origins.append(f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else ""))
    return tuple(dict.fromkeys(origins))


class ConfigError(ValueError):
    """The environment or the plans file is wrong: the instance must not start. The message names every bad variable
    (never a secret's value)."""


class Settings(BaseSettings):
    """One field per environment variable (its `alias`)."""

    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True,
                                      str_strip_whitespace=True)

    # ---- the store and API keys ----
    project: str = Field("qorch-local", min_length=1,
                         validation_alias=AliasChoices("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"))
    store_timeout_seconds: float = Field(10.0, gt=0, le=300, alias="QORCH_STORE_TIMEOUT_SECONDS")
    key_env_override: str | None = Field(None, pattern=r"^[a-z0-9]{1,16}$", alias="QORCH_KEY_ENV")
    cloud_service: str | None = Field(None, alias="K_SERVICE")  # set by Cloud Functions (gen2) / Cloud Run
    # How long an instance trusts an API key or a person's memberships it read (shared/services/auth.py); 0: off.
    # Bounded: a revoked key keeps working on other instances for up to this long.
    key_cache_seconds: float = Field(5.0, ge=0, le=3600, alias="QORCH_KEY_CACHE_SECONDS")

    # ---- people (Firebase Authentication ID tokens, shared/adapters/firebase_auth.py) ----
    firebase_project_override: str | None = Field(None, pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$",
                                                  alias="QORCH_FIREBASE_PROJECT")
    firebase_certs_url: Url = Field(FIREBASE_CERTS_URL, alias="QORCH_FIREBASE_CERTS_URL")
    # Set only against the Firebase Auth emulator, whose tokens are unsigned: refused on a deployed instance.
    auth_emulator_host: str | None = Field(None, pattern=r"^[A-Za-z0-9.\[\]:-]+:[0-9]{1,5}$",
                                           alias="FIREBASE_AUTH_EMULATOR_HOST")

    # ---- billing (Stripe) ----
    stripe_api_key: SecretStr | None = Field(None, alias="STRIPE_API_KEY")
    stripe_webhook_secret: SecretStr | None = Field(None, alias="STRIPE_WEBHOOK_SECRET")
    stripe_api_base: Url | None = Field(None, alias="STRIPE_API_BASE")
    stripe_max_network_retries: int = Field(2, ge=0, le=10, alias="STRIPE_MAX_NETWORK_RETRIES")
    billing_grace_days: float = Field(3.0, ge=0, le=365, alias="QORCH_BILLING_GRACE_DAYS")
    checkout_success_url: Url | None = Field(None, alias="QORCH_CHECKOUT_SUCCESS_URL")
    checkout_cancel_url: Url | None = Field(None, alias="QORCH_CHECKOUT_CANCEL_URL")
    portal_return_url: Url | None = Field(None, alias="QORCH_PORTAL_RETURN_URL")

    # ---- the object store (artifacts) ----
    s3_bucket: str | None = Field(None, alias="QORCH_S3_BUCKET")
    s3_region: str = Field("us-east-1", alias="QORCH_S3_REGION")
    s3_endpoint_url: Url | None = Field(None, alias="QORCH_S3_ENDPOINT_URL")
    s3_access_key_id: SecretStr | None = Field(None, alias="QORCH_S3_ACCESS_KEY_ID")
    s3_secret_access_key: SecretStr | None = Field(None, alias="QORCH_S3_SECRET_ACCESS_KEY")
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field("auto", alias="QORCH_S3_ADDRESSING_STYLE")
    s3_sign_checksum: bool = Field(True, alias="QORCH_S3_SIGN_CHECKSUM")

    # ---- browsers (CORS, shared/http/cors.py) ----
    # Comma-separated exact origins, kept normalised the way browsers send `Origin`.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field((), alias="QORCH_CORS_ORIGINS")

    _plans: plans_domain.Catalog | None = PrivateAttr(None)
    _playbooks: playbooks_domain.Library | None = PrivateAttr(None)
    _prices: pricing.PriceTable | None = PrivateAttr(None)

    @field_validator("*", mode="before")
    @classmethod
    def _trimmed(cls, value: Any, info: ValidationInfo) -> Any:
        # Secrets mounted from files often end in a newline. An optional variable set to blanks counts as unset.
        if not isinstance(value, str):
            return value
        value = value.strip()
        optional = info.field_name is not None and cls.model_fields[info.field_name].default is None
        return None if optional and not value else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        return parse_origins(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _both_credentials_or_neither(self) -> Settings:
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("set both QORCH_S3_ACCESS_KEY_ID and QORCH_S3_SECRET_ACCESS_KEY, or neither (then "
                             "boto3's own credential chain is used)")
        return self

    @model_validator(mode="after")
    def _no_auth_emulator_when_deployed(self) -> Settings:
        # With the emulator variable, ID tokens are not verified (the emulator's are unsigned): anyone could sign in
        # as anyone. Cloud Functions / Cloud Run set K_SERVICE, so a deployed instance refuses to start with it.
        if self.cloud_service and self.auth_emulator_host:
            raise ValueError("FIREBASE_AUTH_EMULATOR_HOST is set on a deployed instance (K_SERVICE is set): ID "
                             "tokens would not be verified. Remove the variable from the deployment")
        return self

    @property
    def firebase_project(self) -> str:
        """The Firebase project whose ID tokens are accepted (their `aud`): QORCH_FIREBASE_PROJECT, else the
        Firestore project."""
        return self.firebase_project_override or self.project

    @property
    def key_env(self) -> str:
        """The <env> part of new API keys: `live` on Cloud Functions, `dev` elsewhere, unless QORCH_KEY_ENV says."""
        return self.key_env_override or ("live" if self.cloud_service else "dev")

    @property
    def max_body_bytes(self) -> int:
        return MAX_BODY_BYTES

    @property
    def plans(self) -> plans_domain.Catalog:
        """The plans file, loaded with the configuration (`load()`); its price ids from this environment."""
        assert self._plans is not None, "made by load()"
        return self._plans

    @property
    def playbooks(self) -> playbooks_domain.Library:
        """Every role's playbook, loaded with the configuration (`load()`)."""
        assert self._playbooks is not None, "made by load()"
        return self._playbooks

    @property
    def prices(self) -> pricing.PriceTable:
        """The model price table, loaded with the configuration (`load()`)."""
        assert self._prices is not None, "made by load()"
        return self._prices


def _variables_of(field_name: str) -> list[str]:
    """The environment variables a field reads, the preferred one first."""
    info = Settings.model_fields[field_name]
    alias = info.validation_alias or info.alias or field_name
    return [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else [str(alias)]


_SECRETS = {v for name, info in Settings.model_fields.items() if "SecretStr" in str(info.annotation)
            for v in _variables_of(name)}


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        variable = ".".join(str(p) for p in err["loc"]) or "configuration"
        shown = "" if variable in _SECRETS or not err["loc"] else f" (got {err.get('input')!r})"
        lines.append(f"  {variable}: {err['msg']}{shown}")
    return "\n".join(lines)


def load_plans(path: Path = PLANS_FILE, environ: Mapping[str, str] | None = None) -> plans_domain.Catalog:
    """Read and check a plans file, with each sold plan's price id from `environ` (default: the environment)."""
    try:
        return plans_domain.parse(path.read_bytes(), os.environ if environ is None else environ)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"the plans file {path} is refused: {exc}") from exc


def read_playbooks(directory: Path = PLAYBOOKS_DIR) -> dict[str, str]:
    """File name → text of every `*.md` in the playbooks directory (UTF-8; a file that is not is an error)."""
    return {path.name: path.read_bytes().decode("utf-8") for path in sorted(directory.glob("*.md"))}


def load_playbooks(directory: Path = PLAYBOOKS_DIR) -> playbooks_domain.Library:
    """Read and check the role playbooks: every role has one, covering its states and the transitions out of them."""
    try:
        return playbooks_domain.load_library(read_playbooks(directory))
    except (OSError, ValueError) as exc:  # PlaybookError and UnicodeDecodeError are ValueErrors
        raise ConfigError(f"the playbooks in {directory} are refused: {exc}") from exc


def load_prices(path: Path = PRICES_FILE) -> pricing.PriceTable:
    try:
        return pricing.parse_prices(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:  # pydantic's ValidationError and JSONDecodeError are ValueErrors
        raise ConfigError(f"the price table {path} is refused: {exc}") from exc


def load(plans_file: Path = PLANS_FILE, playbooks_dir: Path = PLAYBOOKS_DIR,
         prices_file: Path = PRICES_FILE) -> Settings:
    """Validate the environment and load the data files (plans, playbooks, prices). Raises ConfigError, naming each
    bad variable, or the file refused and why."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError(f"qorch cannot start: its configuration is invalid:\n{_explain(exc)}") from None
    try:
        settings._plans = load_plans(plans_file)
        settings._playbooks = load_playbooks(playbooks_dir)
        settings._prices = load_prices(prices_file)
    except ConfigError as exc:
        raise ConfigError(f"qorch cannot start: {exc}") from None
    return settings


@cache
def config() -> Settings:
    """This instance's configuration, validated on first call (at start: main.py). Tests and tools that change the
    environment call `config.cache_clear()`."""
    return load()


def variables() -> list[str]:
    """Every environment variable the configuration reads (the price variables come from the plans file)."""
    return sorted({v for name in Settings.model_fields for v in _variables_of(name)}
                  | set(config().plans.price_variables()))
