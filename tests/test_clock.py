"""One clock: every service reads `shared.runtime.clock`, so the `clock` fixture moves time for the whole product
(billing's grace period, the cleanup's cutoffs, leases, accounts), and no other product code reads the wall clock."""

from __future__ import annotations

import ast
from pathlib import Path

from shared.services import accounts, cleanup
from tests import billing_support
from tests.billing_support import customer_tenant, deliver, event, subscription, uid
from tests.helpers import assert_event_log

billing_env = billing_support.billing_env
ROOT = Path(__file__).resolve().parent.parent
DAY = 86_400
WALL_CLOCK_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
                    ("time", "time"), ("time", "time_ns")}


def wall_clock_reads(source: str) -> list[int]:
    """Lines that read the wall clock directly (`datetime.now()`, `time.time()`, ...)."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and (node.func.value.id, node.func.attr) in WALL_CLOCK_CALLS]


def test_only_the_clock_module_reads_the_wall_clock():
    assert wall_clock_reads("from datetime import datetime\nx = datetime.now()\n") == [2]  # the check can fail
    files = [*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").glob("*.py"), ROOT / "main.py"]
    found = {str(p.relative_to(ROOT)): lines for p in files if (lines := wall_clock_reads(p.read_text()))}
    assert found == {"shared/runtime/clock.py": [10]}


def test_billing_follows_the_clock_past_the_grace_period(api, billing_env, clock):
    tenant = customer_tenant(api)
    t = billing_support.now_s()
    sub = subscription(uid("sub"), uid("cus"), "past_due", billing_support.PRICE_PRO, t + DAY,
                       account_id=tenant.account_id)
    assert deliver(api, event("customer.subscription.updated", sub, t)).body["outcome"] == "applied"
    entitlement = api.get("/v1/account", tenant.owner).body["entitlement"]
    assert entitlement["entitled"] and entitlement["status"] == "past_due" and entitlement["grace_until"]

    clock.advance(5 * DAY)  # past current_period_end + QORCH_BILLING_GRACE_DAYS (3)
    assert not api.get("/v1/account", tenant.owner).body["entitlement"]["entitled"]
    r = api.post("/v1/workflows", {"title": "x"}, tenant.owner)
    assert (r.status, r.code) == (402, "payment_required")


def test_the_cleanup_follows_the_clock(api, tenant, clock):
    wf = api.create(tenant)
    assert cleanup.run(api.store, tasks=["stale"]).tasks["stale"].done == 0
    clock.advance(31 * DAY)  # the dev plan cancels an active workflow after 30 days without a change
    assert cleanup.run(api.store, tasks=["stale"]).tasks["stale"].done == 1
    cancelled = assert_event_log(api.store, tenant.account_id, wf["id"])
    assert cancelled.state == "CANCELLED" and (cancelled.updated_at - cancelled.created_at).days == 31


def test_accounts_and_keys_follow_the_clock(store, clock):
    before = accounts.create_account(store, "Then")
    clock.advance(10 * DAY)
    after = accounts.create_account(store, "Now")
    assert (after.created_at - before.created_at).days == 10
    _, key = accounts.create_key(store, after.id, accounts.validate_roles(["OWNER"]))
    assert (key.created_at - before.created_at).days == 10
