"""The plans file and what each function loads (cold start: checked in a fresh interpreter's `sys.modules`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from shared.domain import plans
from shared.http.routes import ROUTES

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


def test_the_plans_file_is_checked_when_the_module_loads():
    code = "import shared.domain.plans as p; print(p.catalog.cache_info().currsize)"
    done = subprocess.run([sys.executable, "-c", code],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "1", done.stderr


def test_the_repository_plans():
    catalog = plans.load(environ={"QORCH_STRIPE_PRICE_PRO": "price_p", "QORCH_STRIPE_PRICE_STARTER": "price_s"})
    dev = catalog.get("dev")
    assert not dev.for_sale and dev.price_id is None
    assert dev.max_artifact_bytes == 100 * 1024 * 1024 and dev.stale_after_days == 30
    assert {p.name for p in catalog.for_sale()} == {"starter", "pro"}
    assert catalog.for_price("price_p").name == "pro" and catalog.for_price("price_x") is None
    assert catalog.get("pro").max_active_workflows > catalog.get("starter").max_active_workflows
    unpriced = plans.load(environ={})
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
        plans.load(_write(tmp_path, body), environ={})


def test_two_plans_at_one_price_are_refused(tmp_path):
    path = _write(tmp_path, {"plans": {"dev": {"price_env": None, **LIMITS}, "a": {"price_env": "A", **LIMITS},
                                       "b": {"price_env": "B", **LIMITS}}})
    assert plans.load(path, environ={"A": "price_1", "B": "price_2"}).get("a").stale_after_days == 30
    with pytest.raises(ValueError, match="same Stripe price"):
        plans.load(path, environ={"A": "price_1", "B": "price_1"})


def test_the_admin_command_only_accepts_defined_plans(api, tenant):
    from shared.services import accounts

    with pytest.raises(ValueError, match="platinum"):
        accounts.create_account(api.store, "X", plan="platinum")
    with pytest.raises(ValueError, match="platinum"):
        accounts.set_account(api.store, tenant.account_id, plan="platinum")
    assert accounts.set_account(api.store, tenant.account_id, plan="pro").plan == "pro"
