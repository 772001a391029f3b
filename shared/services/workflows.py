"""Workflow use cases. Each loads what it needs in one batched read, asks the domain (`shared.domain.workflow`) what to
do, and writes the result through the one write path (`shared.services.changes.stage`) in one atomic commit guarded
by a precondition, committed by the one commit loop (`shared.services.commits`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime

from shared.adapters.firestore import Doc, Key, Store, Writes
from shared.domain import artifact as artifact_domain
from shared.domain import billing, pricing
from shared.domain import handoff as handoff_domain
from shared.domain import workflow as domain
from shared.domain.errors import Forbidden, NotFound, ValidationFailed, VersionConflict
from shared.domain.models import (
    Artifact,
    CreateWorkflowRequest,
    Event,
    EventPage,
    RollbackRequest,
    TransitionRequest,
    UpdateWorkflowRequest,
    Workflow,
    WorkflowPage,
)
from shared.domain.state_machine import Role, State
from shared.runtime.config import config
from shared.services import commits
from shared.services.auth import Principal
from shared.services.changes import Change, stage
from shared.services.idempotency import IdempotencyRequest, Outcome
from shared.services.pagination import decode_page_token, encode_page_token


def _load_workflow(doc: Doc | None) -> Workflow:
    if doc is None or not doc.exists:
        raise NotFound("No workflow with that id.")
    return Workflow.model_validate(doc.data)


# ---- create ------------------------------------------------------------------------------------------------------


def create_workflow(
    store: Store, principal: Principal, request: CreateWorkflowRequest, idem: IdempotencyRequest | None
) -> Outcome:
    if not principal.is_owner:
        raise Forbidden("Only an OWNER may create workflows.")
    account_key = store.account(principal.account_id)

    def decide(docs: dict[Key, Doc], at: datetime) -> tuple[dict, Writes]:
        account = docs[account_key]
        # Entitlement (402) and plan quota (403) from the account just read: no extra round trip. The account's
        # update-time precondition (the change's guard) makes the quota hold when creates race.
        settings = config()
        billing.admit_workflow(account.data, settings.plans, at, settings.billing_grace_days)
        workflow, event = domain.create(request, account_id=principal.account_id, actor=principal.actor, now=at,
                                        actor_email=principal.actor_email)
        effect = handoff_domain.on_create(workflow, event, at)  # the first role's work, in the same commit
        writes = Writes()
        created = stage(store, writes, Change(principal.account_id, None, effect.workflow, guard=account,
                                              event=event, handoffs=effect))
        return domain.view(created, principal.roles).model_dump(mode="json"), writes

    # Every create commits against the account's update time, so N creates racing on one account take up to N
    # rounds (one wins per round).
    return commits.change(store, principal.account_id, idem, [account_key], decide,
                          busy="Too many workflows are being created on this account at once; retry.")


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
    docs = store.query(
        store.workflows(principal.account_id),
        filters=filters,
        order=[("updated_at", "DESCENDING"), ("__name__", "DESCENDING")],
        limit=limit + 1,
        start_after=start_after,
    )
    workflows = [Workflow.model_validate(d.data) for d in docs[:limit]]
    token = None
    if len(docs) > limit:
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
    docs = store.query(store.events(principal.account_id, workflow_id), order=[("seq", "ASCENDING")],
                       limit=limit + 1, start_after={"seq": after} if after else None)
    if not docs and not after:
        # Every workflow has event 1, so no events means no such workflow (in this account).
        raise NotFound("No workflow with that id.")
    events = [Event.model_validate(d.data) for d in docs[:limit]]
    token = encode_page_token(scope, {"seq": events[-1].seq}) if len(docs) > limit else None
    return EventPage(events=events, next_page_token=token).model_dump(mode="json")


# ---- change ------------------------------------------------------------------------------------------------------

# (the workflow after the change, its event); no event: nothing to change, nothing is written.
Decide = Callable[[Workflow, dict[Key, Doc], datetime], tuple[Workflow, Event | None]]


def change_workflow(
    store: Store,
    principal: Principal,
    workflow_id: str,
    idem: IdempotencyRequest | None,
    decide: Decide,
    *,
    expected_version: int | None = None,
    extra_keys: Iterable[Key] = (),
    seen: Doc | None = None,
) -> Outcome:
    """Change a workflow: read it (one batched RPC, with `extra_keys`), let `decide` ask the domain for the new
    workflow and its event, and commit it (one RPC) through the one write path, guarded by the workflow's update
    time. Every change of a workflow that writes an event (transition, rollback, the cleanup's cancel, the owner's
    update) goes through here. A state change's event takes the usage the open hand-off's heartbeats reported.

    On a lost race: with `expected_version` the caller hears 409 at once; without, re-read and re-validate.
    `seen`: the workflow as the caller already read it (a system actor that found it by a query); the first
    attempt decides on it instead of reading again, and the precondition still guards the commit.
    """
    wf_key = store.workflow(principal.account_id, workflow_id)
    extra_keys = list(extra_keys)

    def change(docs: dict[Key, Doc], at: datetime) -> tuple[dict, Writes]:
        wf_doc = docs.get(wf_key)
        workflow = _load_workflow(wf_doc)
        if expected_version is not None and workflow.version != expected_version:
            raise VersionConflict(f"The workflow is at version {workflow.version}, not {expected_version}.",
                                  current_version=workflow.version)
        moved, event = decide(workflow, docs, at)
        writes = Writes()
        if event is not None:
            event = domain.fold_pending(workflow, event)
            effect = handoff_domain.on_change(workflow, moved, event, at)
            workflow = stage(store, writes, Change(principal.account_id, workflow, effect.workflow,
                                                   guard=docs[wf_key], event=event, handoffs=effect))
        # {workflow, event} (`ChangeResult`; `UpdateResult` when there may be no event), each part dumped as is.
        return {"workflow": domain.view(workflow, principal.roles).model_dump(mode="json"),
                "event": event.model_dump(mode="json") if event is not None else None}, writes

    return commits.change(store, principal.account_id, idem, [wf_key, *extra_keys], change,
                          busy="The workflow is changing too fast; read it again and retry.",
                          first_read={wf_key: seen} if seen is not None and not extra_keys else None)


def transition_workflow(
    store: Store, principal: Principal, workflow_id: str, request: TransitionRequest,
    idem: IdempotencyRequest | None,
) -> Outcome:
    artifact_keys = {a: store.artifact(principal.account_id, workflow_id, a) for a in request.artifacts}
    settings = config()
    calls = pricing.price_usage(request.usage, settings.prices) if request.usage is not None else []

    def decide(workflow: Workflow, docs: dict[Key, Doc], at: datetime) -> tuple[Workflow, Event]:
        moved, event = domain.transition(workflow, request.to, roles=principal.roles, actor=principal.actor,
                                         reason=request.reason, note=request.note, now=at,
                                         actor_email=principal.actor_email)
        handoff_domain.check_lease(workflow.current_handoff, key_id=principal.actor, agent_id=request.agent_id,
                                   is_owner=principal.is_owner, now=at)
        domain.check_budget(workflow, roles=principal.roles)
        if request.artifacts:
            found = {a: Artifact.model_validate(docs[key].data) if docs[key].exists else None
                     for a, key in artifact_keys.items()}
            artifact_domain.require_attachable(request.artifacts, found)
            event = event.model_copy(update={"artifacts": list(request.artifacts)})
        if role := domain.acting_role(workflow, principal.roles):  # a key acting in an agent role: its playbook
            event = event.model_copy(update={"playbook_version": settings.playbooks.for_role(role).version})
        return domain.record_calls(workflow, moved, event, calls, at)

    return change_workflow(store, principal, workflow_id, idem, decide, expected_version=request.expected_version,
                           extra_keys=artifact_keys.values())


def rollback_workflow(
    store: Store, principal: Principal, workflow_id: str, request: RollbackRequest,
    idem: IdempotencyRequest | None,
) -> Outcome:
    if not principal.is_owner:
        raise Forbidden("Only an OWNER may roll a workflow back.")
    target_key = store.event(principal.account_id, workflow_id, request.to_version)

    def decide(workflow: Workflow, docs: dict[Key, Doc], at: datetime) -> tuple[Workflow, Event]:
        target = docs[target_key]
        event = Event.model_validate(target.data) if target.exists else None
        return domain.rollback(workflow, event, to_version=request.to_version, reset_retries=request.reset_retries,
                               actor=principal.actor, reason=request.reason, now=at,
                               actor_email=principal.actor_email)

    return change_workflow(store, principal, workflow_id, idem, decide, extra_keys=[target_key])


def update_workflow(
    store: Store, principal: Principal, workflow_id: str, request: UpdateWorkflowRequest,
    idem: IdempotencyRequest | None,
) -> Outcome:
    """The owner changes the workflow's title, description, labels, max_retries or budget: one UPDATED event (and
    a new version) for the fields whose value changes; nothing is written when none does."""
    if not principal.is_owner:
        raise Forbidden("Only an OWNER may change a workflow's fields.")

    def decide(workflow: Workflow, docs: dict[Key, Doc], at: datetime) -> tuple[Workflow, Event | None]:
        return domain.update(workflow, request, actor=principal.actor, now=at, actor_email=principal.actor_email)

    return change_workflow(store, principal, workflow_id, idem, decide)
