"""Transition benchmark: what one workflow change costs, against the real Firestore emulator.

1. Service level, uncontended: SAMPLES transitions (DISCOVERY <-> PLANNING) through `transition_workflow`; p50/p99.
   Twice: without usage, and with the usage of three model calls (priced from the table, one unpriced), which adds
   the account's month document to the commit.
2. The floor: right after each of those, the same documents read and written straight on the Firestore client, on a
   copy of the data in another project: one `get_all` of the refs the service read, one batched commit of the very
   writes it committed, with the same `update_time` precondition. No validation, no models: what the two RPCs cost.
   Twice, in alternating order: on the library's default client (the floor the issues name), and on the product's
   channel (`firestore_client`: a read polled on the thread that asked), which says what the channel alone saves.
   The ratio service/floor (p50) says what the product adds (goal <= 1.2).
3. HTTP level, over real HTTP with the key cache off and on, against the floor (one batched read of the key, the
   workflow and the Idempotency-Key record, one commit of the same writes): first HTTP_SAMPLES interleaved rounds of
   the issue's comparison alone (the router as `make run` serves it, functions-framework's production server in its
   own process, on a reused connection; and the floor, measured in this process right after the same transition and
   again in a process of its own that idles between its requests as the servers do), then HTTP_SAMPLES rounds of six
   kinds for what each part costs (also a new connection per request, and the router in this process on werkzeug's
   development server, as the tests serve it). p50/p99, the ratio of each to the floors, how much of it is the
   endpoint itself, HTTP serving alone (make run's server, gunicorn without Flask, a bare socket server), reads and
   writes per transition and what a million cost at Firestore's list prices.
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
import itertools
import json
import os
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import ms, scaled, set_key_cache

SAMPLES = scaled(400, 10)
HTTP_SAMPLES = scaled(300, 10)
WARM_UP = scaled(40, 2)
WORKERS = scaled(16, 4)
CONTENDED = scaled(400, 20)
TX_BUDGET_SECONDS = float(os.environ.get("QORCH_BENCH_TX_SECONDS", "60"))
GOAL = 1.2


def run() -> None:
    from tools.emulator import ensure_emulator

    with ensure_emulator():
        _run()


# ---- helpers -----------------------------------------------------------------------------------------------------


def _p(samples: list[float]) -> str:
    return f"p50 {ms(samples, 0.5):6.2f} ms   p99 {ms(samples, 0.99):6.2f} ms   (n={len(samples)})"


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

        def recording_get_many(keys: Any) -> Any:
            keys = list(keys)
            self.read = [k.path for k in keys]
            return get_many(keys)

        def recording_commit(writes: Any) -> None:
            commit(writes)
            self.ops = [(op, key.path, data, when is not None) for op, key, data, when in writes.ops]

        self.store.get_many, self.store.commit = recording_get_many, recording_commit
        return self

    def __exit__(self, *exc: object) -> None:
        del self.store.get_many, self.store.commit  # the class's methods again


class Floors:
    """Where the floor is measured: copies of a project's data in projects of their own, one read and written by the
    library's default client (the floor the issues name), one by the product's (`firestore_client`: its channel polls
    a read on the thread that asked), both in this process; with `idle`, one more by the library's default client in
    a process of its own (FloorProcess: the idle floor)."""

    KINDS = ("library default", "product channel")
    IDLE = "idle floor"

    def __init__(self, project: str, *, idle: bool = False) -> None:
        from google.cloud import firestore

        from shared.adapters.firestore import firestore_client

        self.clients = {"library default": firestore.Client(project=f"{project}-lib"),
                        "product channel": firestore_client(f"{project}-own")}
        self.idle = FloorProcess(f"{project}-idle") if idle else None
        self.kinds = (*self.KINDS, self.IDLE) if idle else self.KINDS
        self.samples: dict[str, list[float]] = {kind: [] for kind in self.kinds}
        self.turn = 0

    def copy(self, source: Any) -> None:
        from google.cloud import firestore

        copies = list(self.clients.values())
        if self.idle is not None:
            copies.append(firestore.Client(project=self.idle.project))
        for client in copies:
            _copy_project(source, client)

    def measure(self, read: list[str], ops: list[tuple[str, str, Any, bool]], *, keep: bool) -> None:
        """Both floors of one request, in alternating order (whichever goes second finds the emulator busier)."""
        self.turn += 1
        for kind in self.KINDS[::1 if self.turn % 2 else -1]:
            took = _floor(self.clients[kind], read, ops)
            if keep:
                self.samples[kind].append(took)

    def measure_idle(self, read: list[str], ops: list[tuple[str, str, Any, bool]], *, keep: bool) -> None:
        """The idle floor of one request (a kind of the rounds of its own, so its process idles between them)."""
        assert self.idle is not None
        took = self.idle.measure(read, ops)
        if keep:
            self.samples[self.IDLE].append(took)

    def close(self) -> None:
        if self.idle is not None:
            self.idle.stop()

    def p50(self, kind: str = "library default") -> float:
        return statistics.median(self.samples[kind])

    def report(self, indent: str, what: str) -> None:
        for kind in self.kinds:
            where = " (in a process of its own that idles between its requests as the servers do)" \
                if kind == self.IDLE else ""
            print(f"{indent}floor, {kind + ':':17s}{_p(self.samples[kind])}   {what}{where}")

    def ratios(self, took: list[float]) -> str:
        """`took`'s p50 over each floor's."""
        return ", ".join(f"{statistics.median(took) / self.p50(kind):.2f} ({kind})" for kind in self.kinds)


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


class FloorProcess:
    """The floor in a process of its own, on the library's default client, over a copy of the data: it waits for a
    request on its stdin (a pickled read and writes: plain values; a Firestore sentinel such as DELETE_FIELD, which
    the library compares by identity, would be refused there, loudly), makes the floor's two RPCs, answers their
    duration measured in it. Between requests it idles as each HTTP server does, so its RPCs pay what an idle process
    pays (its gRPC threads and caches gone cold), which the floor measured in this busy process does not."""

    def __init__(self, project: str) -> None:
        import subprocess
        import sys

        self.project = project
        self.process = subprocess.Popen([sys.executable, "-c", "import sys; from bench.transitions import "
                                         "_serve_floor; _serve_floor(sys.argv[1])", project],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def measure(self, read: list[str], ops: list[tuple[str, str, Any, bool]]) -> float:
        import pickle

        assert self.process.stdin is not None and self.process.stdout is not None
        pickle.dump((read, ops), self.process.stdin)
        self.process.stdin.flush()
        return pickle.load(self.process.stdout)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def _serve_floor(project: str) -> None:
    """FloorProcess's side: until stdin closes, each pickled (read, ops) gets the floor's duration back."""
    import pickle
    import sys

    from google.cloud import firestore

    client = firestore.Client(project=project)
    while True:
        try:
            read, ops = pickle.load(sys.stdin.buffer)
        except EOFError:
            return
        pickle.dump(_floor(client, read, ops), sys.stdout.buffer)
        sys.stdout.buffer.flush()


# ---- 1-3: one change at a time -----------------------------------------------------------------------------------


# Three model calls, as a step's transition reports them: two priced by the table, one the table does not know.
USAGE = [{"model": "claude-opus-5-5", "input_tokens": 12_000, "output_tokens": 800, "cache_read_tokens": 30_000},
         {"model": "gpt-6-sol", "input_tokens": 900, "output_tokens": 300},
         {"model": "my-local-llama", "input_tokens": 500, "output_tokens": 200}]


def _uncontended(store: Any, floor_project: str, owner: Any, usage: list[dict] | None = None) -> None:
    from shared.domain.models import TransitionRequest
    from shared.domain.pricing import Usage
    from shared.domain.state_machine import State
    from shared.services.workflows import get_workflow, transition_workflow
    from tests.helpers import assert_event_log

    wf = _new_workflow(store, owner)
    floors = Floors(floor_project)
    floors.copy(store.client)
    state = State(get_workflow(store, owner, wf)["state"])
    service: list[float] = []
    store.rpcs.clear()
    with Recorder(store) as recorder:
        for i in range(WARM_UP + SAMPLES):
            state = _other(state)
            started = time.perf_counter()
            request = TransitionRequest(to=state, usage=Usage.model_validate(usage) if usage else None)
            transition_workflow(store, owner, wf, request, None)
            took = time.perf_counter() - started
            floors.measure(recorder.read, recorder.ops, keep=i >= WARM_UP)  # right after: the same conditions
            if i >= WARM_UP:
                service.append(took)
    rpcs = Counter(store.rpcs)
    assert rpcs == Counter({"batch_get": WARM_UP + SAMPLES, "commit": WARM_UP + SAMPLES}), rpcs
    assert assert_event_log(store, owner.account_id, wf).version == 1 + WARM_UP + SAMPLES
    ratio = statistics.median(service) / floors.p50()
    label = f"with usage of {len(usage)} calls" if usage else "uncontended"
    print(f"  service transition, {label:15s} {_p(service)}   RPCs each: 1 batch_get + 1 commit")
    floors.report("    ", f"bare get_all + batch commit of the same {len(recorder.read)} read / {len(recorder.ops)} "
                  "written documents, same precondition")
    print(f"  ratio service/floor at p50: {floors.ratios(service)}   (goal <= {GOAL} against the library's: "
          f"{'met' if ratio <= GOAL else 'NOT met'})")


CACHE_SECONDS = {"off": 0, "on": 5}


class ServerProcess:
    """An HTTP server in a process of its own on a free port, started by `start(port)` and ready once a GET of
    `ready_path` answers `ready_status`; with a client on a new connection per request, or on one connection it keeps
    (as SDKs and agents do)."""

    def __init__(self, name: str, start: Callable[[int], Any], ready_path: str, ready_status: int) -> None:
        from tools.emulator import free_port

        self.port = free_port()
        self.kept: Any = None
        self.process = start(self.port)
        deadline = time.monotonic() + 120
        while True:  # ready when it answers
            try:
                if self.request("GET", ready_path, {}, None, reuse=False)[0] == ready_status:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.05)

    def request(self, method: str, path: str, headers: dict[str, str], body: Any, *, reuse: bool) -> tuple[int, Any]:
        import http.client

        data = json.dumps(body).encode() if body is not None else None
        if reuse and self.kept is not None:
            try:
                return self._exchange(self.kept, method, path, headers, data)
            except (http.client.RemoteDisconnected, ConnectionError):
                # Closed by the server while idle (gunicorn keeps an idle connection 2 s; a round takes a fraction
                # of that): the request never reached it, so it is sent again on a new connection (Idempotency-Key).
                self.kept.close()
                self.kept = None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            answer = self._exchange(conn, method, path, headers, data)
        except BaseException:
            conn.close()
            raise
        if reuse:
            self.kept = conn  # kept open for the next request
        else:
            conn.close()
        return answer

    @staticmethod
    def _exchange(conn: Any, method: str, path: str, headers: dict[str, str], data: bytes | None) -> tuple[int, Any]:
        conn.request(method, path, body=data, headers={**headers, "Content-Type": "application/json"})
        r = conn.getresponse()
        text = r.read()
        return r.status, json.loads(text) if text else None

    def stop(self) -> None:
        if self.kept is not None:
            self.kept.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except Exception:
            self.process.kill()


class ProductionServer(ServerProcess):
    """The router as `make run` serves it, in a process of its own: functions-framework's production server
    (gunicorn), as Cloud Functions serves a function (tools/serve.py), against the same emulator and project, with
    the key cache as given."""

    def __init__(self, project: str, cache_seconds: float) -> None:
        import subprocess
        import tempfile

        from tools import serve

        env = {**os.environ, "GOOGLE_CLOUD_PROJECT": project, "QORCH_KEY_CACHE_SECONDS": str(cache_seconds)}
        self.log = tempfile.TemporaryFile(mode="w+")  # its request log lines: each says the endpoint's own latency
        super().__init__("the production server (tools/serve.py)",
                         lambda port: serve.start(port, env, stdout=self.log, stderr=subprocess.DEVNULL),
                         "/v1/state-machine", 200)

    def transition_latencies(self) -> list[float]:
        """The endpoint's own `latency_ms` of each transition it served, in order (from its log lines), in s."""
        self.log.seek(0)
        return _transition_latencies(self.log.read())


