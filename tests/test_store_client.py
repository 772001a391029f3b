"""The product's Firestore client (`firestore_client`): the library's client on a channel that polls a read on the
thread that asked for it. What it must keep true: reads and queries start no thread (the library's default channel
starts one per read), everything still works on it, and the production channel keeps the library's own options."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.cloud import firestore

from shared.adapters.firestore import Collection, Key, Store, Writes, firestore_client
from tests.conftest import Emulator


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the threads started while the test runs."""
    names: list[str] = []
    start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        names.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    yield names


def _reads(store: Store) -> Callable[[], Any]:
    keys = [Key(f"things/{i}") for i in range(3)]
    writes = Writes()
    for i, key in enumerate(keys):
        writes.set(key, {"n": i})
    store.commit(writes)

    def read() -> Any:
        assert [d.get("n") for d in store.get_many(keys).values()] == [0, 1, 2]
        assert len(store.query(Collection("things"), limit=10)) == 3

    return read


def test_reads_and_queries_start_no_thread(emulator: Emulator, project_id: str, started: list[str]) -> None:
    read = _reads(Store(firestore_client(project_id), timeout_seconds=10))
    read()  # the channel connects (gRPC may start its own threads once)
    started.clear()
    for _ in range(5):
        read()
    assert started == []


def test_the_library_default_starts_a_thread_per_read(emulator: Emulator, project_id: str,
                                                      started: list[str]) -> None:
    """What the product's channel saves, and proof that the test above can see a started thread."""
    read = _reads(Store(firestore.Client(project=project_id), timeout_seconds=10))
    read()
    started.clear()
    for _ in range(5):
        read()
    assert len(started) >= 10  # a batched read and a query, each on a thread of its own


def test_transactions_work_on_the_product_channel(emulator: Emulator, project_id: str) -> None:
    """The textbook read-write transaction (the bench's peer) runs on the same channel."""
    client = firestore_client(project_id)
    ref = client.document("things/counted")
    ref.set({"n": 0})

    @firestore.transactional
    def bump(transaction: Any) -> None:
        snap = ref.get(transaction=transaction)
        transaction.update(ref, {"n": snap.get("n") + 1})

    for _ in range(3):
        bump(client.transaction())
    assert ref.get().to_dict() == {"n": 3}


def test_production_channel_keeps_the_library_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the emulator the channel is made by the library's transport with its credentials, its keep-alive and
    message size options, plus ours; no RPC is made."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.firestore_v1 import base_client
    from google.cloud.firestore_v1.services.firestore.transports.grpc import FirestoreGrpcTransport

    import shared.adapters.firestore as adapter

    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    credentials = AnonymousCredentials()
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (credentials, "prod-project"))
    made: list[dict[str, Any]] = []
    create_channel = FirestoreGrpcTransport.create_channel

    def recording(host: str, **kwargs: Any) -> Any:
        channel = create_channel(host, **kwargs)
        made.append({"host": host, "channel": channel, **kwargs})
        return channel

    monkeypatch.setattr(FirestoreGrpcTransport, "create_channel", recording)
    client = adapter.firestore_client("prod-project")
    [channel] = made
    assert channel["host"] == "firestore.googleapis.com"
    assert channel["credentials"] is credentials
    assert set(base_client._DEFAULT_CHANNEL_OPTIONS) <= set(channel["options"])
    assert set(adapter._CHANNEL_OPTIONS) <= set(channel["options"])
    assert client._firestore_api._transport.grpc_channel is channel["channel"]  # not a channel of its own
    assert client.project == "prod-project"
    client.close()
