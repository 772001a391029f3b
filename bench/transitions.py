"""Transition benchmark: what one workflow change costs, against the real Firestore emulator.

1. Service level, uncontended: SAMPLES transitions (DISCOVERY <-> PLANNING) through `transition_workflow`; p50/p99.
   Twice: without usage, and with the usage of three model calls (priced from the table, one unpriced), which adds
   the account's month document to the commit.
2. The floor: right after each of those, the same documents read and written straight on the Firestore client, on a
   copy of the data in a second project: one `get_all` of the refs the service read, one batched commit of the very
   writes it committed, with the same `update_time` precondition. No validation, no models: what the two RPCs cost.
   The ratio service/floor (p50) says what the product adds (goal <= 1.2).
3. HTTP level: HTTP_SAMPLES transitions through the local router over real HTTP (auth read included); p50/p99.
4. Contention: WORKERS threads make CONTENDED transitions on one workflow, each a toggle that re-reads on a lost race
   (the product's write: batched read, decide, precondition commit); then the textbook `@firestore.transactional`
   read-modify-write of the same documents. The transactional run is bounded by TX_BUDGET_SECONDS (workers take no
   new transition after it; the output says when it stopped early and extrapolates its rate).

Timings are wall-clock on this machine's emulator, printed for comparison between runs, never asserted. Counts
(RPCs, committed transitions, the event log) are checked.

    python -m bench transitions        (or `make bench`, which runs every bench module's `run()`)

Uses the emulator named by FIRESTORE_EMULATOR_HOST, else starts one for the run.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

SAMPLES = 400
HTTP_SAMPLES = 300
WARM_UP = 40
WORKERS = 16
CONTENDED = 400
TX_BUDGET_SECONDS = float(os.environ.get("QORCH_BENCH_TX_SECONDS", "60"))
GOAL = 1.2


def run() -> None:
    from tools.emulator import ensure_emulator

    with ensure_emulator():
        _run()


# ---- helpers -----------------------------------------------------------------------------------------------------


def _ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _p(samples: list[float]) -> str:
    return f"p50 {_ms(samples, 0.5):6.2f} ms   p99 {_ms(samples, 0.99):6.2f} ms   (n={len(samples)})"


def _tenant(store: Any) -> tuple[Any, str]:
    """An entitled account and its owner: (principal, api key)."""
    from shared.domain.state_machine import Role
    from shared.services import accounts
    from shared.services.auth import authenticate

    account = accounts.create_account(store, "Bench", entitled=True)
    key, _ = accounts.create_key(store, account.id, [Role.OWNER], name="owner")
    return authenticate(store, f"Bearer {key}"), key


def _new_workflow(store: Any, owner: Any) -> str:
    from shared.domain.models import CreateWorkflowRequest
    from shared.services.workflows import create_workflow

    return create_workflow(store, owner, CreateWorkflowRequest(title="bench"), None).body["id"]


def _other(state: Any) -> Any:
    from shared.domain.state_machine import State

    return State.PLANNING if state is State.DISCOVERY else State.DISCOVERY


def _copy_project(source: Any, target: Any) -> None:
    """Every document of `source` (a firestore client) written as is into `target`'s project."""
    def walk(collections: Any) -> None:
        batch = target.batch()
        for col in collections:
            for doc in col.list_documents():
                snap = doc.get()
                if snap.exists:
                    batch.set(target.document(doc.path), snap.to_dict())
                walk(doc.collections())
        batch.commit()

    walk(source.collections())


