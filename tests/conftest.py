"""Test fixtures: one real Firestore emulator per test session (started here, on a free port, stopped at the end),
and a fresh emulator project per test (projects are isolated, so that is the cheapest clean slate)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from google.cloud import firestore

from tests.helpers import Api, Tenant, assert_event_log
from tests.index_coverage import pytest_sessionfinish  # noqa: F401 (the hook: every recorded query has its index)
from tests.index_coverage import record as record_queries
from tests.model_standin import ModelStandin
from tools.emulator import Emulator, MissingPrerequisite

os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "qorch-test")
os.environ.setdefault("QORCH_STORE_TIMEOUT_SECONDS", "3")


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    try:
        emu = Emulator().start()
    except MissingPrerequisite as exc:
        pytest.exit(str(exc), returncode=3)
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.address
    # The emulator answers its health check before its first gRPC call is fast (class loading, JIT): one write and
    # one read with a generous deadline here, so the first test's 3 s store deadline measures the product, not that.
    warm = firestore.Client(project="warm-up").collection("warm").document("up")
    warm.set({"at": 1}, timeout=120)
    warm.get(timeout=120)
    yield emu
    emu.stop()
    if previous is None:
        os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
    else:
        os.environ["FIRESTORE_EMULATOR_HOST"] = previous


@pytest.fixture(autouse=True)
def _credential_caches() -> Iterator[None]:
    """Each test starts with this process's key and membership caches empty (they are per instance, like the
    process a test stands for)."""
    from shared.services import auth

    auth.forget_all()
    yield
    auth.forget_all()


@pytest.fixture
def project_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(emulator: Emulator, project_id: str) -> Iterator:
    from shared.adapters.firestore import Store, firestore_client, use_store

    s = Store(firestore_client(project_id), timeout_seconds=3)
    use_store(s)
    yield s
    use_store(None)
    record_queries(s)  # for the session-wide index coverage check


@pytest.fixture(scope="session")
def app():
    from tools.router import create_app

    return create_app()


@pytest.fixture
def api(app, store) -> Iterator[Api]:
    yield Api(app.test_client(), store)
    # Every scenario ends with the three event-log invariants holding for every workflow it left behind.
    for snap in store.client.collection_group("workflows").stream():
        assert_event_log(store, snap.reference.parent.parent.id, snap.id)


@pytest.fixture
def tenant(api: Api) -> Tenant:
    """An entitled account with an owner key and one key per agent role."""
    return api.tenant("Acme")


@pytest.fixture
def other_tenant(api: Api) -> Tenant:
    return api.tenant("Globex")


@pytest.fixture(scope="session")
def live(app):
    """The local router over real HTTP on a free port, for the whole session. It serves whatever store the test's
    `store` fixture (or the test) made current, so each test still has its own project."""
    from tests.live import LiveServer

    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="session")
def s3():
    """moto in server mode on a free port (real HTTP), with the bucket made; the process's object store points at
    it. Each test's objects live under its own account's prefix, so one bucket serves the session."""
    from shared.adapters.objectstore import use_object_store
    from tools.locals3 import LocalS3

    server = LocalS3().start()
    yield server
    server.stop()
    use_object_store(None)


@pytest.fixture
def clock(monkeypatch):
    """Move time forward for lease expiry without waiting: `clock.advance(seconds)`. Every service reads
    `shared.runtime.clock.now`, and the domain gets `now` from them, so this moves it for the whole product."""
    from datetime import timedelta

    from shared.runtime import clock as product_clock

    class Clock:
        offset = timedelta()

        def advance(self, seconds: float) -> None:
            self.offset += timedelta(seconds=seconds)

    moved = Clock()
    real = product_clock.now
    monkeypatch.setattr(product_clock, "now", lambda: real() + moved.offset)
    return moved


@pytest.fixture
def standin(monkeypatch):
    """The model APIs' local stand-in (Anthropic and OpenAI wire formats), with the agents' base URLs pointed at it."""
    with ModelStandin() as m:
        for name, value in m.env().items():
            monkeypatch.setenv(name, value)
        yield m
