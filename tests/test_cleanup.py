"""The scheduled cleanup against the real emulator: each task, the budgets and resumption, two overlapping runs, races
with the API, plan changes, and that nothing outside a task is touched. Ages are made by moving a document's
`updated_at` (or `expires_at`) into the past; assertions are on counts and invariants, never on times."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.firestore import Store, firestore_client
from shared.services import accounts, cleanup
from tests.helpers import assert_event_log, raw, ref, snapshot_all, stored_events, stored_workflow, together

DAY = timedelta(days=1)


def _ago(days: float) -> datetime:
    return datetime.now(UTC) - days * DAY


def idle(store: Store, account_id: str, workflow_id: str, days: float) -> None:
    """Make the workflow's last change `days` ago."""
    ref(store, store.workflow(account_id, workflow_id)).update({"updated_at": _ago(days)})


def drive(api, tenant, wf: dict, *states: str) -> None:
    for to in states:
        api.move(tenant, wf, to, key=tenant.owner if to == "CANCELLED" else None)


def changed(before: dict[str, dict], after: dict[str, dict]) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def belongs_to(path: str, account_id: str, workflow_id: str, docs: dict[str, dict]) -> bool:
    """The workflow's own documents: itself, everything under it, its hand-offs (kept per account), its account."""
    wf_path = f"accounts/{account_id}/workflows/{workflow_id}"
    return (path == wf_path or path.startswith(wf_path + "/") or path == f"accounts/{account_id}"
            or (path.startswith(f"accounts/{account_id}/handoffs/") and docs.get(path, {}).get("workflow_id")
                == workflow_id))


def _cancelled_events(store: Store, account_id: str, workflow_id: str) -> list[Any]:
    return [e for e in stored_events(store, account_id, workflow_id) if e.to_state == "CANCELLED"]


# ---- 1. expired leases ------------------------------------------------------------------------------------------


def test_claims_whose_lease_expired_go_back_to_pending_with_their_attempts(api, tenant, clock):
    from shared.domain.state_machine import Role
    from tests.agents import Agent

    store, acct = api.store, tenant.account_id
    expired, held = api.create(tenant), api.create(tenant)
    agent = Agent(api, tenant.agents[Role.Q_ASSISTANT], "agent-1")
    first = agent.claim(expect=200, lease_seconds=30).body["handoff"]
    second = agent.claim(expect=200, lease_seconds=3600).body["handoff"]
    assert {first["workflow_id"], second["workflow_id"]} == {expired["id"], held["id"]}
    before = snapshot_all(store)

    clock.advance(120)  # the product's clock: the cleanup reads it like every service
    report = cleanup.run(store, tasks=["leases"])

    assert (report.tasks["leases"].done, report.tasks["leases"].more) == (1, False)
    released = store.get(store.handoff(acct, first["id"])).data
    assert (released["status"], released["attempts"], released["claimed_by"], released["lease_expires_at"]) == (
        "PENDING", 1, None, None)
    assert stored_workflow(store, acct, first["workflow_id"]).current_handoff.status == "PENDING"
    assert store.get(store.handoff(acct, second["id"])).get("status") == "CLAIMED"
    touched = changed(before, snapshot_all(store))
    assert touched == {store.handoff(acct, first["id"]).path, store.workflow(acct, first["workflow_id"]).path}
    again = cleanup.run(store, tasks=["leases"])
    assert again.tasks["leases"].done == 0


# ---- 2. stale workflows ----------------------------------------------------------------------------------------


