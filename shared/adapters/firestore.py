"""The one Firestore adapter. Everything the product reads or writes goes through `Store`, which

- names every document path (tenancy is structural: a workflow lives under its account) and hands services opaque
  `Key`s and `Doc`s (a document's fields and update time), so no Firestore type or path leaves this module,
- counts RPCs (tests assert on the count, never on the clock) and records each query's shape (for index checks),
- turns store failures into `Unavailable` (503) and lost precondition races into `WriteConflict`.

The Firestore client is created once per instance, on first use.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_transient_error
from google.cloud import firestore
from google.cloud.firestore_v1 import base_client
from google.cloud.firestore_v1.services.firestore import client as gapic
from google.cloud.firestore_v1.services.firestore.transports.grpc import FirestoreGrpcTransport

from shared.domain.errors import Unavailable
from shared.runtime.config import config
from shared.runtime.instance import PerInstance


@dataclass(frozen=True, slots=True)
class Key:
    """Where one document lives. Services get keys from the `Store`'s path methods and hand them back; what a path
    looks like is this module's business alone."""

    path: str

    @property
    def id(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Collection:
    """A collection to query: one collection's path, or (with `group`) a collection id across every account."""

    path: str
    group: bool = False

    @property
    def id(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Doc:
    """A document as read: its fields (None: it does not exist) and the time of its last write, which a later write
    may require to be unchanged (`if_updated_at`)."""

    key: Key
    data: dict[str, Any] | None
    update_time: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.data is not None

    @property
    def id(self) -> str:
        return self.key.id

    @property
    def account_id(self) -> str | None:
        """The account the document belongs to (None for the global collections). Tenancy is structural: an
        account's documents live under accounts/{account_id}/."""
        parts = self.key.path.split("/")
        return parts[1] if parts[0] == "accounts" and len(parts) >= 2 else None

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default) if self.data is not None else default


def _doc(snap: firestore.DocumentSnapshot) -> Doc:
    return Doc(Key(snap.reference.path), snap.to_dict() if snap.exists else None,
               snap.update_time if snap.exists else None)


class WriteConflict(Exception):
    """A commit lost a race: a precondition failed or a document to create already exists. Nothing was written."""


@dataclass(frozen=True, slots=True)
class QueryShape:
    """What a query needs from the indexes: its collection, equality/array filters, range filters and order."""

    collection: str
    collection_group: bool
    filters: tuple[tuple[str, str], ...]
    order: tuple[tuple[str, str], ...]


Op = tuple[str, Key, dict[str, Any] | None, datetime | None]


@dataclass
class Writes:
    """The writes of one atomic commit, built up by the service layer and committed by `Store.commit`."""

    ops: list[Op] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ops)

    def create(self, key: Key, data: dict[str, Any]) -> None:
        self.ops.append(("create", key, data, None))

    def update(self, key: Key, data: dict[str, Any], *, if_updated_at: datetime | None,
               remove: Iterable[str] = (), add: Mapping[str, int | float] | None = None) -> None:
        """Update fields of an existing document; with `if_updated_at`, only if it is unchanged since then.
        `remove`: fields to delete. `add`: numbers to add to fields server-side (commutative, so they need no
        precondition of their own: a counter kept in step without reading it)."""
        fields = dict(data)
        fields.update({name: firestore.DELETE_FIELD for name in remove})
        fields.update({name: firestore.Increment(n) for name, n in (add or {}).items()})
        self.ops.append(("update", key, fields, if_updated_at))

    def set(self, key: Key, data: dict[str, Any]) -> None:
        self.ops.append(("set", key, data, None))

    def add_to(self, key: Key, add: Mapping[str, int], *, fields: Mapping[str, Any] | None = None) -> None:
        """Add numbers to fields server-side, making the document (with `fields`) if it does not exist yet: a
        counter kept exactly in the same commit as what it counts, without reading it (increments commute)."""
        data = dict(fields or {})
        data.update({name: firestore.Increment(n) for name, n in add.items()})
        self.ops.append(("merge", key, data, None))

    def delete(self, key: Key, *, if_updated_at: datetime | None = None) -> None:
        self.ops.append(("delete", key, None, if_updated_at))

    def replace(self, key: Key, data: dict[str, Any], seen: Doc) -> None:
        """Write `data` at `key` only if it is still as `seen` (absent: create; present: same update time)."""
        if seen.exists:
            self.update(key, data, if_updated_at=seen.update_time)
        else:
            self.create(key, data)


_CONFLICTS = (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Aborted, gexc.Conflict)
_UNREACHABLE = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError, gexc.InternalServerError,
                gexc.Unknown, gexc.TooManyRequests, gexc.ResourceExhausted, gexc.GatewayTimeout)


