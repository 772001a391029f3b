"""The one configuration: validated once per instance, at start; a bad value stops the instance (and `make run`)
with a message that names the variable; secrets have no defaults and are never echoed; the README lists every
variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.runtime import config as config_module
from shared.runtime.config import ConfigError, Settings, config, load, variables

ROOT = Path(__file__).resolve().parent.parent
BAD = {"QORCH_STORE_TIMEOUT_SECONDS": "ten"}


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without any configuration a developer may have exported, plus `extra`."""
    names = set(variables())
    return {**{k: v for k, v in os.environ.items() if k not in names}, **extra}


@pytest.fixture
def fresh(monkeypatch):
    """An environment without configuration (other tests' settings, e.g. the local S3's, removed), read again as the
    test sets it, and again after it."""
    for name in variables():
        monkeypatch.delenv(name, raising=False)
    config.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    config.cache_clear()


def test_a_bad_value_stops_the_instance_at_start_naming_the_variable():
    done = subprocess.run([sys.executable, "-c", "import main"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=_env(**BAD))
    assert done.returncode != 0
    assert "QORCH_STORE_TIMEOUT_SECONDS" in done.stderr and "valid number" in done.stderr, done.stderr
    fine = subprocess.run([sys.executable, "-c", "import main"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=_env())
    assert fine.returncode == 0, fine.stderr


def test_make_run_prints_the_message_and_starts_nothing():
    done = subprocess.run(["make", "--no-print-directory", "run"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=_env(**BAD, PORT="1"))
    assert done.returncode != 0
    assert "qorch cannot start" in done.stderr and "QORCH_STORE_TIMEOUT_SECONDS" in done.stderr, done.stderr
    assert "Starting the Firestore emulator" not in done.stdout


@pytest.mark.parametrize(("variable", "value"), [
    ("QORCH_STORE_TIMEOUT_SECONDS", "0"), ("QORCH_STORE_TIMEOUT_SECONDS", "ten"), ("QORCH_KEY_ENV", "Live!"),
    ("QORCH_BILLING_GRACE_DAYS", "-1"), ("STRIPE_MAX_NETWORK_RETRIES", "two"), ("STRIPE_API_BASE", "localhost"),
    ("QORCH_CHECKOUT_SUCCESS_URL", "/done"), ("QORCH_S3_ADDRESSING_STYLE", "sideways"),
    ("QORCH_S3_SIGN_CHECKSUM", "maybe"), ("QORCH_S3_ENDPOINT_URL", "minio:9000"),
    ("QORCH_KEY_CACHE_SECONDS", "-1"), ("QORCH_KEY_CACHE_SECONDS", "soon"), ("QORCH_KEY_CACHE_SECONDS", "3601"),
    ("QORCH_FIREBASE_PROJECT", "My Project"), ("QORCH_FIREBASE_CERTS_URL", "certs.example.com"),
    ("FIREBASE_AUTH_EMULATOR_HOST", "localhost"),
])
def test_each_bad_value_is_named(fresh, variable, value):
    fresh.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load()
    assert re.search(rf"^  {variable}: ", str(refused.value), re.M), str(refused.value)


def test_every_bad_variable_is_named_at_once_and_a_secret_is_never_echoed(fresh):
    fresh.setenv("QORCH_STORE_TIMEOUT_SECONDS", "ten")
    fresh.setenv("QORCH_S3_ADDRESSING_STYLE", "sideways")
    with pytest.raises(ConfigError) as refused:
        load()
    assert "QORCH_STORE_TIMEOUT_SECONDS" in str(refused.value) and "QORCH_S3_ADDRESSING_STYLE" in str(refused.value)
    fresh.delenv("QORCH_STORE_TIMEOUT_SECONDS")
    fresh.delenv("QORCH_S3_ADDRESSING_STYLE")
    fresh.setenv("QORCH_S3_ACCESS_KEY_ID", "AKIA-very-secret-id")  # half the credentials
    with pytest.raises(ConfigError) as refused:
        load()
    assert "QORCH_S3_SECRET_ACCESS_KEY" in str(refused.value)
    assert "very-secret" not in str(refused.value)


def test_defaults_blanks_and_secrets(fresh):
    fresh.setenv("QORCH_PORTAL_RETURN_URL", "   ")  # blank: unset
    fresh.setenv("STRIPE_API_KEY", " sk_test_x\n")  # a secret mounted from a file, trailing newline
    settings = load()
    assert settings.store_timeout_seconds == 10 and settings.key_env == "dev" and settings.project == "qorch-local"
    assert settings.portal_return_url is None and settings.s3_addressing_style == "auto" and settings.s3_sign_checksum
    assert settings.key_cache_seconds == 5 and settings.firebase_project == "qorch-local"
    assert settings.firebase_certs_url.startswith("https://www.googleapis.com/") and settings.auth_emulator_host is None
    assert settings.stripe_api_key is not None and settings.stripe_api_key.get_secret_value() == "sk_test_x"
    assert "sk_test_x" not in repr(settings)
    fresh.setenv("K_SERVICE", "transition-workflow")  # on Cloud Functions new keys are live ones
    assert load().key_env == "live"
    secrets = [name for name, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)]
    assert set(secrets) == {"stripe_api_key", "stripe_webhook_secret", "s3_access_key_id", "s3_secret_access_key"}
    assert all(Settings.model_fields[name].default is None for name in secrets), "secrets have no defaults"


def test_the_configuration_is_validated_once_per_instance(fresh):
    first = config()
    fresh.setenv("QORCH_STORE_TIMEOUT_SECONDS", "ten")  # a change after start is not seen (nor can it break us)
    assert config() is first


def test_the_readme_lists_every_variable():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in variables() if f"`{name}`" not in readme]
    assert missing == [], missing
    assert config_module.PLANS_FILE.is_file()
