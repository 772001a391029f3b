"""Test fixtures: one real Firestore emulator per test session (started here, on a free port, stopped at the end),
and a fresh emulator project per test (projects are isolated, so that is the cheapest clean slate)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from google.cloud import firestore

from tests.helpers import Api, Tenant
from tests.index_coverage import pytest_sessionfinish  # noqa: F401 (the hook: every recorded query has its index)
from tests.index_coverage import record as record_queries
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
    yield emu
    emu.stop()
    if previous is None:
        os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
    else:
        os.environ["FIRESTORE_EMULATOR_HOST"] = previous


@pytest.fixture
def project_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(emulator: Emulator, project_id: str) -> Iterator:
    from shared.store import Store, use_store

    s = Store(firestore.Client(project=project_id), timeout_seconds=3)
    use_store(s)
    yield s
    use_store(None)
    record_queries(s)  # for the session-wide index coverage check


@pytest.fixture(scope="session")
def app():
    from tools.router import create_app

    return create_app()


@pytest.fixture
def api(app, store) -> Api:
    return Api(app.test_client(), store)


@pytest.fixture
def tenant(api: Api) -> Tenant:
    """An entitled account with an owner key and one key per agent role."""
    return api.tenant("Acme")


@pytest.fixture
def other_tenant(api: Api) -> Tenant:
    return api.tenant("Globex")