class Store:
    def __init__(self, client: firestore.Client, timeout_seconds: float | None = None) -> None:
        self.client = client
        self.timeout = timeout_seconds if timeout_seconds is not None else config().store_timeout_seconds
        # Reads are retried on transient errors within the timeout; commits are not (a retried commit whose
        # first try landed would fail its precondition and be misreported). Clients retry with Idempotency-Key.
        self._read_retry = Retry(initial=0.05, maximum=1.0, multiplier=2.0, predicate=if_transient_error,
                                 timeout=self.timeout)
        self.rpcs: Counter[str] = Counter()
        # Documents read and written, as Firestore bills them (a query that returns nothing still costs one read):
        # the cleanup benchmark and budgets count these.
        self.documents: Counter[str] = Counter()
        self.queries: list[QueryShape] = []
        self._lock = threading.Lock()

    # ---- paths ----------------------------------------------------------------------------------------------

    def account(self, account_id: str) -> Key:
        return Key(f"accounts/{account_id}")

    def api_keys(self) -> Collection:
        return Collection("api_keys")

    def api_key(self, key_hash: str) -> Key:
        return Key(f"api_keys/{key_hash}")

    def workflows(self, account_id: str) -> Collection:
        return Collection(f"accounts/{account_id}/workflows")

    def workflow(self, account_id: str, workflow_id: str) -> Key:
        return Key(f"accounts/{account_id}/workflows/{workflow_id}")

    def events(self, account_id: str, workflow_id: str) -> Collection:
        return Collection(f"accounts/{account_id}/workflows/{workflow_id}/events")

    def event(self, account_id: str, workflow_id: str, seq: int) -> Key:
        # Zero-padded so that document ids sort like seq.
        return Key(f"accounts/{account_id}/workflows/{workflow_id}/events/{seq:010d}")

    def usage_month(self, account_id: str, month: str) -> Key:
        """The account's usage totals of one month (YYYY-MM, UTC)."""
        return Key(f"accounts/{account_id}/usage_months/{month}")

    def idempotency(self, account_id: str, key_hash: str) -> Key:
        return Key(f"accounts/{account_id}/idempotency/{key_hash}")

    # Hand-offs: one collection per account, so the work queue is one query and tenancy stays structural.
    def handoffs(self, account_id: str) -> Collection:
        return Collection(f"accounts/{account_id}/handoffs")

    def handoff(self, account_id: str, handoff_id: str) -> Key:
        return Key(f"accounts/{account_id}/handoffs/{handoff_id}")

    def artifacts(self, account_id: str, workflow_id: str) -> Collection:
        return Collection(f"accounts/{account_id}/workflows/{workflow_id}/artifacts")

    def artifact(self, account_id: str, workflow_id: str, artifact_id: str) -> Key:
        return Key(f"accounts/{account_id}/workflows/{workflow_id}/artifacts/{artifact_id}")

    # People: their memberships under the account (listing is one collection), a per-person document with the
    # accounts they belong to (authenticating a person is one read of it), and invitations under the account.
    def members(self, account_id: str) -> Collection:
        return Collection(f"accounts/{account_id}/members")

    def member(self, account_id: str, member_id: str) -> Key:
        return Key(f"accounts/{account_id}/members/{member_id}")

    def invitations(self, account_id: str) -> Collection:
        return Collection(f"accounts/{account_id}/invitations")

    def invitation(self, account_id: str, invitation_id: str) -> Key:
        return Key(f"accounts/{account_id}/invitations/{invitation_id}")

    def person(self, person_id: str) -> Key:
        return Key(f"people/{person_id}")

    def person_idempotency(self, person_id: str, key_hash: str) -> Key:
        """Idempotency-Key records of a person's requests that belong to no account yet (sign-up, accepting)."""
        return Key(f"people/{person_id}/idempotency/{key_hash}")

    # Billing: one record per Stripe event processed (exactly-once), the Stripe customer → account index, and the
    # events no account claimed (for an operator to look at).
    def stripe_events(self) -> Collection:
        return Collection("stripe_events")

    def stripe_event(self, event_id: str) -> Key:
        return Key(f"stripe_events/{event_id}")

    def stripe_customer(self, customer_id: str) -> Key:
        return Key(f"stripe_customers/{customer_id}")

    def stripe_unmatched_events(self) -> Collection:
        return Collection("stripe_unmatched")

    def stripe_unmatched(self, event_id: str) -> Key:
        return Key(f"stripe_unmatched/{event_id}")

    @staticmethod
    def every_account(collection_id: str) -> Collection:
        """One collection of every account at once (a collection-group query: the cleanup's)."""
        return Collection(collection_id, group=True)

    def _ref(self, key: Key) -> firestore.DocumentReference:
        return self.client.document(key.path)

    # ---- RPCs -----------------------------------------------------------------------------------------------

    def _count(self, kind: str, n: int) -> None:
        with self._lock:
            self.documents[kind] += n

    @contextmanager
    def _rpc(self, name: str) -> Iterator[None]:
        with self._lock:
            self.rpcs[name] += 1
        try:
            yield
        except _CONFLICTS as exc:
            if name == "commit":
                raise WriteConflict(str(exc)) from exc
            # A read refused with FAILED_PRECONDITION is a query whose index is missing or still building: the
            # service cannot answer yet, which the caller hears as 503 (and the log line names the cause).
            raise Unavailable("The store cannot serve this read yet (an index is missing or building).") from exc
        except _UNREACHABLE as exc:
            raise Unavailable("The document store did not answer in time; retry shortly.") from exc

    def get(self, key: Key) -> Doc:
        with self._rpc("get"):
            snap = self._ref(key).get(retry=self._read_retry, timeout=self.timeout)
        self._count("read", 1)
        return _doc(snap)

    def get_many(self, keys: Iterable[Key]) -> dict[Key, Doc]:
        """One batched read (BatchGetDocuments). Returns every document asked for, missing ones included."""
        keys = list(dict.fromkeys(keys))
        with self._rpc("batch_get"):
            snaps = list(self.client.get_all([self._ref(k) for k in keys], retry=self._read_retry,
                                             timeout=self.timeout))
        self._count("read", len(keys))
        return {doc.key: doc for doc in map(_doc, snaps)}

    def batch(self, writes: Writes) -> firestore.WriteBatch:
        """`writes` as the client's WriteBatch, preconditions included (no RPC: `commit` sends it)."""
        batch = self.client.batch()
        for op, key, data, if_updated_at in writes.ops:
            ref = self._ref(key)
            option = self.client.write_option(last_update_time=if_updated_at) if if_updated_at else None
            if op == "create":
                batch.create(ref, data)
            elif op == "update":
                batch.update(ref, data, option=option)
            elif op == "set":
                batch.set(ref, data)
            elif op == "merge":
                batch.set(ref, data, merge=True)
            else:
                batch.delete(ref, option=option)
        return batch

    def commit(self, writes: Writes) -> None:
        """One atomic commit of all `writes`: all land or none does. Services commit through
        `shared.services.commits`, which owns what a lost race (`WriteConflict`) means."""
        batch = self.batch(writes)
        with self._rpc("commit"):
            try:
                batch.commit(retry=None, timeout=self.timeout)
            except gexc.NotFound as exc:  # an update of a document a concurrent commit deleted: a lost race too
                raise WriteConflict(str(exc)) from exc
        self._count("written", len(writes.ops))

    def query(
        self,
        parent: Collection,
        *,
        filters: Iterable[tuple[str, str, Any]] = (),
        order: Iterable[tuple[str, str]] = (),
        limit: int | None = None,
        start_after: Mapping[str, Any] | None = None,
    ) -> list[Doc]:
        """One query (one RPC). `start_after`: the ordered fields' values of the last document of the previous page
        (`__name__` may be given as its `Key`)."""
        filters, order = list(filters), list(order)
        q = self.client.collection_group(parent.path) if parent.group else self.client.collection(parent.path)
        for field_path, op, value in filters:
            q = q.where(filter=firestore.FieldFilter(field_path, op, value))
        for field_path, direction in order:
            q = q.order_by(field_path, direction=direction)
        if start_after:
            q = q.start_after({k: self._ref(v) if isinstance(v, Key) else v for k, v in start_after.items()})
        if limit:
            q = q.limit(limit)
        shape = QueryShape(parent.id, parent.group, tuple((f, o) for f, o, _ in filters), tuple(order))
        with self._lock:
            self.queries.append(shape)
        with self._rpc("query"):
            found = list(q.stream(retry=self._read_retry, timeout=self.timeout))
        self._count("read", max(1, len(found)))
        return [_doc(s) for s in found]