def _transition_latencies(log: str) -> list[float]:
    lines = (json.loads(line) for line in log.splitlines() if line.startswith("{"))
    return [line["latency_ms"] / 1000 for line in lines if line.get("function") == "transition_workflow"]


@dataclass
class Rounds:
    """What one set of interleaved rounds measured: each kind's samples and the endpoint's own latency (its log line's
    `latency_ms`), the floors, and the RPCs and documents counted in this process per cache mode."""

    floors: Floors
    samples: dict[str, list[float]]
    endpoint: dict[str, list[float]]
    idle: float = 0.0  # median time between two rounds' starts: how long each server idles between its requests
    transitions: int = 0
    # Per cache mode, of the transitions made in this process (the in-process router's and the service's):
    rpcs: dict[str, Counter] = field(default_factory=lambda: {mode: Counter() for mode in CACHE_SECONDS})
    documents: dict[str, Counter] = field(default_factory=lambda: {mode: Counter() for mode in CACHE_SECONDS})
    counted: Counter = field(default_factory=Counter)  # how many of them
    # Per cache mode, the kind of each request its production server served ("" for a warm-up one), in order:
    sent: dict[str, list[str]] = field(default_factory=lambda: {mode: [] for mode in CACHE_SECONDS})


def _http(run_id: str) -> None:
    """HTTP transitions against the floor, with the key cache off and on, in interleaved rounds (each round's order
    rotates) so drift on this shared machine hits every kind alike.

    First the comparison the issue asks for: rounds of four: make run's router (functions-framework's production
    server, as Cloud Functions serves a function; a process of its own per cache mode) on a reused connection, cache
    off and on, and the floor. The floor is what the issue names: one batched read of the key, the workflow and the
    Idempotency-Key record, and one commit of the very writes a transition commits, straight on the client; those
    writes come from the same transition made by the service in this process, untimed (its RPCs and documents are
    counted here). It is measured right after that transition, in this process, which never idles (the strict
    floor), and as a fourth kind of the rounds in a process of its own that idles between its requests as each server
    does (the idle floor: the same two RPCs from the same library, in the servers' conditions).

    Then the same with six kinds a round, for what each part costs: the router in this process (werkzeug's
    development server, as the tests serve it: a thread and a connection per request), cache off and on, each
    followed by its floor; make run's router on a new connection and on a reused one, cache off and on. Each server
    idles longer between its requests than in the first rounds (HTTP serving alone is then measured after as long an
    idle)."""
    from shared.adapters.firestore import Store, firestore_client, use_store
    from shared.services.auth import forget_all, hash_key
    from tests.helpers import assert_event_log
    from tests.live import LiveServer
    from tools.router import create_app

    project = f"bench-http-{run_id}"
    store = Store(firestore_client(project))
    owner, key = _tenant(store)
    wf = _new_workflow(store, owner)
    key_path = store.api_key(hash_key(key)).path
    previous = os.environ.get("QORCH_KEY_CACHE_SECONDS")
    production = {mode: ProductionServer(project, seconds) for mode, seconds in CACHE_SECONDS.items()}
    use_store(store)
    forget_all()
    try:
        with LiveServer(create_app()) as server:
            with contextlib.redirect_stdout(io.StringIO()):  # its log line
                assert server.request("GET", "/v1/account", key=key).status == 200  # the hourly last-used write: now
            busy = _rounds(["service", "floor", "kept-off", "kept-on"], f"{run_id}-a", store, owner, key, key_path, wf,
                           production, server)
            both = _rounds(["dev-off", "dev-on", "prod-off", "prod-on", "kept-off", "kept-on"], f"{run_id}-b",
                           store, owner, key, key_path, wf, production, server)
        serving = {"make run's server": _serving_alone(production["on"], both.idle)}
        for name, script in (("gunicorn, no Flask", GUNICORN_ALONE), ("a bare socket server", BARE_SERVER)):
            alone = _script_server(name, script)
            try:
                serving[name] = _serving_alone(alone, both.idle)
            finally:
                alone.stop()
    finally:
        for server_process in production.values():
            server_process.stop()
        use_store(None)
        forget_all()
        set_key_cache(float(previous) if previous is not None else None)
    for mode, server_process in production.items():  # each production transition's own latency, from its log
        latencies = server_process.transition_latencies()
        first = len(busy.sent[mode])  # served in this order: the first rounds, then those of six
        for rounds, theirs in ((busy, latencies[:first]), (both, latencies[first:])):
            for kind, own in zip(rounds.sent[mode], theirs, strict=True):
                if kind:
                    rounds.endpoint[kind].append(own)
    assert assert_event_log(store, owner.account_id, wf).version == 1 + busy.transitions + both.transitions
    n = HTTP_SAMPLES
    print(f"  HTTP transition vs the floor (Idempotency-Key sent), {n} interleaved rounds: make run's router on a "
          f"reused connection (as SDKs and agents keep theirs), cache off and on, and the floor in a process of its "
          f"own; each idles {1000 * busy.idle:.0f} ms between its requests (the floors in this process do not)")
    busy.floors.report("    ", "get_all of key+workflow+record, one commit of the same writes")
    _report(busy, {"kept": "make run's router, reused connection"})
    print(f"  the same in rounds of six, for what each part costs (each server idles {1000 * both.idle:.0f} ms between "
          "its requests)")
    both.floors.report("    ", "get_all of key+workflow+record, one commit of the same writes")
    _report(both, {"dev": "the router in this process (werkzeug's development server, the tests'), new connection",
                   "prod": "make run's router (functions-framework's production server, tools/serve.py), new "
                           "connection",
                   "kept": "make run's router, reused connection (as SDKs and agents keep theirs)"})
    print(f"    HTTP serving alone (a GET of an unknown path: 404, no store, reused connection), back to back and "
          f"after {1000 * both.idle:.0f} ms idle, as each server is between its requests in the rounds of six (an idle "
          "server's wake-ups; the in-process floor pays none):")
    for label, (back_to_back, rested) in serving.items():
        print(f"      {label + ':':22s} back to back p50 {1000 * back_to_back:.2f} ms, after idle p50 "
              f"{1000 * rested:.2f} ms (+{1000 * (rested - back_to_back):.2f})")
    for mode in CACHE_SECONDS:
        rpcs, documents = busy.rpcs[mode] + both.rpcs[mode], busy.documents[mode] + both.documents[mode]
        counted = busy.counted[mode] + both.counted[mode]
        per = {k: v / counted for k, v in rpcs.items()}
        reads, writes = documents["read"] / counted, documents["written"] / counted
        cost = (reads * 0.06 + writes * 0.18) * 1_000_000 / 100_000
        print(f"    key cache {mode}, per transition (counted in this process): RPCs "
              f"{', '.join(f'{k} {v:.2f}' for k, v in sorted(per.items()))}; documents read {reads:.2f}, written "
              f"{writes:.2f}; a million transitions: ${cost:.2f} at Firestore list prices (Step Functions Standard: "
              "$25.00)")


