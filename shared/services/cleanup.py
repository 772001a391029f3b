"""The scheduled cleanup: keeps the data healthy at any size, in bounded, resumable runs.

Each run does, in this order, as much as its budgets allow:
1. `leases`: hand-offs whose lease expired go back to PENDING (`attempts` kept).
2. `stale`: active workflows with no change for their plan's `stale_after_days` are cancelled, through the same
   validator and the same write path as any transition (`workflows.change_workflow`), actor `system:cleanup`.
3. `retention`: final workflows older than their plan's `retention_days` are deleted with their events,
   hand-offs, artifact records and stored objects.
4. `records`: idempotency records (and processed Stripe event records) past their retention are deleted. TTL
   policies do this in production; this is the fallback, and the only mechanism on the emulator.

Cost follows the work, not the data. Every candidate is found by an index-backed query, oldest first, with the
exact cutoff of one plan (a workflow carries the `plan` of its account, so each plan is one query): no query
returns anything that is not due. What a run finishes drops out of the next run's query, so no cursor is kept
between runs. So that the account's *current* plan decides, a candidate's account is read (batched, once per run)
unless the candidate is due on every plan; a workflow whose account changed plan and that is not due on the new
one is re-tagged instead (and then found by its new plan's query).

Every write is guarded by a precondition (or is an idempotent delete), so two overlapping runs never cancel or
delete anything twice, and neither fails.

Budgets: a document budget (documents read + written, counted at the store adapter) and a time budget, shared
fairly: each unit of work (a task, for one plan) gets an equal part of what is left, and what it does not use
passes to the next, so a large backlog in one never starves the others. What is left is reported.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.adapters.firestore import Collection, Doc, Key, Store, Writes
from shared.domain import plans
from shared.domain import workflow as domain
from shared.domain.errors import InvalidTransition, NotFound, Unavailable, VersionConflict
from shared.domain.models import Event, Workflow
from shared.domain.state_machine import STATES as STATE_SPECS
from shared.domain.state_machine import Role, State, StateKind, is_active
from shared.runtime import clock as wall_clock
from shared.runtime.config import config
from shared.services import artifacts, commits, handoffs, workflows
from shared.services.auth import Principal
from shared.services.changes import Change, stage

SYSTEM_ACTOR = "system:cleanup"
ACTIVE_STATES = [s.value for s, spec in STATE_SPECS.items() if spec.kind is StateKind.ACTIVE]
TASKS = ("leases", "stale", "retention", "records")
MAX_WRITES_PER_COMMIT = 500  # Firestore's limit for one commit

# What one candidate costs in documents (read by the query, its account perhaps, then written), used to size pages
# so that a run does not read what it cannot finish.
_CANCEL_COST = 6  # workflow + account read; workflow, event, its open hand-off, account counter written
_DELETE_COST = 3  # workflow + account read, workflow deleted; plus one write per event (known at the candidate)
_RECORD_COST = 2  # read, deleted
# An artifact still PENDING_UPLOAD this long after its upload URL expired will never be completed.
ABANDONED_UPLOAD_AFTER = timedelta(days=1)
_LEASE_COST = 3  # the hand-off read; it and the workflow's current_handoff written


# ---- configuration ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    max_documents: int = 5_000
    max_seconds: float = 240.0
    page_size: int = 200


@dataclass(frozen=True)
class Limits:
    stale_after_days: int
    retention_days: int


@dataclass(frozen=True)
class Policy:
    """Each plan's limits, as cleanup applies them."""

    plans: Mapping[str, Limits]

    @classmethod
    def from_catalog(cls, catalog: plans.Catalog | None = None) -> Policy:
        catalog = catalog or config().plans
        return cls({name: Limits(p.stale_after_days, p.retention_days) for name, p in sorted(catalog.plans.items())})


class CleanupRequest(BaseModel):
    """What a trigger may ask of one run (the scheduler sends `{}`: every task, default budgets)."""

    model_config = ConfigDict(extra="forbid")
    tasks: list[Literal["leases", "stale", "retention", "records"]] = Field(default_factory=lambda: list(TASKS))
    max_documents: Annotated[int, Field(ge=10, le=1_000_000)] = Budget.max_documents
    max_seconds: Annotated[float, Field(gt=0, le=3_000)] = Budget.max_seconds

    def budget(self) -> Budget:
        return Budget(max_documents=self.max_documents, max_seconds=self.max_seconds)


