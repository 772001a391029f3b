"""Index coverage across the whole test session: every query any test's store ran is recorded (the store adapter
records each query's shape), and at the end of the session each shape is checked against
`infra/firestore.indexes.json`. A shape production would refuse fails the session, with the index to add.

`tests/conftest.py` hands each test's store to `record` and exposes `pytest_sessionfinish`.
"""

from __future__ import annotations

import threading

import pytest

from shared.adapters.firestore import QueryShape, Store
from tools import firestore_indexes

RECORDED: set[QueryShape] = set()
_lock = threading.Lock()


def record(store: Store) -> None:
    with _lock:
        RECORDED.update(store.queries)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not RECORDED:
        return
    missing = firestore_indexes.uncovered(RECORDED)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if missing:
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line("INDEX COVERAGE FAILED: " + firestore_indexes.explain(missing), red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line(f"index coverage: {len(RECORDED)} query shapes recorded, each served by an index")