def test_stale_active_workflows_are_cancelled_by_the_system_through_the_validator(api, tenant):
    stale = api.create(tenant)
    drive(api, tenant, stale, "PLANNING", "DESIGN")
    fresh = api.create(tenant)
    failed = api.create(tenant)
    drive(api, tenant, failed, "PLANNING", "FAILED")
    done = api.create(tenant)
    drive(api, tenant, done, "PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING", "VERIFICATION", "REVIEW",
          "DEPLOYMENT", "COMPLETED")
    store, acct = api.store, tenant.account_id
    idle(store, acct, stale["id"], 31)
    idle(store, acct, fresh["id"], 29)
    idle(store, acct, failed["id"], 400)
    idle(store, acct, done["id"], 10)
    active_before = accounts.get_account(store, acct).active_workflows
    before = snapshot_all(store)

    report = cleanup.run(store, tasks=["stale"])

    assert (report.tasks["stale"].done, report.tasks["stale"].skipped, report.tasks["stale"].more) == (1, 0, False)
    wf = assert_event_log(store, acct, stale["id"])
    assert wf.state == "CANCELLED" and wf.final and wf.version == 4
    last = stored_events(store, acct, stale["id"])[-1]
    assert (last.type, last.from_state, last.to_state, last.actor) == (
        "TRANSITIONED", "DESIGN", "CANCELLED", "system:cleanup")
    assert "no change for 31 days" in last.reason and "30 days" in last.reason
    assert wf.current_handoff is None  # its open hand-off was cancelled in the same commit, as by any cancel
    handoffs = [d for p, d in snapshot_all(store).items() if p.startswith(f"accounts/{acct}/handoffs/")
                and d["workflow_id"] == stale["id"]]
    assert handoffs and all(h["status"] in ("COMPLETED", "CANCELLED") for h in handoffs)
    assert [h["closed_seq"] for h in handoffs if h["status"] == "CANCELLED"] == [4]
    assert accounts.get_account(store, acct).active_workflows == active_before - 1
    after = snapshot_all(store)
    touched = changed(before, after)
    assert touched and all(belongs_to(p, acct, stale["id"], {**before, **after}) for p in touched), touched
    for other in (fresh, failed, done):
        assert_event_log(store, acct, other["id"])


def test_a_workflow_that_moved_after_the_query_found_it_is_not_cancelled(api, tenant):
    """The query's snapshot is the first read of the same precondition commit: a change in between makes it
    re-read, and on the fresh read the workflow is no longer stale."""
    wf = api.create(tenant)
    idle(api.store, tenant.account_id, wf["id"], 45)
    (seen,) = api.store.query(Store.every_account("workflows"),
                              filters=[("plan", "==", "dev"), ("state", "in", cleanup.ACTIVE_STATES),
                                       ("updated_at", "<", _ago(30))], order=[("updated_at", "ASCENDING")])
    api.move(tenant, wf, "PLANNING")  # an agent works on it meanwhile
    assert not cleanup.cancel_stale(api.store, seen, cutoff=_ago(30), reason="stale")
    assert assert_event_log(api.store, tenant.account_id, wf["id"]).state == "PLANNING"


def test_the_accounts_current_plan_decides_and_a_plan_change_retags(api, tenant):
    store, acct = api.store, tenant.account_id
    wf = api.create(tenant)
    assert store.get(store.workflow(acct, wf["id"])).get("plan") == "dev"
    idle(store, acct, wf["id"], 40)  # stale on dev (30 days), not on pro (60)
    accounts.set_account(store, acct, plan="pro")

    first = cleanup.run(store, tasks=["stale"])
    assert (first.tasks["stale"].done, first.tasks["stale"].retagged) == (0, 1)
    assert stored_workflow(store, acct, wf["id"]).state == "DISCOVERY"
    assert store.get(store.workflow(acct, wf["id"])).get("plan") == "pro"
    # the open hand-off's copy of the workflow followed it (the one write path keeps every copy)
    handoff = store.get(store.handoff(acct, wf["current_handoff"]["id"]))
    assert json.loads(handoff.get("workflow"))["plan"] == "pro"

    again = cleanup.run(store, tasks=["stale"])  # found by no plan's query now: nothing read but the queries
    assert (again.tasks["stale"].done, again.tasks["stale"].retagged, again.tasks["stale"].documents_written) == (
        0, 0, 0)

    idle(store, acct, wf["id"], 61)
    assert cleanup.run(store, tasks=["stale"]).tasks["stale"].done == 1
    assert assert_event_log(store, acct, wf["id"]).state == "CANCELLED"


# ---- 3. retention ----------------------------------------------------------------------------------------------