class Recorder:
    """While in use, wraps a Store's `get_many` and `commit` to keep what the last call read and wrote."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.read: list[str] = []
        self.ops: list[tuple[str, str, Any, bool]] = []

    def __enter__(self) -> Recorder:
        get_many, commit = self.store.get_many, self.store.commit

        def recording_get_many(refs: list) -> Any:
            self.read = [r.path for r in refs]
            return get_many(refs)

        def recording_commit(writes: Any) -> None:
            commit(writes)
            self.ops = [(op, ref.path, data, when is not None) for op, ref, data, when in writes.ops]

        self.store.get_many, self.store.commit = recording_get_many, recording_commit
        return self

    def __exit__(self, *exc: object) -> None:
        del self.store.get_many, self.store.commit  # the class's methods again


def _floor(client: Any, read: list[str], ops: list[tuple[str, str, Any, bool]]) -> float:
    """One bare batched read and one batched commit of the same documents, same precondition; its duration."""
    from shared.adapters.firestore import Key, Store, Writes

    translate = Store(client).batch  # built before the clock starts: the floor times only the two RPCs' work
    started = time.perf_counter()
    snaps = {s.reference.path: s for s in client.get_all([client.document(p) for p in read])}
    writes = Writes(ops=[(op, Key(path), data, snaps[path].update_time if guarded else None)
                         for op, path, data, guarded in ops])
    translate(writes).commit()  # the same WriteBatch the adapter sends, straight on the client
    return time.perf_counter() - started


# ---- 1-3: one change at a time -----------------------------------------------------------------------------------


# Three model calls, as a step's transition reports them: two priced by the table, one the table does not know.
USAGE = [{"model": "claude-opus-5-5", "input_tokens": 12_000, "output_tokens": 800, "cache_read_tokens": 30_000},
         {"model": "gpt-6-sol", "input_tokens": 900, "output_tokens": 300},
         {"model": "my-local-llama", "input_tokens": 500, "output_tokens": 200}]


def _uncontended(store: Any, floor_client: Any, owner: Any, usage: list[dict] | None = None) -> None:
    from shared.domain.models import TransitionRequest
    from shared.domain.pricing import Usage
    from shared.domain.state_machine import State
    from shared.services.workflows import get_workflow, transition_workflow
    from tests.helpers import assert_event_log

    wf = _new_workflow(store, owner)
    _copy_project(store.client, floor_client)
    state = State(get_workflow(store, owner, wf)["state"])
    service: list[float] = []
    floor: list[float] = []
    store.rpcs.clear()
    with Recorder(store) as recorder:
        for i in range(WARM_UP + SAMPLES):
            state = _other(state)
            started = time.perf_counter()
            request = TransitionRequest(to=state, usage=Usage.model_validate(usage) if usage else None)
            transition_workflow(store, owner, wf, request, None)
            took = time.perf_counter() - started
            floor_took = _floor(floor_client, recorder.read, recorder.ops)  # right after: the same conditions
            if i >= WARM_UP:
                service.append(took)
                floor.append(floor_took)
    rpcs = Counter(store.rpcs)
    assert rpcs == Counter({"batch_get": WARM_UP + SAMPLES, "commit": WARM_UP + SAMPLES}), rpcs
    assert assert_event_log(store, owner.account_id, wf).version == 1 + WARM_UP + SAMPLES
    ratio = statistics.median(service) / statistics.median(floor)
    label = f"with usage of {len(usage)} calls" if usage else "uncontended"
    print(f"  service transition, {label:15s} {_p(service)}   RPCs each: 1 batch_get + 1 commit")
    print(f"  floor (bare get_all + batch commit) {_p(floor)}   "
          f"the same {len(recorder.read)} read / {len(recorder.ops)} written documents, same precondition")
    print(f"  ratio service/floor at p50: {ratio:.2f}   (goal <= {GOAL}: {'met' if ratio <= GOAL else 'NOT met'})")


def _http(store: Any, owner: Any, key: str) -> None:
    from shared.adapters.firestore import use_store
    from shared.domain.state_machine import State
    from tests.live import LiveServer
    from tools.router import create_app

    wf = _new_workflow(store, owner)
    use_store(store)
    state = State.DISCOVERY
    samples: list[float] = []
    try:
        with contextlib.redirect_stdout(io.StringIO()), LiveServer(create_app()) as server:  # one log line each
            for i in range(WARM_UP + HTTP_SAMPLES):
                state = _other(state)
                started = time.perf_counter()
                r = server.request("POST", f"/v1/workflows/{wf}/transitions", key=key, body={"to": state.value})
                took = time.perf_counter() - started
                assert r.status == 200, r.body
                if i >= WARM_UP:
                    samples.append(took)
    finally:
        use_store(None)
    print(f"  HTTP transition via local router    {_p(samples)}   (a new connection each, auth read included)")


# ---- 4: contention -----------------------------------------------------------------------------------------------


def _race(worker: Callable[[], bool], budget: float | None) -> tuple[float, int, int, bool]:
    """WORKERS threads share CONTENDED tickets; a ticket is one transition, which its worker retries (as a client
    would) until `worker()` says it committed. Returns (seconds, committed, refusals retried, stopped at budget)."""
    lock = threading.Lock()
    tickets = [CONTENDED]
    counts: Counter[str] = Counter()
    barrier = threading.Barrier(WORKERS + 1)
    deadline: list[float] = []

    def past_deadline() -> bool:
        return bool(deadline) and time.perf_counter() > deadline[0]

    def loop() -> None:
        barrier.wait()
        while True:
            with lock:
                if tickets[0] == 0 or past_deadline():
                    return
                tickets[0] -= 1
            while not worker():
                with lock:
                    counts["refused"] += 1
                if past_deadline():
                    return
            with lock:
                counts["committed"] += 1

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    if budget is not None:
        deadline.append(started + budget)
    barrier.wait()
    for t in threads:
        t.join(timeout=None if budget is None else max(1.0, started + budget + 120 - time.perf_counter()))
    seconds = time.perf_counter() - started
    stuck = sum(t.is_alive() for t in threads)
    if stuck:
        print(f"    ({stuck} workers still inside a transaction at the cut-off; not waited for)")
    return seconds, counts["committed"], counts["refused"], counts["committed"] < CONTENDED


def _contention(store: Any, owner: Any) -> None:
    from google.cloud import firestore

    from shared.adapters.firestore import Doc, Writes
    from shared.domain import handoff as handoff_domain
    from shared.domain import workflow as domain
    from shared.domain.errors import VersionConflict
    from shared.domain.models import Workflow
    from shared.runtime import clock
    from shared.services import commits
    from shared.services import workflows as service
    from shared.services.changes import Change, stage
    from tests.helpers import assert_event_log

    def toggle(workflow: Workflow, _: Any, at: Any) -> Any:
        return domain.transition(workflow, _other(workflow.state), roles=owner.roles, actor=owner.key_id,
                                 reason="", note="", now=at)

    # The product's write: read, decide, precondition commit; a lost race re-reads (bounded, then 409).
    wf = _new_workflow(store, owner)
    store.rpcs.clear()

    def precondition_worker() -> bool:
        try:
            service.change_workflow(store, owner, wf, None, toggle)
            return True
        except VersionConflict:
            return False

    seconds, committed, refused, _ = _race(precondition_worker, None)
    rpcs = Counter(store.rpcs)
    assert committed == CONTENDED and assert_event_log(store, owner.account_id, wf).version == 1 + CONTENDED
    print(f"  contention, {WORKERS} workers x {CONTENDED} transitions on one workflow (a refused one is retried)")
    print(f"    precondition writes (the product): {committed} committed in {seconds:.2f} s "
          f"({committed / seconds:.0f}/s); per committed transition {rpcs['batch_get'] / committed:.1f} reads + "
          f"{rpcs['commit'] / committed:.1f} commits; {refused} answered 409 after {commits.ATTEMPTS} lost "
          "races and were retried by the worker")

    # The textbook version: the same read and the same writes in a read-write transaction.
    wf_tx = _new_workflow(store, owner)
    wf_key = store.workflow(owner.account_id, wf_tx)
    wf_ref = store.client.document(wf_key.path)

    @firestore.transactional
    def in_transaction(transaction: Any) -> None:
        at = clock.now()
        snap = wf_ref.get(transaction=transaction)
        workflow = Workflow.model_validate(snap.to_dict())
        moved, event = toggle(workflow, None, at)
        effect = handoff_domain.on_change(workflow, moved, event, at)
        writes = Writes()  # the very writes of the product's write path; the transaction stands for the guard
        stage(store, writes, Change(owner.account_id, workflow, effect.workflow, guard=Doc(wf_key, snap.to_dict()),
                                    event=event, handoffs=effect))
        for op, key, data, _ in writes.ops:
            getattr(transaction, op)(store.client.document(key.path), data)

    def transactional_worker() -> bool:
        try:
            in_transaction(store.client.transaction())
            return True
        except Exception:  # the client gives up after its attempts (ValueError, Aborted): counted, not fatal
            return False

    tx_seconds, tx_committed, tx_refused, stopped = _race(transactional_worker, TX_BUDGET_SECONDS)
    tx_version = assert_event_log(store, owner.account_id, wf_tx).version
    bound = f" (STOPPED at the {TX_BUDGET_SECONDS:.0f} s bound, QORCH_BENCH_TX_SECONDS)" if stopped else ""
    print(f"    @firestore.transactional: {tx_committed} of {CONTENDED} committed in {tx_seconds:.2f} s{bound}; "
          f"{tx_refused} gave up after the client's own retries and were retried by the worker; "
          f"workflow version {tx_version}")
    if tx_committed and not stopped:
        print(f"    wall time ratio transactional/precondition: {tx_seconds / seconds:.1f}x")
    elif tx_committed:
        projected = tx_seconds / tx_committed * CONTENDED
        print(f"    wall time ratio transactional/precondition: >= {tx_seconds / seconds:.1f}x (bounded run); at its "
              f"measured rate all {CONTENDED} would take ~{projected:.0f} s, ~{projected / seconds:.0f}x")
    else:
        print(f"    wall time ratio transactional/precondition: >= {tx_seconds / seconds:.1f}x (nothing committed "
              "within the bound)")


def _run() -> None:
    from google.cloud import firestore

    from shared.adapters.firestore import Store

    run_id = uuid.uuid4().hex[:8]
    store = Store(firestore.Client(project=f"bench-transitions-{run_id}"))
    floor_client = firestore.Client(project=f"bench-floor-{run_id}")
    owner, key = _tenant(store)
    print("transition benchmark (Firestore emulator on this machine; wall-clock, for comparison between runs)")
    _uncontended(store, floor_client, owner)
    _uncontended(store, floor_client, owner, USAGE)
    _http(store, owner, key)
    _contention(store, owner)


if __name__ == "__main__":
    run()