# ---- report ----------------------------------------------------------------------------------------------------


@dataclass
class TaskReport:
    done: int = 0  # leases reset, workflows cancelled or deleted, records deleted
    skipped: int = 0  # found but not changed: no longer due, or another run got there first
    retagged: int = 0  # workflows whose account changed plan: re-tagged, judged by the new plan later
    documents_read: int = 0
    documents_written: int = 0
    more: bool = False  # work may be left for the next run

    def as_dict(self) -> dict[str, Any]:
        return {"done": self.done, "skipped": self.skipped, "retagged": self.retagged,
                "documents_read": self.documents_read, "documents_written": self.documents_written,
                "more": self.more}


@dataclass
class Report:
    run_id: str
    now: datetime
    tasks: dict[str, TaskReport]
    stopped_by: str | None = None  # "documents", "time" or "unavailable", when a budget or the store stopped it
    seconds: float = 0.0

    @property
    def documents_read(self) -> int:
        return sum(t.documents_read for t in self.tasks.values())

    @property
    def documents_written(self) -> int:
        return sum(t.documents_written for t in self.tasks.values())

    @property
    def left_for_next_run(self) -> list[str]:
        return [name for name, t in self.tasks.items() if t.more]

    def log_line(self) -> dict[str, Any]:
        """The run's one JSON log line (Cloud Logging fields)."""
        done = ", ".join(f"{name} {t.done}" for name, t in self.tasks.items())
        left = ", ".join(self.left_for_next_run) or "nothing"
        return {
            "severity": "ERROR" if self.stopped_by == "unavailable" else "INFO",
            "message": f"cleanup {self.run_id}: {done}; left for the next run: {left}",
            "function": "cleanup",
            "run_id": self.run_id,
            "now": self.now.isoformat(),
            "tasks": {name: t.as_dict() for name, t in self.tasks.items()},
            "left_for_next_run": self.left_for_next_run,
            "stopped_by": self.stopped_by,
            "documents_read": self.documents_read,
            "documents_written": self.documents_written,
            "latency_ms": round(self.seconds * 1000, 3),
        }


class _NotDue(Exception):
    """Raised from a decision when, on a fresh read, the candidate no longer qualifies."""


# ---- one run ---------------------------------------------------------------------------------------------------


class _Run:
    """One run's budgets. Documents are counted at the store adapter, so each concurrent run needs its own `Store`
    (a deployed instance runs one cleanup at a time: max instances 1, concurrency 1)."""

    def __init__(self, store: Store, now: datetime, policy: Policy, budget: Budget,
                 clock: Callable[[], float]) -> None:
        self.store, self.now, self.policy, self.budget, self.clock = store, now, policy, budget, clock
        self.started = clock()
        self.deadline = self.started + budget.max_seconds
        self._start = self._docs()
        self.stopped_by: str | None = None
        self._share_docs = 0
        self._share_start = 0
        self._share_deadline = 0.0
        self.accounts: dict[str, Doc] = {}

    def _docs(self) -> int:
        return self.store.documents["read"] + self.store.documents["written"]

    def share(self, units_left: int) -> None:
        """Start a unit of work with an equal part of what is left of both budgets."""
        self._share_start = self._docs()
        self._share_docs = max(0, self.budget.max_documents - (self._share_start - self._start)) // units_left
        now = self.clock()
        self._share_deadline = now + max(0.0, self.deadline - now) / units_left

    def room(self, cost: int = 1) -> int:
        """How many more items of `cost` documents this unit may afford (0: it must stop)."""
        if self.clock() >= self._share_deadline:
            return 0
        return max(0, self._share_docs - (self._docs() - self._share_start)) // cost

    def halt(self, task: TaskReport) -> None:
        """Stop this unit for lack of budget: what is left is the next run's."""
        task.more = True
        self.stopped_by = self.stopped_by or ("time" if self.clock() >= self._share_deadline else "documents")

    def pages(self, collection: Collection, filters: list[tuple[str, str, Any]], order_field: str, cost: int,
              task: TaskReport) -> Iterator[list[Doc]]:
        """Pages of due candidates, oldest first, each no larger than what the unit can still afford."""
        cursor: dict[str, Any] | None = None
        while True:
            limit = min(self.budget.page_size, self.room(cost))
            if limit <= 0:
                self.halt(task)
                return
            page = self.store.query(collection, filters=filters, order=[(order_field, "ASCENDING")], limit=limit,
                                    start_after=cursor)
            if page:
                yield page
            if len(page) < limit:
                return
            cursor = {order_field: page[-1].get(order_field), "__name__": page[-1].key}

    def current_plans(self, page: list[Doc], due_on_every_plan: datetime) -> None:
        """One batched read of the accounts of `page` that this run has not read yet, for the candidates whose
        account's plan can matter: one idle since before `due_on_every_plan` is due whatever the plan."""
        missing = sorted({d.account_id for d in page if d.account_id and d.get("updated_at") >= due_on_every_plan}
                         - self.accounts.keys())
        if missing:
            docs = self.store.get_many([self.store.account(a) for a in missing])
            self.accounts.update({a: docs[self.store.account(a)] for a in missing})

    def plan_now(self, doc: Doc) -> str:
        """The candidate's account's plan now (its tag if the account is gone or has no plan)."""
        account = self.accounts.get(doc.account_id or "")
        current = account.get("plan") if account is not None else None
        return current if current in self.policy.plans else doc.get("plan")