def test_final_workflows_past_retention_are_deleted_with_everything_under_them(api, tenant):
    store, acct = api.store, tenant.account_id
    old = api.create(tenant)
    drive(api, tenant, old, "PLANNING", "DESIGN", "CANCELLED")
    young = api.create(tenant)
    drive(api, tenant, young, "CANCELLED")
    failed = api.create(tenant)
    drive(api, tenant, failed, "PLANNING", "FAILED")
    active = api.create(tenant)
    for wf, days in ((old, 31), (young, 29), (failed, 400), (active, 400)):
        idle(store, acct, wf["id"], days)
    before = snapshot_all(store)
    assert any(p.startswith(f"accounts/{acct}/workflows/{old['id']}/events/") for p in before)

    report = cleanup.run(store, tasks=["retention"])

    assert (report.tasks["retention"].done, report.tasks["retention"].more) == (1, False)
    after = snapshot_all(store)
    gone = set(before) - set(after)
    assert gone and all(belongs_to(p, acct, old["id"], before) for p in gone)
    assert not any(old["id"] in p for p in after if p.startswith(f"accounts/{acct}/workflows/"))
    assert not any(d.get("workflow_id") == old["id"] for d in after.values()), "its hand-offs went too"
    assert changed(before, after) == gone, "nothing else changed"
    assert api.get(f"/v1/workflows/{old['id']}", tenant.owner).status == 404
    for wf in (young, failed, active):
        assert_event_log(store, acct, wf["id"])


def test_retention_deletes_artifact_records_and_their_stored_objects(api, tenant, s3):
    from shared.domain.state_machine import Role
    from tests.agents import Agent, get_status

    store, acct = api.store, tenant.account_id
    wf, keep = api.create(tenant), api.create(tenant)
    agent = Agent(api, tenant.agents[Role.Q_ASSISTANT], "agent-1")
    artifact = agent.upload(wf["id"], "plan.md", b"# the plan")
    kept = agent.upload(keep["id"], "plan.md", b"# another plan")
    url = api.get(f"/v1/workflows/{wf['id']}/artifacts/{artifact['id']}", tenant.owner).body["download"]["url"]
    kept_url = api.get(f"/v1/workflows/{keep['id']}/artifacts/{kept['id']}", tenant.owner).body["download"]["url"]
    assert get_status(url) == 200
    drive(api, tenant, wf, "CANCELLED")
    idle(store, acct, wf["id"], 31)

    assert cleanup.run(store, tasks=["retention"]).tasks["retention"].done == 1

    assert get_status(url) in (403, 404), "the stored object is gone"
    assert not store.get(store.artifact(acct, wf["id"], artifact["id"])).exists
    assert get_status(kept_url) == 200 and store.get(store.artifact(acct, keep["id"], kept["id"])).exists


def test_uploads_never_completed_are_deleted_with_their_bytes_a_day_after_their_url_expired(api, tenant, s3):
    import hashlib
    from datetime import UTC, datetime

    from shared.adapters.objectstore import get_object_store
    from shared.domain.artifact import object_key
    from shared.domain.state_machine import Role
    from tests.agents import Agent, put

    store, acct = api.store, tenant.account_id
    wf = api.create(tenant)
    key = tenant.agents[Role.Q_ASSISTANT]
    data = b"half a plan"

    def declare() -> dict:
        r = api.post(f"/v1/workflows/{wf['id']}/artifacts", {"name": "plan.md", "size_bytes": len(data),
                                                             "sha256": hashlib.sha256(data).hexdigest()}, key)
        assert r.status == 201, r.body
        return r.body

    abandoned, recent = declare(), declare()
    put(abandoned["upload"], data)  # uploaded, never completed
    done = Agent(api, key, "agent-1").upload(wf["id"], "done.md", b"# done")
    record = ref(store, store.artifact(acct, wf["id"], abandoned["artifact"]["id"]))
    record.update({"upload_expires_at": datetime.now(UTC) - timedelta(days=2)})
    objects = get_object_store()
    abandoned_key = object_key(acct, wf["id"], abandoned["artifact"]["id"])
    assert objects.stat(abandoned_key, expected_size=len(data)) is not None

    report = cleanup.run(store, tasks=["records"])

    assert report.tasks["records"].done == 1
    assert not record.get().exists
    assert objects.stat(abandoned_key, expected_size=len(data)) is None
    for kept in (recent["artifact"], done):
        assert store.get(store.artifact(acct, wf["id"], kept["id"])).exists
    assert objects.stat(object_key(acct, wf["id"], done["id"]), expected_size=len(b"# done")) is not None


