"""Agent context benchmark: what `GET /v1/workflows/{id}/context` costs next to `GET /v1/workflows/{id}`, in the same
run, through the local router over real HTTP, against the real Firestore emulator.

The workflow is a developer's rework: 11 events, an open hand-off carrying the tester's report, and 6 artifacts from
earlier steps, so the context signs 5 download URLs (locally: no request leaves for the object store). The two GETs
alternate, so both see the same machine load; RPCs are counted at the store adapter per request (the key's read
included, as in every request) and checked; times are wall-clock, printed for comparison, never asserted.

    python -m bench context        (or `make bench`, which runs every bench module's `run()`)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from bench import ms, scaled, set_key_cache

SAMPLES = scaled(300, 10)
WARM_UP = scaled(30, 2)


def run() -> None:
    from tools.emulator import ensure_emulator

    with ensure_emulator():
        _run()


def _artifact(store: Any, account_id: str, workflow_id: str, name: str, actor: str) -> str:
    """An AVAILABLE artifact record (the bench needs no bytes: the context only signs URLs to them)."""
    from shared.adapters.firestore import Writes
    from shared.domain import artifact as artifact_domain
    from shared.domain.models import ArtifactStatus, CreateArtifactRequest
    from shared.runtime import clock

    data = f"# {name}\n".encode()
    request = CreateArtifactRequest(name=name, content_type="text/markdown", size_bytes=len(data),
                                    sha256=hashlib.sha256(data).hexdigest())
    at = clock.now()
    artifact = artifact_domain.new(request, workflow_id=workflow_id, actor=actor, now=at).model_copy(
        update={"status": ArtifactStatus.AVAILABLE, "completed_at": at + timedelta(seconds=1)})
    writes = Writes()
    writes.create(store.artifact(account_id, workflow_id, artifact.id), artifact.model_dump(mode="python"))
    store.commit(writes)
    return artifact.id


def _seed(store: Any) -> tuple[str, str, str]:
    """(workflow id, developer key, owner key): a workflow back in IMPLEMENTATION after a failed test run."""
    from shared.domain.models import CreateWorkflowRequest, TransitionRequest
    from shared.domain.state_machine import Role, State
    from shared.services import accounts
    from shared.services.auth import authenticate
    from shared.services.workflows import create_workflow, transition_workflow

    account = accounts.create_account(store, "Bench", entitled=True)
    owner_key, _ = accounts.create_key(store, account.id, [Role.OWNER], name="owner")
    dev_key, _ = accounts.create_key(store, account.id, [Role.DEVELOPER], name="dev")
    owner = authenticate(store, f"Bearer {owner_key}")
    wf = create_workflow(store, owner, CreateWorkflowRequest(title="bench", description="A shop.\n" * 20,
                                                             labels={"team": "web"}), None).body["id"]
    steps = [(State.PLANNING, "requirements.md"), (State.DISCOVERY, None), (State.PLANNING, "requirements.md"),
             (State.DESIGN, "plan.md"), (State.IMPLEMENTATION, "design.md"), (State.TESTING, "change.patch"),
             (State.IMPLEMENTATION, "test-report.md"), (State.TESTING, "change.patch"),
             (State.IMPLEMENTATION, "test-report.md"), (State.TESTING, "notes.md"),
             (State.IMPLEMENTATION, "test-report.md")]
    for to, name in steps:
        attached = [_artifact(store, account.id, wf, name, owner.key_id)] if name else []
        transition_workflow(store, owner, wf, TransitionRequest(to=to, note=f"to {to}", artifacts=attached), None)
    return wf, dev_key, owner_key


def _run() -> None:
    from shared.adapters.firestore import Store, firestore_client, use_store
    from shared.adapters.objectstore import ObjectStore, ObjectStoreConfig, use_object_store
    from tests.live import LiveServer
    from tools.router import create_app

    # Both requests read the caller's key: with the cache off they do on every call, so the two compare like for
    # like and the counts below are exact (bench.transitions measures the cache).
    previous = os.environ.get("QORCH_KEY_CACHE_SECONDS")
    set_key_cache(0)
    store = Store(firestore_client(f"bench-context-{uuid.uuid4().hex[:8]}"))
    wf, dev_key, _ = _seed(store)
    use_store(store)
    # Signing is local: nothing listens at this endpoint and nothing is sent to it.
    use_object_store(ObjectStore(ObjectStoreConfig(bucket="bench", endpoint_url="http://127.0.0.1:9",
                                                   access_key_id="bench", secret_access_key="bench",
                                                   addressing_style="path")))
    paths = {"GET workflow": f"/v1/workflows/{wf}", "GET context": f"/v1/workflows/{wf}/context"}
    times: dict[str, list[float]] = {name: [] for name in paths}
    rpcs: dict[str, Counter] = {name: Counter() for name in paths}
    try:
        with contextlib.redirect_stdout(io.StringIO()), LiveServer(create_app()) as server:  # one log line each
            for i in range(WARM_UP + SAMPLES):
                for name, path in paths.items():
                    store.rpcs.clear()
                    started = time.perf_counter()
                    r = server.request("GET", path, key=dev_key)
                    took = time.perf_counter() - started
                    assert r.status == 200, r.body
                    if i >= WARM_UP:
                        times[name].append(took)
                        rpcs[name] += store.rpcs
        body = r.body
    finally:
        use_store(None)
        use_object_store(None)
        set_key_cache(float(previous) if previous is not None else None)
    assert [a["name"] for a in body["earlier_artifacts"]] == ["change.patch", "design.md", "notes.md", "plan.md",
                                                              "requirements.md"]
    per = {name: {k: v / SAMPLES for k, v in sorted(c.items())} for name, c in rpcs.items()}
    assert per["GET workflow"] == {"get": 2.0}  # the key, the workflow
    assert per["GET context"] == {"batch_get": 1.0, "get": 2.0, "query": 2.0}  # + hand-off, events, artifacts
    print("agent context benchmark (Firestore emulator on this machine; HTTP through the local router; wall-clock,")
    print("for comparison between runs; the two requests alternate)")
    for name in paths:
        calls = " + ".join(f"{v:.0f} {k}" for k, v in per[name].items())
        print(f"  {name:13s} p50 {ms(times[name], 0.5):6.2f} ms   p99 {ms(times[name], 0.99):6.2f} ms   "
              f"(n={SAMPLES})   RPCs each: {calls}")
    ratio = ms(times["GET context"], 0.5) / ms(times["GET workflow"], 0.5)
    print(f"  ratio context/workflow at p50: {ratio:.2f}   (the context reads 4 documents' worth of RPCs after the "
          f"key, the workflow 1; 11 events, 5 signed URLs)")


if __name__ == "__main__":
    run()