Unit = tuple[str, Callable[[_Run, TaskReport], None]]


def run(
    store: Store,
    *,
    now: datetime | None = None,
    budget: Budget | None = None,
    policy: Policy | None = None,
    tasks: Iterable[str] = TASKS,
    clock: Callable[[], float] = time.monotonic,
) -> Report:
    """One cleanup run. `now` is the reference time of every cutoff (default: the product's clock). `clock` times
    the run against its time budget."""
    now = now or wall_clock.now()
    policy = policy or Policy.from_catalog()
    ctx = _Run(store, now, policy, budget or Budget(), clock)
    wanted = set(tasks)
    selected = [t for t in TASKS if t in wanted]
    report = Report(run_id="cln_" + secrets.token_hex(6), now=now, tasks={t: TaskReport() for t in selected})
    units: list[Unit] = []
    for task in selected:
        if task == "leases":
            units.append((task, _expired_leases))
        elif task == "stale":
            units += [(task, _stale_workflows(plan)) for plan in policy.plans]
        elif task == "retention":
            units += [(task, _retention(plan)) for plan in policy.plans]
        else:
            units += [(task, _expired_idempotency_records), (task, _expired_stripe_event_records),
                      (task, _expired_unmatched_stripe_events), (task, _abandoned_uploads)]
    for index, (task, work) in enumerate(units):
        counted = (store.documents["read"], store.documents["written"])
        ctx.share(len(units) - index)
        try:
            work(ctx, report.tasks[task])
        except Unavailable:
            ctx.stopped_by = "unavailable"
            for name in {t for t, _ in units[index:]}:
                report.tasks[name].more = True
            break
        finally:
            report.tasks[task].documents_read += store.documents["read"] - counted[0]
            report.tasks[task].documents_written += store.documents["written"] - counted[1]
    report.stopped_by = ctx.stopped_by
    report.seconds = clock() - ctx.started
    return report


def _retag(store: Store, doc: Doc, plan: str) -> bool:
    """The account changed plan: tag the workflow with the new one (unless it changed meanwhile), through the one
    write path (the open hand-off's copy of the workflow follows)."""
    if doc.account_id is None:
        return False
    workflow = Workflow.model_validate(doc.data)
    writes = Writes()
    stage(store, writes, Change(doc.account_id, workflow, workflow.model_copy(update={"plan": plan}), guard=doc))
    return commits.write_once(store, writes)


# ---- 1. expired leases -----------------------------------------------------------------------------------------


