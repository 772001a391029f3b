"""How the store adapter classifies what Firestore answers."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.query import Query

from shared.adapters.firestore import Store, WriteConflict, Writes
from shared.domain.errors import Unavailable


def test_a_query_refused_for_a_missing_index_is_unavailable_not_a_conflict(store: Store, monkeypatch):
    """Production answers FAILED_PRECONDITION to a query whose index is missing or still building (the emulator
    never does, so that answer is put in at the client's edge): a 503 to retry, not a lost write race."""

    def refuse(*args, **kwargs):
        raise gexc.FailedPrecondition("The query requires an index.")

    monkeypatch.setattr(Query, "stream", refuse)
    with pytest.raises(Unavailable):
        store.query(store.workflows("acct"), order=[("updated_at", "DESCENDING")])


def test_a_stale_precondition_on_commit_is_a_write_conflict(store: Store):
    ref = store.account("acct")
    first = Writes()
    first.create(ref, {"n": 1})
    store.commit(first)
    seen = store.get(ref)
    bump = Writes()
    bump.update(ref, {"n": 2}, if_updated_at=seen.update_time)
    store.commit(bump)
    stale = Writes()
    stale.update(ref, {"n": 3}, if_updated_at=seen.update_time)
    with pytest.raises(WriteConflict):
        store.commit(stale)
    again = Writes()
    again.create(ref, {"n": 4})
    with pytest.raises(WriteConflict):
        store.commit(again)
    assert store.get(ref).get("n") == 2