# ---- 4. expired records ----------------------------------------------------------------------------------------


def _idempotent_create(api, tenant, key: str) -> dict:
    r = api.post("/v1/workflows", {"title": "Shop"}, tenant.owner, headers={"Idempotency-Key": key})
    assert r.status == 201, r.body
    return r.body


def _record(store: Store, account_id: str, key: str) -> Any:
    import hashlib

    return ref(store, store.idempotency(account_id, hashlib.sha256(key.encode()).hexdigest()))


def test_expired_idempotency_records_are_deleted_and_live_ones_kept(api, tenant):
    store, acct = api.store, tenant.account_id
    _idempotent_create(api, tenant, "old")
    kept = _idempotent_create(api, tenant, "new")
    _record(store, acct, "old").update({"expires_at": _ago(0.01)})
    before = snapshot_all(store)

    report = cleanup.run(store, tasks=["records"])

    assert (report.tasks["records"].done, report.tasks["records"].skipped) == (1, 0)
    assert changed(before, snapshot_all(store)) == {_record(store, acct, "old").path}
    replay = api.post("/v1/workflows", {"title": "Shop"}, tenant.owner, headers={"Idempotency-Key": "new"})
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.body["id"] == kept["id"]


def test_expired_stripe_event_records_are_deleted(store):
    ledger = raw(store, store.stripe_events())
    ledger.document("evt_old").set({"type": "invoice.paid", "expires_at": _ago(1)})
    ledger.document("evt_new").set({"type": "invoice.paid", "expires_at": _ago(-1)})
    report = cleanup.run(store, tasks=["records"])
    assert report.tasks["records"].done == 1
    assert [d.id for d in ledger.stream()] == ["evt_new"]


def test_unmatched_stripe_events_are_kept_for_an_operator_until_they_expire(store):
    unmatched = raw(store, store.stripe_unmatched_events())
    unmatched.document("evt_old").set({"type": "invoice.paid", "reason": "no account", "expires_at": _ago(1)})
    unmatched.document("evt_new").set({"type": "invoice.paid", "reason": "no account", "expires_at": _ago(-1)})
    report = cleanup.run(store, tasks=["records"])
    assert report.tasks["records"].done == 1
    assert [d.id for d in unmatched.stream()] == ["evt_new"]


def test_a_record_rewritten_after_it_was_read_is_kept(api, tenant):
    """A reused Idempotency-Key refreshes its expired record; cleanup's delete is conditional on what it read."""
    store, acct = api.store, tenant.account_id
    _idempotent_create(api, tenant, "k")
    record = _record(store, acct, "k")
    record.update({"expires_at": _ago(1)})
    seen = store.get(store.idempotency(acct, record.id))
    record.update({"expires_at": _ago(-1)})  # refreshed meanwhile
    assert cleanup.delete_records(store, [seen]) == 0
    assert record.get().exists


# ---- budgets, resumption, overlap --------------------------------------------------------------------------------


def _stale_fleet(api, tenant, n: int, days: float = 31) -> list[dict]:
    fleet = [api.create(tenant) for _ in range(n)]
    for wf in fleet:
        idle(api.store, tenant.account_id, wf["id"], days)
    return fleet


