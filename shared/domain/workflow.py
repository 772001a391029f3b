"""Domain operations on a workflow: create, transition, roll back, replay. Pure functions over the models; the
service layer loads and stores, these decide."""

from __future__ import annotations

import secrets
from datetime import datetime

from shared.domain import state_machine as sm
from shared.domain.errors import Forbidden, InvalidTransition, RetryLimitExceeded, ValidationFailed
from shared.domain.models import AllowedTransition, CreateWorkflowRequest, Event, EventType, Workflow, WorkflowView
from shared.domain.state_machine import Role, State

INITIAL_STATE = State.DISCOVERY


def new_workflow_id() -> str:
    """Random, unguessable, URL-safe (128 bits); never sequential."""
    return "wf_" + secrets.token_hex(16)


def create(request: CreateWorkflowRequest, *, account_id: str, actor: str, now: datetime,
           plan: str = "dev", actor_email: str | None = None) -> tuple[Workflow, Event]:
    workflow = Workflow(
        id=new_workflow_id(),
        account_id=account_id,
        plan=plan,
        title=request.title,
        description=request.description,
        labels=request.labels,
        state=INITIAL_STATE,
        role=sm.role_of(INITIAL_STATE),
        version=1,
        retry_count=0,
        max_retries=request.max_retries,
        created_at=now,
        updated_at=now,
        created_by=actor,
        final=False,
    )
    event = Event(seq=1, type=EventType.CREATED, from_state=None, to_state=INITIAL_STATE, actor=actor,
                  actor_email=actor_email, at=now)
    return workflow, event


def _moved(workflow: Workflow, to: State, retry_count: int, now: datetime) -> Workflow:
    return workflow.model_copy(
        update={
            "state": to,
            "role": sm.role_of(to),
            "version": workflow.version + 1,
            "retry_count": retry_count,
            "updated_at": now,
            "final": sm.is_final(to),
        }
    )


def transition(
    workflow: Workflow,
    to: State,
    *,
    roles: frozenset[Role],
    actor: str,
    reason: str,
    note: str,
    now: datetime,
    actor_email: str | None = None,
) -> tuple[Workflow, Event]:
    """Apply the one shared validator and return the new workflow and its event, or raise why not."""
    spec = sm.find_transition(workflow.state, to)
    if spec is None:
        allowed = [t.target.value for t in sm.allowed_transitions(workflow.state, workflow.retry_count,
                                                                  workflow.max_retries, roles)]
        raise InvalidTransition(
            f"{workflow.state} cannot go to {to}.", allowed_transitions=allowed, current_state=workflow.state.value
        )
    if not sm.may_act(roles, workflow.state, spec):
        who = "the owner" if spec.owner_only or sm.role_of(workflow.state) is Role.CUSTOMER else (
            f"a {sm.role_of(workflow.state)} key or the owner")
        raise Forbidden(f"Only {who} may move this workflow from {workflow.state} to {to}.")
    if spec.counts_as_retry and workflow.retry_count >= workflow.max_retries:
        raise RetryLimitExceeded(
            f"retry_count is {workflow.retry_count} of max_retries {workflow.max_retries}; only FAILED or "
            "CANCELLED remain.",
            allowed_transitions=[t.target.value for t in sm.allowed_transitions(
                workflow.state, workflow.retry_count, workflow.max_retries, roles)],
        )
    retry_count = workflow.retry_count + (1 if spec.counts_as_retry else 0)
    moved = _moved(workflow, to, retry_count, now)
    event = Event(seq=moved.version, type=EventType.TRANSITIONED, from_state=workflow.state, to_state=to,
                  actor=actor, actor_email=actor_email, reason=reason, note=note, at=now)
    return moved, event


def rollback(
    workflow: Workflow,
    target: Event | None,
    *,
    to_version: int,
    reset_retries: bool,
    actor: str,
    reason: str,
    now: datetime,
    actor_email: str | None = None,
) -> tuple[Workflow, Event]:
    """Return the workflow to the state it had after event `to_version` (owner-only; checked by the caller)."""
    if sm.is_final(workflow.state):
        raise InvalidTransition(f"{workflow.state} is final; a final workflow cannot be rolled back.",
                                allowed_transitions=[], current_state=workflow.state.value)
    if to_version >= workflow.version or target is None:
        raise ValidationFailed([{"field": "to_version",
                                 "message": f"must be an earlier version, 1..{workflow.version - 1}"}])
    if not sm.is_active(target.to_state):
        raise ValidationFailed([{"field": "to_version",
                                 "message": f"version {to_version} left the workflow in {target.to_state}, "
                                            "which is not an active state"}])
    moved = _moved(workflow, target.to_state, 0 if reset_retries else workflow.retry_count, now)
    event = Event(seq=moved.version, type=EventType.ROLLED_BACK, from_state=workflow.state,
                  to_state=target.to_state, actor=actor, actor_email=actor_email, reason=reason, at=now,
                  retries_reset=reset_retries)
    return moved, event


def replay(events: list[Event]) -> tuple[State, Role | None, int]:
    """Rebuild (state, role, retry_count) from the audit log alone."""
    state: State | None = None
    retry_count = 0
    for event in events:
        if event.type is EventType.TRANSITIONED:
            spec = sm.find_transition(event.from_state, event.to_state) if event.from_state else None
            if spec is None:
                raise ValueError(f"event {event.seq} is not a transition of the table")
            retry_count += 1 if spec.counts_as_retry else 0
        elif event.type is EventType.ROLLED_BACK and event.retries_reset:
            retry_count = 0
        state = event.to_state
    if state is None:
        raise ValueError("no events")
    return state, sm.role_of(state), retry_count


def view(workflow: Workflow, roles: frozenset[Role]) -> WorkflowView:
    allowed = sm.allowed_transitions(workflow.state, workflow.retry_count, workflow.max_retries, roles)
    return WorkflowView(
        **workflow.model_dump(exclude={"account_id"}),
        allowed_transitions=[AllowedTransition(to=t.target, kind=t.kind.value, counts_as_retry=t.counts_as_retry)
                             for t in allowed],
    )