def _expired_leases(ctx: _Run, task: TaskReport) -> None:
    """Claims whose lease ran out go back to PENDING, `attempts` kept (the hand-off service's own precondition
    writes, which keep the workflow's `current_handoff` in the same commit)."""
    while True:
        limit = min(ctx.budget.page_size, ctx.room(_LEASE_COST))
        if limit <= 0:
            ctx.halt(task)
            return
        released = handoffs.release_expired_leases(ctx.store, now=ctx.now, limit=limit)
        task.done += released
        if released < limit:  # none left, or the rest were claimed again meanwhile: the next run looks again
            return


# ---- 2. stale workflows ----------------------------------------------------------------------------------------


def cancel_stale(store: Store, seen: Doc, *, cutoff: datetime, reason: str) -> bool:
    """Cancel the workflow in `seen` if it is still active and unchanged since before `cutoff`: the same validator
    and the same write path as any transition; on a lost race it re-reads and decides again. True if cancelled."""
    if seen.account_id is None:
        return False
    principal = Principal(account_id=seen.account_id, key_id=SYSTEM_ACTOR, roles=frozenset({Role.OWNER}))

    def decide(workflow: Workflow, _: dict[Key, Doc], at: datetime) -> tuple[Workflow, Event]:
        if not is_active(workflow.state) or workflow.updated_at >= cutoff:
            raise _NotDue  # it moved, or another run cancelled it, since the query found it
        return domain.transition(workflow, State.CANCELLED, roles=principal.roles, actor=SYSTEM_ACTOR,
                                 reason=reason, note="", now=at)

    try:
        workflows.change_workflow(store, principal, seen.id, None, decide, seen=seen)
    except (_NotDue, InvalidTransition, NotFound, VersionConflict):
        return False
    return True


def _stale_workflows(plan: str) -> Callable[[_Run, TaskReport], None]:
    def work(ctx: _Run, task: TaskReport) -> None:
        days = ctx.policy.plans[plan].stale_after_days
        filters = [("plan", "==", plan), ("state", "in", ACTIVE_STATES),
                   ("updated_at", "<", ctx.now - timedelta(days=days))]
        longest = max(limits.stale_after_days for limits in ctx.policy.plans.values())
        for page in ctx.pages(Store.every_account("workflows"), filters, "updated_at", _CANCEL_COST, task):
            ctx.current_plans(page, ctx.now - timedelta(days=longest))
            for doc in page:
                if not ctx.room(_CANCEL_COST):
                    ctx.halt(task)
                    return
                current = ctx.plan_now(doc)
                limit = ctx.policy.plans[current].stale_after_days
                cutoff = ctx.now - timedelta(days=limit)
                if current != plan and doc.get("updated_at") >= cutoff:
                    task.retagged += int(_retag(ctx.store, doc, current))
                    continue
                idle = (ctx.now - doc.get("updated_at")).days
                reason = (f"Cancelled by cleanup: no change for {idle} days; on the {current} plan an active "
                          f"workflow is cancelled after {limit} days without a change.")
                if cancel_stale(ctx.store, doc, cutoff=cutoff, reason=reason):
                    task.done += 1
                else:
                    task.skipped += 1

    return work


# ---- 3. retention ----------------------------------------------------------------------------------------------


def delete_workflow(store: Store, seen: Doc) -> bool:
    """Delete a final workflow and everything that is its: stored objects and artifact records (bytes first), its
    hand-offs, its events (by their known ids: no reads), then the workflow document last and only if unchanged
    since `seen`. Every step is idempotent, so a run that stops half-way is finished by the next one, and of two
    overlapping runs exactly one deletes the workflow. True if this call deleted it."""
    account_id = seen.account_id
    if account_id is None:
        return False
    if store.query(store.artifacts(account_id, seen.id), limit=1):  # no record, no object: records go last
        artifacts.delete_workflow_artifacts(store, artifacts.object_store(), account_id, seen.id)
    handoffs.delete_workflow_handoffs(store, account_id, seen.id)
    children = [store.event(account_id, seen.id, seq) for seq in range(int(seen.get("version") or 0), 0, -1)]
    step = MAX_WRITES_PER_COMMIT - 1
    chunks = [children[i:i + step] for i in range(0, len(children), step)] or [[]]
    for chunk in chunks[:-1]:
        writes = Writes()
        for key in chunk:
            writes.delete(key)
        commits.write_once(store, writes)  # unconditional deletes: they cannot lose a race
    writes = Writes()
    for key in chunks[-1]:
        writes.delete(key)
    writes.delete(seen.key, if_updated_at=seen.update_time)
    return commits.write_once(store, writes)  # a lost race: another run deleted it first (nothing twice)