def test_a_document_budget_bounds_each_run_and_the_next_runs_finish_the_work(api, tenant):
    store, acct = api.store, tenant.account_id
    fleet = _stale_fleet(api, tenant, 9)
    budget = cleanup.Budget(max_documents=60)
    runs = []
    for _ in range(10):
        start = store.documents["read"] + store.documents["written"]
        report = cleanup.run(store, tasks=["stale"], budget=budget)
        used = store.documents["read"] + store.documents["written"] - start
        assert used <= budget.max_documents, used
        runs.append(report)
        if not report.tasks["stale"].more:
            break
    assert len(runs) > 1 and runs[0].tasks["stale"].more and runs[0].stopped_by == "documents"
    assert 0 < runs[0].tasks["stale"].done < 9
    assert sum(r.tasks["stale"].done for r in runs) == 9
    for wf in fleet:
        assert assert_event_log(store, acct, wf["id"]).state == "CANCELLED"
        assert len(_cancelled_events(store, acct, wf["id"])) == 1


def test_a_time_budget_stops_a_run_between_items_and_the_next_run_resumes(api, tenant):
    store, acct = api.store, tenant.account_id
    fleet = _stale_fleet(api, tenant, 6)
    ticks = itertools.count()
    first = cleanup.run(store, tasks=["stale"], budget=cleanup.Budget(max_seconds=12),
                        clock=lambda: float(next(ticks)))  # a clock that moves one second each time it is read
    assert first.stopped_by == "time" and first.tasks["stale"].more
    assert first.tasks["stale"].done < 6
    second = cleanup.run(store, tasks=["stale"])
    assert first.tasks["stale"].done + second.tasks["stale"].done == 6 and not second.tasks["stale"].more
    for wf in fleet:
        assert assert_event_log(store, acct, wf["id"]).state == "CANCELLED"


def test_two_overlapping_runs_never_do_anything_twice_and_never_fail(api, tenant, project_id):
    store, acct = api.store, tenant.account_id
    stale = _stale_fleet(api, tenant, 8)
    expired = [api.create(tenant) for _ in range(4)]
    for wf in expired:
        drive(api, tenant, wf, "CANCELLED")
        idle(store, acct, wf["id"], 31)
    for i in range(5):
        _idempotent_create(api, tenant, f"key-{i}")
        _record(store, acct, f"key-{i}").update({"expires_at": _ago(1)})
    stores = [Store(firestore_client(project_id), timeout_seconds=3) for _ in range(2)]  # one per run
    reports = together(2, lambda i: cleanup.run(stores[i]), timeout=120)
    assert len(reports) == 2
    total = {task: sum(r.tasks[task].done for r in reports) for task in cleanup.TASKS}
    assert total["stale"] == 8 and total["retention"] == 4 and total["records"] == 5
    for wf in stale:
        assert assert_event_log(store, acct, wf["id"]).state == "CANCELLED"
        assert len(_cancelled_events(store, acct, wf["id"])) == 1
    for wf in expired:
        assert not store.get(store.workflow(acct, wf["id"])).exists


def test_one_run_logs_one_line_with_counts_per_task_and_what_is_left(api, tenant):
    _stale_fleet(api, tenant, 2)
    line = cleanup.run(api.store).log_line()
    assert set(line["tasks"]) == set(cleanup.TASKS)
    assert line["tasks"]["stale"]["done"] == 2 and line["left_for_next_run"] == [] and line["severity"] == "INFO"
    assert line["documents_read"] >= 2 and line["documents_written"] >= 6


def test_reads_follow_the_work_not_the_data(api, tenant):
    """Many workflows, few of them due: the run reads the due ones (and one empty page per other query)."""
    store = api.store
    fleet = [api.create(tenant) for _ in range(12)]
    for wf in fleet[:4]:
        idle(store, tenant.account_id, wf["id"], 31)
    report = cleanup.run(store, tasks=["stale"])
    stale = report.tasks["stale"]
    assert stale.done == 4
    assert stale.documents_read <= 1.2 * stale.documents_written, stale.as_dict()
    assert stale.documents_read <= 4 + 1 + len(cleanup.Policy.from_catalog().plans), stale.as_dict()


def test_the_local_command_runs_the_same_service(store, capsys):
    from tools.cleanup import main

    assert main(["--tasks", "records,stale"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert '"function": "cleanup"' in out and '"records"' in out and '"retention"' not in out
