"""Workflow use cases. Each loads what it needs in one batched read, asks the domain (`shared.domain.workflow`) what to
do, and writes the result in one atomic commit guarded by preconditions (no read-write transactions: they back
off for a second or more under contention, and agents racing on one workflow is normal here)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from shared.adapters.firestore import DeleteField, Increment, Snapshot, Store, Writes
from shared.domain import artifact as artifact_domain
from shared.domain import billing, plans
from shared.domain import handoff as handoff_domain
from shared.domain import workflow as domain
from shared.domain.errors import Forbidden, NotFound, ValidationFailed, VersionConflict
from shared.domain.models import (
    Artifact,
    ChangeResult,
    CreateWorkflowRequest,
    Event,
    EventPage,
    Handoff,
    RollbackRequest,
    TransitionRequest,
    Workflow,
    WorkflowPage,
)
from shared.domain.state_machine import Role, State, is_active
from shared.runtime import clock
from shared.runtime.config import config
from shared.services.auth import Principal
from shared.services.commits import commit_change
from shared.services.idempotency import IdempotencyRequest, Outcome
from shared.services.pagination import decode_page_token, encode_page_token

# A lost race re-reads and re-validates; bounded so a hot workflow answers 409 rather than spinning.
MAX_ATTEMPTS = 10
_CHANGED_FIELDS = frozenset({"state", "role", "version", "retry_count", "updated_at", "final", "current_handoff",
                             "outgoing_artifacts"})


def now() -> datetime:
    return clock.now()


def _event_doc(event: Event) -> dict:
    return event.model_dump(mode="python")


def _load_workflow(snapshot: Snapshot | None) -> Workflow:
    if snapshot is None or not snapshot.exists:
        raise NotFound("No workflow with that id.")
    return Workflow.model_validate(snapshot.to_dict())


# ---- create ------------------------------------------------------------------------------------------------------


def create_workflow(
    store: Store, principal: Principal, request: CreateWorkflowRequest, idem: IdempotencyRequest | None
) -> Outcome:
    if not principal.is_owner:
        raise Forbidden("Only an OWNER may create workflows.")
    account_ref = store.account(principal.account_id)

    def decide(snaps: dict[str, Snapshot], at: datetime) -> tuple[dict, Writes]:
        account = snaps[account_ref.path]
        # Entitlement (402) and plan quota (403) from the account just read: no extra round trip. The account's
        # update-time precondition below makes the quota hold when creates race.
        billing.admit_workflow(account.to_dict() if account.exists else None, plans.catalog(), at,
                               config().billing_grace_days)
        workflow, event = domain.create(request, account_id=principal.account_id, actor=principal.actor, now=at,
                                        plan=account.get("plan") or plans.DEV, actor_email=principal.actor_email)
        handoffs = handoff_domain.on_create(workflow, event, at)  # the first role's work, in the same commit
        workflow = handoffs.workflow
        writes = Writes()
        # The account's update time guards the count, so concurrent creates are serialised (quota-safe).
        writes.update(account_ref, {"active_workflows": (account.get("active_workflows") or 0) + 1},
                      if_updated_at=account.update_time)
        writes.create(store.workflow(principal.account_id, workflow.id), workflow.to_document())
        writes.create(store.event(principal.account_id, workflow.id, 1), _event_doc(event))
        stage_handoffs(store, principal.account_id, handoffs, writes)
        return domain.view(workflow, principal.roles).model_dump(mode="json"), writes

    # Every create commits against the account's update time, so N creates racing on one account take up to N
    # rounds (one wins per round): allow more rounds than a single workflow's changes need.
    return commit_change(store, principal.account_id, idem, [account_ref], decide, attempts=4 * MAX_ATTEMPTS,
                         exhausted="Too many workflows are being created on this account at once; retry.")


# ---- read --------------------------------------------------------------------------------------------------------


def get_workflow(store: Store, principal: Principal, workflow_id: str) -> dict:
    workflow = _load_workflow(store.get(store.workflow(principal.account_id, workflow_id)))
    return domain.view(workflow, principal.roles).model_dump(mode="json")


def list_workflows(
    store: Store, principal: Principal, *, state: State | None, role: Role | None, label: str | None,
    limit: int, page_token: str | None,
) -> dict:
    filters: list[tuple[str, str, object]] = []
    if state:
        filters.append(("state", "==", state.value))
    if role:
        filters.append(("role", "==", role.value))
    if label:
        filters.append(("label_pairs", "array_contains", label))
    scope = json.dumps([state, role, label])
    start_after = None
    if page_token:
        cursor = decode_page_token(page_token, scope)
        try:
            start_after = {"updated_at": datetime.fromisoformat(cursor["u"]),
                           "__name__": store.workflow(principal.account_id, str(cursor["id"]))}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationFailed([{"field": "query:page_token", "message": "malformed token"}]) from exc
    snaps = store.query(
        store.workflows(principal.account_id),
        filters=filters,
        order=[("updated_at", "DESCENDING"), ("__name__", "DESCENDING")],
        limit=limit + 1,
        start_after=start_after,
    )
    workflows = [Workflow.model_validate(s.to_dict()) for s in snaps[:limit]]
    token = None
    if len(snaps) > limit:
        last = workflows[-1]
        token = encode_page_token(scope, {"u": last.updated_at.isoformat(), "id": last.id})
    page = WorkflowPage(workflows=[domain.view(w, principal.roles) for w in workflows], next_page_token=token)
    return page.model_dump(mode="json")


def list_events(
    store: Store, principal: Principal, workflow_id: str, *, limit: int, page_token: str | None
) -> dict:
    scope = f"events:{workflow_id}"
    after = 0
    if page_token:
        after = decode_page_token(page_token, scope).get("seq")
        if not isinstance(after, int) or after < 0:
            raise ValidationFailed([{"field": "query:page_token", "message": "malformed token"}])
    snaps = store.query(store.events(principal.account_id, workflow_id), order=[("seq", "ASCENDING")],
                        limit=limit + 1, start_after={"seq": after} if after else None)
    if not snaps and not after:
        # Every workflow has event 1, so no events means no such workflow (in this account).
        raise NotFound("No workflow with that id.")
    events = [Event.model_validate(s.to_dict()) for s in snaps[:limit]]
    token = encode_page_token(scope, {"seq": events[-1].seq}) if len(snaps) > limit else None
    return EventPage(events=events, next_page_token=token).model_dump(mode="json")


# ---- change ------------------------------------------------------------------------------------------------------

Decide = Callable[[Workflow, dict[str, Snapshot], datetime], tuple[Workflow, Event]]


def _change(
    store: Store,
    principal: Principal,
    workflow_id: str,
    idem: IdempotencyRequest | None,
    decide: Decide,
    *,
    expected_version: int | None = None,
    extra_refs: tuple = (),
    seen: Snapshot | None = None,
) -> Outcome:
    """Read (one batched RPC), decide, commit (one RPC) with the workflow's update time as precondition.

    On a lost race: with `expected_version` the caller hears 409 at once; without, re-read and re-validate.
    `seen`: the workflow as the caller already read it (a system actor that found it by a query); the first
    attempt decides on it instead of reading again, and the precondition still guards the commit.
    """
    wf_ref = store.workflow(principal.account_id, workflow_id)

    def change(snaps: dict[str, Snapshot], at: datetime) -> tuple[dict, Writes]:
        wf_snap = snaps.get(wf_ref.path)
        workflow = _load_workflow(wf_snap)
        if expected_version is not None and workflow.version != expected_version:
            raise VersionConflict(f"The workflow is at version {workflow.version}, not {expected_version}.",
                                  current_version=workflow.version)
        moved, event = decide(workflow, snaps, at)
        # The hand-offs follow in the same commit; the workflow's update time guards them too, since every write
        # of a hand-off (claim, heartbeat, release) also writes the workflow's `current_handoff`.
        effect = handoff_domain.on_change(workflow, moved, event, at)
        moved = effect.workflow
        writes = Writes()
        writes.update(wf_ref, moved.model_dump(mode="python", include=_CHANGED_FIELDS),
                      if_updated_at=wf_snap.update_time)
        writes.create(store.event(principal.account_id, workflow_id, event.seq), _event_doc(event))
        stage_handoffs(store, principal.account_id, effect, writes)
        if (delta := int(is_active(moved.state)) - int(is_active(workflow.state))) != 0:
            writes.update(store.account(principal.account_id), {"active_workflows": Increment(delta)},
                          if_updated_at=None)
        result = ChangeResult(workflow=domain.view(moved, principal.roles), event=event)
        return result.model_dump(mode="json"), writes

    return commit_change(store, principal.account_id, idem, [wf_ref, *extra_refs], change, attempts=MAX_ATTEMPTS,
                         exhausted="The workflow is changing too fast; read it again and retry.",
                         first_read={wf_ref.path: seen} if seen is not None and not extra_refs else None)


def stage_handoffs(store: Store, account_id: str, effect: handoff_domain.Effect, writes: Writes) -> None:
    """Add a workflow change's hand-off writes to its commit. Each open hand-off keeps a copy of its workflow, so a
    claim can answer with the workflow from its one query (the copy is refreshed by every change). The copy is JSON
    text: one string to skip over for every candidate a claim reads, parsed for the one it claims, never indexed."""
    copy = effect.workflow.model_dump_json()
    if effect.closed:
        writes.update(store.handoff(account_id, effect.closed),
                      {"status": effect.closed_status, "closed_at": effect.at, "closed_seq": effect.seq,
                       "claimable_at": DeleteField, "workflow": copy}, if_updated_at=None)
    if effect.kept:
        writes.update(store.handoff(account_id, effect.kept), {"workflow": copy}, if_updated_at=None)
    if effect.opened:
        writes.create(store.handoff(account_id, effect.opened.id),
                      handoff_document(effect.opened) | {"workflow": copy})


def handoff_document(handoff: Handoff) -> dict:
    """A hand-off's stored fields, with `claimable_at` (the work queue's key) while it is open."""
    doc = handoff.model_dump(mode="python")
    doc["claimable_at"] = handoff_domain.claimable_at(handoff) or DeleteField
    return doc


def transition_workflow(
    store: Store, principal: Principal, workflow_id: str, request: TransitionRequest,
    idem: IdempotencyRequest | None,
) -> Outcome:
    artifact_refs = {a: store.artifact(principal.account_id, workflow_id, a) for a in request.artifacts}

    def decide(workflow: Workflow, snaps: dict[str, Snapshot], at: datetime) -> tuple[Workflow, Event]:
        moved, event = domain.transition(workflow, request.to, roles=principal.roles, actor=principal.actor,
                                         reason=request.reason, note=request.note, now=at,
                                         actor_email=principal.actor_email)
        handoff_domain.check_lease(workflow.current_handoff, key_id=principal.actor, agent_id=request.agent_id,
                                   is_owner=principal.is_owner, now=at)
        if request.artifacts:
            found = {a: Artifact.model_validate(snap.to_dict()) if (snap := snaps.get(ref.path)) and snap.exists
                     else None for a, ref in artifact_refs.items()}
            artifact_domain.require_attachable(request.artifacts, found)
            event = event.model_copy(update={"artifacts": list(request.artifacts)})
        return moved, event

    return _change(store, principal, workflow_id, idem, decide, expected_version=request.expected_version,
                   extra_refs=tuple(artifact_refs.values()))


def rollback_workflow(
    store: Store, principal: Principal, workflow_id: str, request: RollbackRequest,
    idem: IdempotencyRequest | None,
) -> Outcome:
    if not principal.is_owner:
        raise Forbidden("Only an OWNER may roll a workflow back.")
    target_ref = store.event(principal.account_id, workflow_id, request.to_version)

    def decide(workflow: Workflow, snaps: dict[str, Snapshot], at: datetime) -> tuple[Workflow, Event]:
        target = snaps.get(target_ref.path)
        event = Event.model_validate(target.to_dict()) if target is not None and target.exists else None
        return domain.rollback(workflow, event, to_version=request.to_version, reset_retries=request.reset_retries,
                               actor=principal.actor, reason=request.reason, now=at,
                               actor_email=principal.actor_email)

    return _change(store, principal, workflow_id, idem, decide, extra_refs=(target_ref,))