def _report(rounds: Rounds, labels: dict[str, str]) -> None:
    floor = rounds.floors.p50()
    for where, label in labels.items():
        print(f"    {label}")
        for mode in CACHE_SECONDS:
            took, own = rounds.samples[f"{where}-{mode}"], rounds.endpoint[f"{where}-{mode}"]
            print(f"      key cache {mode:<3} ({CACHE_SECONDS[mode]} s) {_p(took)}   ratio to the floor at p50: "
                  f"{rounds.floors.ratios(took)}")
            print(f"        of which the endpoint itself (its log line's latency_ms): p50 "
                  f"{1000 * statistics.median(own):6.2f} ms, {statistics.median(own) / floor:.2f}x the floor; "
                  f"the rest (HTTP server, functions-framework, Flask, client) "
                  f"{1000 * (statistics.median(took) - statistics.median(own)):.2f} ms")


def _rounds(kinds: list[str], run_id: str, store: Any, owner: Any, key: str, key_path: str, wf: str,
            production: dict[str, ProductionServer], server: Any) -> Rounds:
    """WARM_UP + HTTP_SAMPLES rounds of `kinds`, each round's order rotated by one (`service` opens each round). A
    kind is `service` (the transition made in this process by the service, untimed, cache on: what the floors
    replay, right after it in this process and as the kind `floor` in a process of its own), `dev-<mode>` (over
    HTTP through the router in this process, then the floor replays it), `prod-<mode>` (make run's router, a new
    connection) or `kept-<mode>` (make run's router, a reused connection); <mode> is the key cache's."""
    from shared.domain.models import TransitionRequest
    from shared.domain.state_machine import State
    from shared.services.auth import authenticate
    from shared.services.idempotency import parse as parse_idempotency
    from shared.services.workflows import transition_workflow

    floors = Floors(f"bench-http-floor-{run_id}", idle="floor" in kinds)
    floors.copy(store.client)
    rotating = [kind for kind in kinds if kind != "service"]
    timed = [kind for kind in rotating if kind != "floor"]  # the floors' samples are the Floors'
    rounds = Rounds(floors, {kind: [] for kind in timed}, {kind: [] for kind in timed})
    log = io.StringIO()
    state = State(store.get(store.workflow(owner.account_id, wf)).data["state"])
    started_rounds: list[float] = []
    path = f"/v1/workflows/{wf}/transitions"
    with contextlib.redirect_stdout(log), Recorder(store) as recorder:  # the in-process router's log lines
        for i in range(WARM_UP + HTTP_SAMPLES):
            started_rounds.append(time.perf_counter())
            keep = i >= WARM_UP
            rotated = rotating[i % len(rotating):] + rotating[:i % len(rotating)]
            for kind in ["service", *rotated] if "service" in kinds else rotated:
                where, _, mode = kind.partition("-")
                if where == "floor":  # this round's service transition, replayed by the floor in its own process
                    floors.measure_idle([key_path, *recorder.read], recorder.ops, keep=keep)
                    continue
                state = _other(state)
                idempotency_key = uuid.uuid4().hex
                if where in ("service", "dev"):
                    mode = mode or "on"
                    set_key_cache(CACHE_SECONDS[mode])
                    rpcs_before, docs_before = Counter(store.rpcs), Counter(store.documents)
                    started = time.perf_counter()
                    if where == "dev":
                        r = server.request("POST", path, key=key, body={"to": state.value},
                                           headers={"Idempotency-Key": idempotency_key})
                        assert r.status == 200, r.body
                    else:
                        principal = authenticate(store, f"Bearer {key}", write=True)
                        body = {"to": state.value}
                        transition_workflow(store, principal, wf, TransitionRequest(to=state),
                                            parse_idempotency(idempotency_key, method="POST", path=path, body=body))
                    took = time.perf_counter() - started
                    if keep:
                        rounds.rpcs[mode] += Counter(store.rpcs) - rpcs_before
                        rounds.documents[mode] += Counter(store.documents) - docs_before
                        rounds.counted[mode] += 1
                    floors.measure([key_path, *recorder.read], recorder.ops, keep=keep)
                    if where == "dev":
                        [own] = _transition_latencies(log.getvalue())
                        log.seek(0)
                        log.truncate()
                        if keep:
                            rounds.endpoint[kind].append(own)
                else:
                    reuse = where == "kept"
                    if reuse and production[mode].kept is None:  # connect outside the timed request
                        production[mode].request("GET", "/v1/state-machine", {}, None, reuse=True)
                    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}
                    started = time.perf_counter()
                    status, body = production[mode].request("POST", path, headers, {"to": state.value}, reuse=reuse)
                    took = time.perf_counter() - started
                    assert status == 200, body
                    rounds.sent[mode].append(kind if keep else "")
                rounds.transitions += 1
                if keep and kind in rounds.samples:
                    rounds.samples[kind].append(took)
    floors.close()
    rounds.idle = statistics.median(b - a for a, b in itertools.pairwise(started_rounds))
    return rounds


