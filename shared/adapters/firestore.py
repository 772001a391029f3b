"""The one Firestore adapter. Everything the product reads or writes goes through `Store`, which

- names every document path (tenancy is structural: a workflow lives under its account),
- counts RPCs (tests assert on the count, never on the clock) and records each query's shape (for index checks),
- turns store failures into `Unavailable` (503) and lost precondition races into `WriteConflict`.

The Firestore client is created once per instance, on first use.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_transient_error
from google.cloud import firestore

from shared.domain.errors import Unavailable
from shared.runtime.config import config
from shared.runtime.instance import PerInstance

DocRef = firestore.DocumentReference
Increment = firestore.Increment
DeleteField = firestore.DELETE_FIELD
Snapshot = firestore.DocumentSnapshot


class WriteConflict(Exception):
    """A commit lost a race: a precondition failed or a document to create already exists. Nothing was written."""


@dataclass(frozen=True, slots=True)
class QueryShape:
    """What a query needs from the indexes: its collection, equality/array filters, range filters and order."""

    collection: str
    collection_group: bool
    filters: tuple[tuple[str, str], ...]
    order: tuple[tuple[str, str], ...]


@dataclass
class Writes:
    """The writes of one atomic commit, built up by the service layer and committed by `Store.commit`."""

    ops: list[tuple[str, DocRef, dict[str, Any] | None, datetime | None]] = field(default_factory=list)

    def create(self, ref: DocRef, data: dict[str, Any]) -> None:
        self.ops.append(("create", ref, data, None))

    def update(self, ref: DocRef, data: dict[str, Any], *, if_updated_at: datetime | None) -> None:
        """Update fields of an existing document; with `if_updated_at`, only if it is unchanged since then.
        (None is for commutative writes such as `firestore.Increment`, which need no precondition.)"""
        self.ops.append(("update", ref, data, if_updated_at))

    def set(self, ref: DocRef, data: dict[str, Any]) -> None:
        self.ops.append(("set", ref, data, None))

    def delete(self, ref: DocRef, *, if_updated_at: datetime | None = None) -> None:
        self.ops.append(("delete", ref, None, if_updated_at))

    def replace(self, ref: DocRef, data: dict[str, Any], seen: Snapshot) -> None:
        """Write `data` at `ref` only if it is still as `seen` (absent: create; present: same update time)."""
        if seen.exists:
            self.update(ref, data, if_updated_at=seen.update_time)
        else:
            self.create(ref, data)


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

    def account(self, account_id: str) -> DocRef:
        return self.client.collection("accounts").document(account_id)

    def api_keys(self) -> firestore.CollectionReference:
        return self.client.collection("api_keys")

    def api_key(self, key_hash: str) -> DocRef:
        return self.api_keys().document(key_hash)

    def workflows(self, account_id: str) -> firestore.CollectionReference:
        return self.account(account_id).collection("workflows")

    def workflow(self, account_id: str, workflow_id: str) -> DocRef:
        return self.workflows(account_id).document(workflow_id)

    def events(self, account_id: str, workflow_id: str) -> firestore.CollectionReference:
        return self.workflow(account_id, workflow_id).collection("events")

    def event(self, account_id: str, workflow_id: str, seq: int) -> DocRef:
        # Zero-padded so that document ids sort like seq.
        return self.events(account_id, workflow_id).document(f"{seq:010d}")

    def idempotency(self, account_id: str, key_hash: str) -> DocRef:
        return self.account(account_id).collection("idempotency").document(key_hash)

    # Hand-offs: one collection per account, so the work queue is one query and tenancy stays structural.
    def handoffs(self, account_id: str) -> firestore.CollectionReference:
        return self.account(account_id).collection("handoffs")

    def handoff(self, account_id: str, handoff_id: str) -> DocRef:
        return self.handoffs(account_id).document(handoff_id)

    def artifacts(self, account_id: str, workflow_id: str) -> firestore.CollectionReference:
        return self.workflow(account_id, workflow_id).collection("artifacts")

    def artifact(self, account_id: str, workflow_id: str, artifact_id: str) -> DocRef:
        return self.artifacts(account_id, workflow_id).document(artifact_id)

    # People: their memberships under the account (listing is one collection), a per-person document with the
    # accounts they belong to (authenticating a person is one read of it), and invitations under the account.
    def members(self, account_id: str) -> firestore.CollectionReference:
        return self.account(account_id).collection("members")

    def member(self, account_id: str, member_id: str) -> DocRef:
        return self.members(account_id).document(member_id)

    def invitations(self, account_id: str) -> firestore.CollectionReference:
        return self.account(account_id).collection("invitations")

    def invitation(self, account_id: str, invitation_id: str) -> DocRef:
        return self.invitations(account_id).document(invitation_id)

    def person(self, person_id: str) -> DocRef:
        return self.client.collection("people").document(person_id)

    def person_idempotency(self, person_id: str, key_hash: str) -> DocRef:
        """Idempotency-Key records of a person's requests that belong to no account yet (sign-up, accepting)."""
        return self.person(person_id).collection("idempotency").document(key_hash)

    # Billing: one record per Stripe event processed (exactly-once), the Stripe customer → account index, and the
    # events no account claimed (for an operator to look at).
    def stripe_event(self, event_id: str) -> DocRef:
        return self.client.collection("stripe_events").document(event_id)

    def stripe_customer(self, customer_id: str) -> DocRef:
        return self.client.collection("stripe_customers").document(customer_id)

    def stripe_unmatched(self, event_id: str) -> DocRef:
        return self.client.collection("stripe_unmatched").document(event_id)

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

    def get(self, ref: DocRef) -> Snapshot:
        with self._rpc("get"):
            snap = ref.get(retry=self._read_retry, timeout=self.timeout)
        self._count("read", 1)
        return snap

    def get_many(self, refs: list[DocRef]) -> dict[str, Snapshot]:
        """One batched read (BatchGetDocuments). Returns snapshots by document path, missing ones included."""
        with self._rpc("batch_get"):
            snaps = list(self.client.get_all(refs, retry=self._read_retry, timeout=self.timeout))
        self._count("read", len(refs))
        return {snap.reference.path: snap for snap in snaps}

    def batch(self, writes: Writes) -> firestore.WriteBatch:
        """`writes` as the client's WriteBatch, preconditions included (no RPC: `commit` sends it)."""
        batch = self.client.batch()
        for op, ref, data, if_updated_at in writes.ops:
            option = self.client.write_option(last_update_time=if_updated_at) if if_updated_at else None
            if op == "create":
                batch.create(ref, data)
            elif op == "update":
                batch.update(ref, data, option=option)
            elif op == "set":
                batch.set(ref, data)
            else:
                batch.delete(ref, option=option)
        return batch

    def commit(self, writes: Writes) -> None:
        """One atomic commit of all `writes`: all land or none does."""
        batch = self.batch(writes)
        with self._rpc("commit"):
            try:
                batch.commit(retry=None, timeout=self.timeout)
            except gexc.NotFound as exc:  # an update of a document a concurrent commit deleted: a lost race too
                raise WriteConflict(str(exc)) from exc
        self._count("written", len(writes.ops))

    def query(
        self,
        parent: firestore.CollectionReference | str,
        *,
        filters: list[tuple[str, str, Any]] = (),  # type: ignore[assignment]
        order: list[tuple[str, str]] = (),  # type: ignore[assignment]
        limit: int | None = None,
        start_after: dict[str, Any] | None = None,
    ) -> list[Snapshot]:
        """One query (one RPC). `parent` is a collection, or a collection id for a collection-group query."""
        group = isinstance(parent, str)
        q = self.client.collection_group(parent) if group else parent
        for field_path, op, value in filters:
            q = q.where(filter=firestore.FieldFilter(field_path, op, value))
        for field_path, direction in order:
            q = q.order_by(field_path, direction=direction)
        if start_after:
            q = q.start_after(start_after)
        if limit:
            q = q.limit(limit)
        shape = QueryShape(parent if group else parent.id, group, tuple((f, o) for f, o, _ in filters), tuple(order))
        with self._lock:
            self.queries.append(shape)
        with self._rpc("query"):
            found = list(q.stream(retry=self._read_retry, timeout=self.timeout))
        self._count("read", max(1, len(found)))
        return found


    def delete_matching(self, parent: firestore.CollectionReference, *,
                        filters: list[tuple[str, str, Any]] = (), page: int = 400) -> int:  # type: ignore[assignment]
        """Delete every document the query finds, one commit per page (a deleted workflow's children); returns how
        many. Unconditional deletes: safe to repeat, and two runs at once delete nothing twice."""
        deleted = 0
        while snaps := self.query(parent, filters=filters, limit=page):
            writes = Writes()
            for snap in snaps:
                writes.delete(snap.reference)
            self.commit(writes)
            deleted += len(snaps)
        return deleted

_store: PerInstance[Store] = PerInstance(lambda: Store(firestore.Client(project=config().project)))


def get_store() -> Store:
    """The instance's store, created on first use."""
    return _store.get()


def use_store(store: Store | None) -> None:
    """Point this process at another store (tests, tools). None: back to the configured one."""
    _store.set(store)