def _retention(plan: str) -> Callable[[_Run, TaskReport], None]:
    def work(ctx: _Run, task: TaskReport) -> None:
        days = ctx.policy.plans[plan].retention_days
        filters = [("plan", "==", plan), ("final", "==", True), ("updated_at", "<", ctx.now - timedelta(days=days))]
        longest = max(limits.retention_days for limits in ctx.policy.plans.values())
        for page in ctx.pages(Store.every_account("workflows"), filters, "updated_at", _DELETE_COST, task):
            ctx.current_plans(page, ctx.now - timedelta(days=longest))
            for doc in page:
                cost = _DELETE_COST + int(doc.get("version") or 0)
                if not ctx.room(cost) and not (task.done == task.skipped == 0 and ctx.room(1)):
                    # (a workflow larger than the whole share is still deleted when it comes first: progress)
                    ctx.halt(task)
                    return
                current = ctx.plan_now(doc)
                if current != plan and doc.get("updated_at") >= ctx.now - timedelta(
                        days=ctx.policy.plans[current].retention_days):
                    task.retagged += int(_retag(ctx.store, doc, current))
                    continue
                if delete_workflow(ctx.store, doc):
                    task.done += 1
                else:
                    task.skipped += 1

    return work


# ---- 4. expired records ----------------------------------------------------------------------------------------


def delete_records(store: Store, page: list[Doc]) -> int:
    """Delete the records of `page` unless rewritten since they were read (a reused Idempotency-Key refreshes its
    record). One commit for the page; if a precondition fails, one commit per record. Returns how many it deleted."""
    writes = Writes()
    for doc in page:
        writes.delete(doc.key, if_updated_at=doc.update_time)
    if commits.write_once(store, writes):
        return len(page)
    deleted = 0
    for doc in page:
        one = Writes()
        one.delete(doc.key, if_updated_at=doc.update_time)
        deleted += commits.write_once(store, one)
    return deleted


def _expire(ctx: _Run, task: TaskReport, collection: Collection) -> None:
    for page in ctx.pages(collection, [("expires_at", "<", ctx.now)], "expires_at", _RECORD_COST, task):
        deleted = delete_records(ctx.store, page)
        task.done += deleted
        task.skipped += len(page) - deleted


def _expired_idempotency_records(ctx: _Run, task: TaskReport) -> None:
    """Idempotency-Key records (every account's: a collection-group query), kept 24 h."""
    _expire(ctx, task, Store.every_account("idempotency"))


def _expired_stripe_event_records(ctx: _Run, task: TaskReport) -> None:
    """Processed Stripe event records (the exactly-once ledger), kept `EVENT_RECORD_TTL`."""
    _expire(ctx, task, ctx.store.stripe_events())


def _expired_unmatched_stripe_events(ctx: _Run, task: TaskReport) -> None:
    """Stripe events no account claimed, kept for an operator for `EVENT_RECORD_TTL` like the ledger."""
    _expire(ctx, task, ctx.store.stripe_unmatched_events())


def _abandoned_uploads(ctx: _Run, task: TaskReport) -> None:
    """Artifact records (and any partial bytes) whose upload was never completed (every account's: a
    collection-group query)."""
    filters = [("status", "==", "PENDING_UPLOAD"), ("upload_expires_at", "<", ctx.now - ABANDONED_UPLOAD_AFTER)]
    for page in ctx.pages(Store.every_account("artifacts"), filters, "upload_expires_at", _RECORD_COST, task):
        objects = artifacts.object_store()  # boto3 only when there is something to delete
        for doc in page:
            if artifacts.delete_abandoned_upload(ctx.store, objects, doc):
                task.done += 1
            else:
                task.skipped += 1
