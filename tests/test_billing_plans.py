"""The plans file, when it is read, and what each function loads (cold start: checked in a fresh interpreter's
`sys.modules`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from shared.domain import plans
from shared.http.routes import ROUTES
from shared.runtime.config import PLANS_FILE, ConfigError, load, load_plans

ROOT = Path(__file__).resolve().parent.parent
BILLING_FUNCTIONS = {"stripe_webhook", "create_checkout_session", "create_portal_session", "get_account"}


def modules_after_importing(*modules: str) -> set[str]:
    code = "import json, sys\n" + "".join(f"import {m}\n" for m in modules) + "print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_webhook_loads_neither_boto3_nor_the_workflow_functions():
    loaded = modules_after_importing("functions.stripe_webhook")
    assert not {m for m in loaded if m.split(".")[0] in ("boto3", "botocore")}
    assert not {m for m in loaded if m.startswith("functions.") and m != "functions.stripe_webhook"}
    assert "shared.services.workflows" not in loaded
    assert "stripe" not in loaded  # not even stripe until an event arrives (imported on first verification)


def test_the_workflow_functions_do_not_load_stripe():
    others = sorted(r.function for r in ROUTES if r.function not in BILLING_FUNCTIONS)
    assert "create_workflow" in others and "transition_workflow" in others
    loaded = modules_after_importing(*(f"functions.{f}" for f in others))
    assert not {m for m in loaded if m.split(".")[0] == "stripe"}
    assert "shared.adapters.stripe" not in loaded and "shared.services.billing" not in loaded


# In a fresh interpreter: while the whole domain is imported, no code of the domain opens a file or reads the
# environment (the libraries it uses may: pydantic looks up its plugin settings).
NO_IO_ON_IMPORT = r"""
import builtins, importlib, io, json, os, pathlib, pkgutil, sys
modules = sorted(m.name for m in pkgutil.iter_modules(["shared/domain"]))
touched = []

def by_the_domain(depth=2):
    return "/shared/domain/" in sys._getframe(depth).f_code.co_filename

def watch(owner, name):
    real = getattr(owner, name)
    def watched(*args, **kwargs):
        if by_the_domain():
            touched.append(f"{name}{args[:1]}")
        return real(*args, **kwargs)
    setattr(owner, name, watched)

class Environ(type(os.environ)):
    def __getitem__(self, name):
        if by_the_domain() or by_the_domain(3):  # os.environ[...] or os.environ.get(...)
            touched.append(f"environ[{name!r}]")
        return super().__getitem__(name)

for owner, name in [(builtins, "open"), (io, "open"), (os, "getenv"), (pathlib.Path, "read_bytes"),
                    (pathlib.Path, "read_text"), (pathlib.Path, "open")]:
    watch(owner, name)
os.environ.__class__ = Environ
for name in modules:
    importlib.import_module(f"shared.domain.{name}")
print(json.dumps({"modules": modules, "touched": touched}))
"""


def test_importing_the_domain_reads_no_file_and_no_environment():
    done = subprocess.run([sys.executable, "-c", NO_IO_ON_IMPORT], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "plans" in out["modules"] and "billing" in out["modules"]
    assert out["touched"] == []


def test_the_plans_file_is_checked_when_the_configuration_loads(tmp_path):
    """At start (main.py validates the configuration): a broken plans file stops the instance, naming the file."""
    assert load().plans.get("dev").max_active_workflows > 0
    broken = _write(tmp_path, {"plans": {"pro": {"price_env": "P", **LIMITS}}})
    with pytest.raises(ConfigError, match=r"plans\.json"):
        load(broken)
    with pytest.raises(ConfigError, match=r"plans\.json"):
        load(tmp_path / "missing" / "plans.json")


def test_the_repository_plans():
    catalog = load_plans(environ={"QORCH_STRIPE_PRICE_PRO": "price_p", "QORCH_STRIPE_PRICE_STARTER": "price_s"})
    dev = catalog.get("dev")
    assert not dev.for_sale and dev.price_id is None
    assert dev.max_artifact_bytes == 100 * 1024 * 1024 and dev.stale_after_days == 30
    assert {p.name for p in catalog.for_sale()} == {"starter", "pro"}
    assert catalog.for_price("price_p").name == "pro" and catalog.for_price("price_x") is None
    assert catalog.get("pro").max_active_workflows > catalog.get("starter").max_active_workflows
    unpriced = load_plans(environ={})
    assert unpriced.get("pro").for_sale and unpriced.get("pro").price_id is None
    with pytest.raises(plans.UnknownPlan):
        catalog.get("platinum")


def _write(tmp_path: Path, body: dict) -> Path:
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(body))
    return path


LIMITS = {"max_active_workflows": 3, "retention_days": 30, "max_artifact_bytes": 10}


@pytest.mark.parametrize(("name", "body"), [
    ("no dev plan", {"plans": {"pro": {"price_env": "P", **LIMITS}}}),
    ("dev is sold", {"plans": {"dev": {"price_env": "P", **LIMITS}}}),
    ("one price variable for two plans", {"plans": {"dev": {"price_env": None, **LIMITS},
                                                    "a": {"price_env": "P", **LIMITS},
                                                    "b": {"price_env": "P", **LIMITS}}}),
    ("unknown field", {"plans": {"dev": {"price_env": None, "max_seats": 3, **LIMITS}}}),
    ("missing limit", {"plans": {"dev": {"price_env": None, "max_active_workflows": 3, "retention_days": 3}}}),
    ("zero limit", {"plans": {"dev": {"price_env": None, **LIMITS, "max_active_workflows": 0}}}),
    ("text for a number", {"plans": {"dev": {"price_env": None, **LIMITS, "retention_days": "30"}}}),
    ("bad plan name", {"plans": {"dev": {"price_env": None, **LIMITS}, "Pro Plan": {"price_env": "P", **LIMITS}}}),
])
def test_a_bad_plans_file_is_refused(tmp_path, name, body):
    with pytest.raises(pydantic.ValidationError):
        plans.parse(_write(tmp_path, body).read_bytes(), environ={})


def test_two_plans_at_one_price_are_refused(tmp_path):
    path = _write(tmp_path, {"plans": {"dev": {"price_env": None, **LIMITS}, "a": {"price_env": "A", **LIMITS},
                                       "b": {"price_env": "B", **LIMITS}}})
    assert plans.parse(path.read_bytes(), environ={"A": "price_1", "B": "price_2"}).get("a").stale_after_days == 30
    with pytest.raises(ValueError, match="same Stripe price"):
        plans.parse(path.read_bytes(), environ={"A": "price_1", "B": "price_1"})
    with pytest.raises(ConfigError, match="same Stripe price"):
        load_plans(path, environ={"A": "price_1", "B": "price_1"})
    assert PLANS_FILE.name == "plans.json"


def test_the_admin_command_only_accepts_defined_plans(api, tenant):
    from shared.services import accounts

    with pytest.raises(ValueError, match="platinum"):
        accounts.create_account(api.store, "X", plan="platinum")
    with pytest.raises(ValueError, match="platinum"):
        accounts.set_account(api.store, tenant.account_id, plan="platinum")
    assert accounts.set_account(api.store, tenant.account_id, plan="pro").plan == "pro"
