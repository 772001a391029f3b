"""Cleanup cost benchmark: 10,000 workflows in 100 accounts, 1% of them stale; one cleanup run, with documents read
and written counted at the store adapter (as Firestore bills them). Goal: documents read ≤ 1.2 x documents changed.

    python -m bench.cleanup        (or `make bench`, which runs every bench module's `run()`)

Uses the emulator named by FIRESTORE_EMULATOR_HOST, else starts one for the run.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

WORKFLOWS = 10_000
ACCOUNTS = 100
STALE_FRACTION = 0.01
GOAL = 1.2


def _seed(client: Any, now: datetime, rng: random.Random) -> set[str]:
    """Workflows as the product writes them (document + its CREATED event), straight into the store in batches."""
    from shared.domain.models import CreateWorkflowRequest
    from shared.domain.state_machine import State, role_of
    from shared.domain.workflow import create
    from shared.services.workflows import _event_doc

    accounts = [f"acct_bench{i:03d}" for i in range(ACCOUNTS)]
    stale = set(rng.sample(range(WORKFLOWS), int(WORKFLOWS * STALE_FRACTION)))
    batch, pending = client.batch(), 0
    for account_id in accounts:
        batch.set(client.collection("accounts").document(account_id),
                  {"id": account_id, "name": account_id, "plan": "dev", "entitled": True, "created_at": now,
                   "active_workflows": WORKFLOWS // ACCOUNTS})
    stale_ids: set[str] = set()
    active = [s for s in State if s not in (State.COMPLETED, State.CANCELLED, State.FAILED)]
    for i in range(WORKFLOWS):
        account_id = accounts[i % ACCOUNTS]
        at = now - (timedelta(days=40 + rng.random() * 20) if i in stale else timedelta(hours=rng.random() * 600))
        workflow, event = create(CreateWorkflowRequest(title=f"Workflow {i}"), account_id=account_id,
                                 actor="key_bench", now=at, plan="dev")
        state = State.DISCOVERY if i in stale else rng.choice(active)
        workflow = workflow.model_copy(update={"state": state, "role": role_of(state)})
        wf_ref = client.collection("accounts").document(account_id).collection("workflows").document(workflow.id)
        batch.set(wf_ref, workflow.to_document())
        batch.set(wf_ref.collection("events").document(f"{1:010d}"), _event_doc(event))
        pending += 2
        if i in stale:
            stale_ids.add(workflow.id)
        if pending >= 480:
            batch.commit()
            batch, pending = client.batch(), 0
    batch.commit()
    return stale_ids


def run() -> dict[str, Any]:
    from tools.emulator import ensure_emulator

    with ensure_emulator():
        return _run()


def _run() -> dict[str, Any]:
    from google.cloud import firestore

    from shared.adapters.firestore import Store
    from shared.services import cleanup

    client = firestore.Client(project=f"bench-cleanup-{uuid.uuid4().hex[:8]}")
    now = datetime.now(UTC)
    started = time.perf_counter()
    stale = _seed(client, now, random.Random(5))
    seeded = time.perf_counter() - started

    store = Store(client)
    started = time.perf_counter()
    report = cleanup.run(store, now=now)
    wall = time.perf_counter() - started
    reads, written = store.documents["read"], store.documents["written"]
    cancelled = report.tasks["stale"].done
    touched_accounts = {wf.reference.parent.parent.id for wf in client.collection_group("workflows").where(
        filter=firestore.FieldFilter("state", "==", "CANCELLED")).stream()}
    changed_docs = cancelled * 2 + len(touched_accounts)  # workflows + their new events + account counters

    store_again = Store(client)
    again = cleanup.run(store_again, now=now)
    result = {
        "workflows": WORKFLOWS, "stale": len(stale), "cancelled": cancelled,
        "documents_read": reads, "documents_written": written, "distinct_documents_changed": changed_docs,
        "read_per_written": round(reads / written, 3), "read_per_changed": round(reads / changed_docs, 3),
        "read_per_workflow_cancelled": round(reads / cancelled, 3),
        "rpcs": dict(store.rpcs), "wall_seconds": round(wall, 2), "seed_seconds": round(seeded, 1),
        "left_for_next_run": report.left_for_next_run,
        "idle_run_documents_read": store_again.documents["read"], "idle_run_written": store_again.documents["written"],
        "idle_run_cancelled": again.tasks["stale"].done,
    }
    ok = cancelled == len(stale) and reads <= GOAL * changed_docs
    print("cleanup benchmark: 10,000 workflows in 100 accounts, 1% stale; one run")
    print(f"  cancelled {cancelled} of {len(stale)} stale; work left for the next run: "
          f"{', '.join(report.left_for_next_run) or 'none'}")
    print(f"  documents read {reads}, written {written} ({changed_docs} distinct documents changed: "
          f"{cancelled} workflows, {cancelled} events, {len(touched_accounts)} account counters)")
    print(f"  read / changed = {result['read_per_changed']} (goal ≤ {GOAL}: {'met' if ok else 'NOT MET'}); "
          f"read / written = {result['read_per_written']}; read per workflow cancelled = "
          f"{result['read_per_workflow_cancelled']}")
    print(f"  RPCs {dict(store.rpcs)}; wall {wall:.2f} s (emulator); a second run with nothing to do read "
          f"{result['idle_run_documents_read']} documents and wrote {result['idle_run_written']}")
    return result


if __name__ == "__main__":
    run()
