"""Domain operations on a workflow: create, transition, roll back, replay. Pure functions over the models; the
service layer loads and stores, these decide."""

from __future__ import annotations

import secrets
from datetime import datetime

from shared.domain import state_machine as sm
from shared.domain.errors import BudgetExhausted, Forbidden, InvalidTransition, RetryLimitExceeded, ValidationFailed
from shared.domain.models import (
    AllowedTransition,
    Budget,
    CreateWorkflowRequest,
    Event,
    EventType,
    EventUsage,
    FieldChange,
    UpdateWorkflowRequest,
    UsageRecord,
    Workflow,
    WorkflowUsage,
    WorkflowView,
)
from shared.domain.pricing import ModelCall, Tally, nanos, usd
from shared.domain.state_machine import AGENT_ROLES, Role, State

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
        max_cost_usd=request.max_cost_usd,
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


# ---- the owner's changes (PATCH) ---------------------------------------------------------------------------------

UPDATABLE = ("title", "description", "labels", "max_retries", "max_cost_usd")


def update(workflow: Workflow, request: UpdateWorkflowRequest, *, actor: str, now: datetime,
           actor_email: str | None = None) -> tuple[Workflow, Event | None]:
    """The owner's change of the workflow's own fields (owner-only; checked by the caller), as one UPDATED event
    listing each field changed; (workflow, None) when every value given is the current one (nothing to write)."""
    wanted = request.changes()
    if "max_retries" in wanted and wanted["max_retries"] < workflow.retry_count:
        raise ValidationFailed([{"field": "max_retries", "message": f"must be at least the workflow's retry_count "
                                                                    f"({workflow.retry_count})"}])
    changes = {name: FieldChange(before=getattr(workflow, name), after=value) for name, value in wanted.items()
               if getattr(workflow, name) != value}
    if not changes:
        return workflow, None
    changed = workflow.model_copy(update={name: c.after for name, c in changes.items()}
                                  | {"version": workflow.version + 1, "updated_at": now})
    event = Event(seq=changed.version, type=EventType.UPDATED, from_state=workflow.state, to_state=workflow.state,
                  actor=actor, actor_email=actor_email, at=now, changes=changes)
    return changed, event


# ---- what the AI work costs, and the budget ----------------------------------------------------------------------


def exhausted(workflow: Workflow | None) -> bool:
    """The recorded cost has reached the budget (compared in integer nano-dollars: exact at the boundary)."""
    return (workflow is not None and workflow.max_cost_usd is not None
            and workflow.usage.total.cost_nanousd >= nanos(workflow.max_cost_usd))


def _budget(workflow: Workflow) -> dict:
    return {"max_cost_usd": workflow.max_cost_usd, "spent_usd": usd(workflow.usage.total.cost_nanousd),
            "exhausted": exhausted(workflow)}


def budget(workflow: Workflow) -> Budget:
    return Budget(**_budget(workflow))


def budget_left_usd(workflow: Workflow) -> float | None:
    if workflow.max_cost_usd is None:
        return None
    return usd(max(nanos(workflow.max_cost_usd) - workflow.usage.total.cost_nanousd, 0))


def check_budget(workflow: Workflow, *, roles: frozenset[Role]) -> None:
    """Once the recorded cost has reached the budget, only an owner may move the workflow (to raise the budget,
    cancel, or roll back); an agent's transition is refused."""
    if Role.OWNER in roles or not exhausted(workflow):
        return
    state = budget(workflow)
    raise BudgetExhausted(
        f"The workflow's budget of {state.max_cost_usd} USD is spent ({state.spent_usd} USD recorded): agents may "
        "not move it until its owner raises the budget. Release your hand-off with a note.",
        max_cost_usd=state.max_cost_usd, spent_usd=state.spent_usd)


def add_usage(workflow: Workflow, role: Role, tally: Tally, now: datetime) -> Workflow:
    """`workflow` with `tally` added to its totals, overall and for `role`."""
    if not tally:
        return workflow
    record = workflow.usage
    by_role = dict(record.by_role)
    by_role[role.value] = by_role.get(role.value, Tally()) + tally
    return workflow.model_copy(update={"usage": UsageRecord(total=record.total + tally, by_role=by_role,
                                                            reported_at=now)})


def record_calls(workflow: Workflow, moved: Workflow, event: Event, calls: list[ModelCall],
                 now: datetime) -> tuple[Workflow, Event]:
    """A transition's own model calls (priced): on its event, and added to the totals for the role that acted (the
    workflow's role before it)."""
    if not calls or workflow.role is None:
        return moved, event
    own = Tally.of(calls)
    usage = EventUsage(role=workflow.role, calls=calls, total=own.view())
    return add_usage(moved, workflow.role, own, now), event.model_copy(update={"usage": usage})


def fold_pending(before: Workflow, event: Event) -> Event:
    """The usage the open hand-off's heartbeats reported (already in the totals) goes onto the hand-off's next state
    change: the event records it, and the hand-off's record of it is cleared in the same commit."""
    pending = before.current_handoff.usage if before.current_handoff is not None else None
    if pending is None or event.type not in (EventType.TRANSITIONED, EventType.ROLLED_BACK) or before.role is None:
        return event
    own = event.usage
    total = Tally.of_view(pending) + (Tally.of_view(own.total) if own else Tally())
    usage = EventUsage(role=before.role, calls=own.calls if own else [], heartbeats=pending, total=total.view())
    return event.model_copy(update={"usage": usage})


def acting_role(workflow: Workflow, roles: frozenset[Role]) -> Role | None:
    """The agent role a caller acts in on `workflow`: its current role, if the caller holds it (not as an owner)."""
    role = workflow.role
    return role if role is not None and role in AGENT_ROLES and role in roles else None


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


def _totals(tally: Tally) -> dict:
    return {"input_tokens": tally.input_tokens, "output_tokens": tally.output_tokens,
            "cache_read_tokens": tally.cache_read_tokens, "cost_usd": usd(tally.cost_nanousd),
            "unpriced_calls": tally.unpriced_calls}


def _usage(record: UsageRecord) -> dict:
    return _totals(record.total) | {"by_role": {role: _totals(t) for role, t in sorted(record.by_role.items())}}


def usage_view(record: UsageRecord) -> WorkflowUsage:
    return WorkflowUsage(**_usage(record))


def view(workflow: Workflow, roles: frozenset[Role]) -> WorkflowView:
    allowed = sm.allowed_transitions(workflow.state, workflow.retry_count, workflow.max_retries, roles)
    return WorkflowView(
        **workflow.model_dump(exclude={"account_id", "plan", "outgoing_artifacts", "usage", "max_cost_usd"}),
        allowed_transitions=[AllowedTransition(to=t.target, kind=t.kind.value, counts_as_retry=t.counts_as_retry)
                             for t in allowed],
        usage=_usage(workflow.usage),  # plain data, validated with the view in one pass
        budget=_budget(workflow),
    )