# A bare HTTP/1.1 server: a thread per connection, the same short 404 to every request, no framework. Timed like make
# run's server, it says what this machine's wake-ups cost by themselves, apart from gunicorn, functions-framework and
# Flask.
BARE_SERVER = """
import socket, sys, threading
ANSWER = (b"HTTP/1.1 404 Not Found\\r\\nContent-Type: application/problem+json\\r\\nContent-Length: 2\\r\\n\\r\\n{}")
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pending = b""
    while data := conn.recv(65536):
        pending += data
        while b"\\r\\n\\r\\n" in pending:  # bodiless requests only
            _, pending = pending.split(b"\\r\\n\\r\\n", 1)
            conn.sendall(ANSWER)
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
"""


# The production server alone: functions-framework's gunicorn (as tools/serve.py runs it, THREADS included) serving a
# WSGI app that answers that 404 without Flask or functions-framework's app, so their share is set apart from its.
GUNICORN_ALONE = """
import sys
from functions_framework._http.gunicorn import GunicornApplication
def app(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "application/problem+json"), ("Content-Length", "2")])
    return [b"{}"]
GunicornApplication(app, "127.0.0.1", int(sys.argv[1]), False).run()
"""


def _script_server(name: str, script: str) -> ServerProcess:
    """`script` (which serves on the port given as its argument) in a process of its own, spoken to like make run's
    server."""
    import subprocess
    import sys

    from tools import serve

    def start(port: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", script, str(port)],
                                env={**os.environ, "THREADS": os.environ.get("THREADS", serve.THREADS)})

    return ServerProcess(name, start, "/", 404)


def _serving_alone(server: ServerProcess, idle: float) -> tuple[float, float]:
    """p50 of a request that does no store work (404), back to back and after `idle` seconds of quiet, in s."""
    server.request("GET", "/v1/state-machine", {}, None, reuse=True)  # connected outside the timed requests
    medians = []
    for pause in (0.0, idle):
        took = []
        for _ in range(scaled(200, 10)):
            time.sleep(pause)
            started = time.perf_counter()
            status, _ = server.request("GET", "/v1/no-such-resource", {}, None, reuse=True)
            took.append(time.perf_counter() - started)
            assert status == 404
        medians.append(statistics.median(took))
    return medians[0], medians[1]


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
    from shared.adapters.firestore import Store, firestore_client

    run_id = uuid.uuid4().hex[:8]
    store = Store(firestore_client(f"bench-transitions-{run_id}"))
    owner, _ = _tenant(store)
    print("transition benchmark (Firestore emulator on this machine; wall-clock, for comparison between runs)")
    _uncontended(store, f"bench-floor-{run_id}", owner)
    _uncontended(store, f"bench-floor-usage-{run_id}", owner, USAGE)
    _http(run_id)
    _contention(store, owner)


if __name__ == "__main__":
    run()