# Reads are server-streaming RPCs (BatchGetDocuments, RunQuery). By default gRPC's Python API starts a new thread for
# each such call to poll it and hands every answer across threads; the store always drains a read on the thread that
# asked for it, so that thread polls the call itself: no thread start and fewer thread hand-offs per read.
# `make bench` (bench.transitions) measures a batched read both ways in the same run.
_CHANNEL_OPTIONS = [(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)]


def firestore_client(project: str) -> firestore.Client:
    """The product's Firestore client for `project`: the library's client, on a channel made as the library makes
    it (the emulator's when FIRESTORE_EMULATOR_HOST is set) with `_CHANNEL_OPTIONS` added. No RPC is made here."""
    client = firestore.Client(project=project)
    if client._emulator_host is not None:  # the library's emulator channel: insecure, any token is the owner
        channel = grpc.insecure_channel(client._emulator_host, options=[
            ("Authorization", "Bearer owner"), *base_client._GRPC_MSG_SIZE_OPTIONS, *_CHANNEL_OPTIONS])
    else:
        channel = FirestoreGrpcTransport.create_channel(
            client._target, credentials=client._credentials,
            options=[*base_client._DEFAULT_CHANNEL_OPTIONS, *_CHANNEL_OPTIONS])
    # What the client's own lazy `_firestore_api` would build, on this channel (tests/test_store_client.py fails if a
    # new version of the library stops using it).
    client._firestore_api_internal = gapic.FirestoreClient(
        transport=FirestoreGrpcTransport(host=client._target, channel=channel), client_options=client._client_options)
    return client


_store: PerInstance[Store] = PerInstance(lambda: Store(firestore_client(config().project)))


def get_store() -> Store:
    """The instance's store, created on first use."""
    return _store.get()


def use_store(store: Store | None) -> None:
    """Point this process at another store (tests, tools). None: back to the configured one."""
    _store.set(store)
