"""Cleanup cost benchmark: 10,000 workflows in 100 accounts (each with its open hand-off, as the product writes it),
1% of them stale; cleanup runs with the default budgets until the work is done, with documents read and written
counted at the store adapter (as Firestore bills them). Goal: documents read ≤ 1.2 x documents changed.

    python -m bench.cleanup        (or `make bench`, which runs every bench module's `run()`)

Uses the emulator named by FIRESTORE_EMULATOR_HOST, else starts one for the run.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import scaled

WORKFLOWS = scaled(10_000, 500)
ACCOUNTS = scaled(100, 5)
STALE_FRACTION = 0.01
GOAL = 1.2
MAX_RUNS = 5


def _seed(client: Any, now: datetime, rng: random.Random) -> set[str]:
    """Workflows as the product writes them: each one's create staged by the product's one write path (workflow,
    CREATED event, the PENDING hand-off for the first role with its copy of the workflow), written straight into the
    store in batches; each account's `active_workflows` set once at the end instead of once per create."""
    from shared.adapters.firestore import Doc, Store, Writes
    from shared.domain import handoff as handoff_domain
    from shared.domain.models import CreateWorkflowRequest
    from shared.domain.workflow import create
    from shared.services.changes import Change, stage

    store = Store(client)  # for its paths only: the seed is written on the client, not through its RPC counters
    accounts = [f"acct_bench{i:03d}" for i in range(ACCOUNTS)]
    stale = set(rng.sample(range(WORKFLOWS), int(WORKFLOWS * STALE_FRACTION)))
    batch, pending = client.batch(), 0
    for account_id in accounts:
        batch.set(client.document(store.account(account_id).path),
                  {"id": account_id, "name": account_id, "plan": "dev", "entitled": True, "created_at": now,
                   "active_workflows": WORKFLOWS // ACCOUNTS})
    stale_ids: set[str] = set()
    for i in range(WORKFLOWS):
        account_id = accounts[i % ACCOUNTS]
        at = now - (timedelta(days=40 + rng.random() * 20) if i in stale else timedelta(hours=rng.random() * 600))
        workflow, event = create(CreateWorkflowRequest(title=f"Workflow {i}"), account_id=account_id,
                                 actor="key_bench", now=at)
        effect = handoff_domain.on_create(workflow, event, at)
        writes = Writes()
        account = Doc(store.account(account_id), {"plan": "dev", "active_workflows": 0})
        stage(store, writes, Change(account_id, None, effect.workflow, guard=account, event=event, handoffs=effect))
        for op, key, data, _ in writes.ops:
            if op == "create":  # the account's counter is the update: set once per account above
                batch.set(client.document(key.path), data)
                pending += 1
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

    from shared.adapters.firestore import Store, firestore_client
    from shared.services import cleanup

    client = firestore_client(f"bench-cleanup-{uuid.uuid4().hex[:8]}")
    now = datetime.now(UTC)
    started = time.perf_counter()
    stale = _seed(client, now, random.Random(5))
    seeded = time.perf_counter() - started

    # Runs with the default budgets until nothing is left: each plan's stale workflows get a fair share of a run's
    # document budget, so a backlog can take more than one run (as the scheduled cleanup would, 15 minutes apart).
    store = Store(client)
    started = time.perf_counter()
    reports = []
    while len(reports) < MAX_RUNS:
        reports.append(cleanup.run(store, now=now))
        if not reports[-1].left_for_next_run:
            break
    wall = time.perf_counter() - started
    reads, written = store.documents["read"], store.documents["written"]
    per_run = [r.tasks["stale"].done for r in reports]
    cancelled = sum(per_run)
    touched_accounts = {wf.get("account_id") for wf in client.collection_group("workflows").where(
        filter=firestore.FieldFilter("state", "==", "CANCELLED")).stream()}
    # workflows + their new events + their hand-offs (cancelled with them) + account counters
    changed_docs = cancelled * 3 + len(touched_accounts)

    store_again = Store(client)
    again = cleanup.run(store_again, now=now)
    result = {
        "workflows": WORKFLOWS, "stale": len(stale), "cancelled": cancelled, "runs": len(reports),
        "cancelled_per_run": per_run,
        "documents_read": reads, "documents_written": written, "distinct_documents_changed": changed_docs,
        "read_per_written": round(reads / written, 3), "read_per_changed": round(reads / changed_docs, 3),
        "read_per_workflow_cancelled": round(reads / cancelled, 3),
        "rpcs": dict(store.rpcs), "wall_seconds": round(wall, 2), "seed_seconds": round(seeded, 1),
        "left_for_next_run": reports[-1].left_for_next_run,
        "idle_run_documents_read": store_again.documents["read"], "idle_run_written": store_again.documents["written"],
        "idle_run_cancelled": again.tasks["stale"].done,
    }
    ok = cancelled == len(stale) and reads <= GOAL * changed_docs
    print("cleanup benchmark: 10,000 workflows (each with its hand-off) in 100 accounts, 1% stale; runs with the "
          "default budgets until nothing is left")
    print(f"  cancelled {cancelled} of {len(stale)} stale in {len(reports)} run(s): "
          f"{' + '.join(map(str, per_run))} (each plan's work gets a fair share of a run's 5,000-document budget); "
          f"work left: {', '.join(reports[-1].left_for_next_run) or 'none'}")
    print(f"  documents read {reads}, written {written} ({changed_docs} distinct documents changed: "
          f"{cancelled} workflows, {cancelled} events, {cancelled} hand-offs, {len(touched_accounts)} account "
          "counters)")
    print(f"  read / changed = {result['read_per_changed']} (goal ≤ {GOAL}: {'met' if ok else 'NOT MET'}); "
          f"read / written = {result['read_per_written']}; read per workflow cancelled = "
          f"{result['read_per_workflow_cancelled']}")
    print(f"  RPCs {dict(store.rpcs)}; wall {wall:.2f} s (emulator); one more run with nothing to do read "
          f"{result['idle_run_documents_read']} documents and wrote {result['idle_run_written']}")
    return result


if __name__ == "__main__":
    run()
