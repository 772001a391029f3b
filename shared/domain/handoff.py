"""Hand-offs and leases: what a change of a workflow does to its hand-offs, who may claim what, and who holds a
lease. Pure functions over the models; the services load, store and pass `now` in.

Rules (issue 4, and the choices written down in the README):
- A workflow has at most one open hand-off (PENDING or CLAIMED); the workflow document mirrors it in
  `current_handoff`, written in the same commit as every change of that hand-off.
- Creating a workflow opens one for the first state's role. A transition into an active state of another role
  completes the open one and opens a new one; a transition within one role keeps it open (the artifacts it
  attaches are carried on to the next hand-off). Reaching a final state, or FAILED, cancels it. A rollback cancels
  it and opens a fresh one for the state rolled back to.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain import state_machine as sm
from shared.domain.errors import Forbidden, LeaseHeld, LeaseLost
from shared.domain.models import CurrentHandoff, Event, EventType, Handoff, HandoffStatus, Workflow
from shared.domain.pricing import Tally
from shared.domain.state_machine import AGENT_ROLES, Role

OPEN = (HandoffStatus.PENDING, HandoffStatus.CLAIMED)


def new_handoff_id() -> str:
    return "ho_" + secrets.token_hex(16)


def claimable_at(handoff: Handoff, *, budget_exhausted: bool = False) -> datetime | None:
    """When the queue may hand it out: a PENDING one from its creation (FIFO), a CLAIMED one when its lease ends;
    never once closed, nor while its workflow's budget is exhausted. Stored on claimable hand-offs only, so the
    queue's index holds claimable work alone."""
    if budget_exhausted:
        return None
    if handoff.status is HandoffStatus.PENDING:
        return handoff.created_at
    if handoff.status is HandoffStatus.CLAIMED:
        return handoff.lease_expires_at
    return None


def lease_live(handoff: Handoff | CurrentHandoff, now: datetime) -> bool:
    return (handoff.status is HandoffStatus.CLAIMED and handoff.lease_expires_at is not None
            and handoff.lease_expires_at > now)


def holds(handoff: Handoff | CurrentHandoff, key_id: str, agent_id: str | None) -> bool:
    return (handoff.status is HandoffStatus.CLAIMED and handoff.claimed_by == key_id
            and agent_id is not None and handoff.agent_id == agent_id)


# ---- what a workflow change does to its hand-offs ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Effect:
    """The hand-off writes that go into the commit of one workflow change."""

    workflow: Workflow  # the workflow after the change, with `current_handoff` and `outgoing_artifacts` set
    opened: Handoff | None = None
    closed: str | None = None  # id of the hand-off closed, with `closed_status`
    closed_status: HandoffStatus | None = None
    kept: str | None = None  # id of the open hand-off that stays open
    at: datetime | None = None
    seq: int = 0


def _dedupe(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _open(workflow: Workflow, event: Event, *, from_state: sm.State | None, artifacts: list[str],
          now: datetime) -> Handoff:
    role = sm.role_of(workflow.state)
    assert role is not None, "only active states open hand-offs"
    return Handoff(
        id=new_handoff_id(), workflow_id=workflow.id, seq=event.seq,
        from_role=sm.role_of(from_state) if from_state else None, to_role=role,
        from_state=from_state, to_state=workflow.state, note=event.note or event.reason, artifacts=artifacts,
        status=HandoffStatus.PENDING, created_at=now,
    )


def on_create(workflow: Workflow, event: Event, now: datetime) -> Effect:
    opened = _open(workflow, event, from_state=None, artifacts=[], now=now)
    return Effect(workflow=workflow.model_copy(update={"current_handoff": opened.current(), "outgoing_artifacts": []}),
                  opened=opened, at=now, seq=event.seq)


def on_change(before: Workflow, after: Workflow, event: Event, now: datetime) -> Effect:
    """The hand-off side of a transition, rollback or owner's update from `before` to `after` (recorded as `event`).
    A state change's event has taken the open hand-off's pending usage (`workflow.fold_pending`): its record of it
    is cleared."""
    current = before.current_handoff
    if event.type is EventType.UPDATED:  # the workflow's own fields: its hand-off stays as it is
        return Effect(workflow=after, kept=current.id if current else None, at=now, seq=event.seq)
    if event.type is EventType.ROLLED_BACK:
        close, open_new, carried = HandoffStatus.CANCELLED, sm.is_active(after.state), []
    elif not sm.is_active(after.state):
        close, open_new, carried = HandoffStatus.CANCELLED, False, []
    elif current is None or sm.role_of(after.state) is not sm.role_of(before.state):
        close, open_new, carried = HandoffStatus.COMPLETED, True, _dedupe(before.outgoing_artifacts + event.artifacts)
    else:  # within one role: the hand-off stays open, and what it produced waits for the next one
        kept = current if current.usage is None else current.model_copy(update={"usage": None})
        moved = after.model_copy(update={"current_handoff": kept,
                                         "outgoing_artifacts": _dedupe(before.outgoing_artifacts + event.artifacts)})
        return Effect(workflow=moved, kept=current.id, at=now, seq=event.seq)
    opened = _open(after, event, from_state=before.state, artifacts=carried, now=now) if open_new else None
    moved = after.model_copy(update={"current_handoff": opened.current() if opened else None,
                                     "outgoing_artifacts": []})
    return Effect(workflow=moved, opened=opened, closed=current.id if current else None,
                  closed_status=close if current else None, at=now, seq=event.seq)


def check_lease(current: CurrentHandoff | None, *, key_id: str, agent_id: str | None, is_owner: bool,
                now: datetime) -> None:
    """While the open hand-off is claimed under a live lease, only its holder (same key and agent_id) or an owner
    may move the workflow."""
    if current is None or is_owner or not lease_live(current, now) or holds(current, key_id, agent_id):
        return
    assert current.lease_expires_at is not None
    raise LeaseHeld(
        f"Hand-off {current.id} is claimed by agent {current.agent_id!r} of key {current.claimed_by} until "
        f"{current.lease_expires_at.isoformat()}; only that agent (send its agent_id) or an owner may move the "
        "workflow until then.",
        handoff_id=current.id, claimed_by=current.claimed_by, agent_id=current.agent_id,
        lease_expires_at=current.lease_expires_at.isoformat(),
    )


# ---- the work queue ----------------------------------------------------------------------------------------------


def claimable_roles(key_roles: frozenset[Role], requested: list[Role] | None) -> list[Role]:
    """The roles a claim looks for. An agent key claims for its own roles; an OWNER key may claim for any workflow
    role, and by default claims the CUSTOMER's work (REVIEW)."""
    if Role.OWNER in key_roles:
        allowed, default = set(Role) - {Role.OWNER}, [Role.CUSTOMER]
    else:
        allowed = set(key_roles & AGENT_ROLES)
        default = sorted(allowed)
    roles = default if requested is None else requested
    if not roles:
        raise Forbidden("This key holds no role that can claim work.")
    if bad := sorted({r.value for r in roles if r not in allowed}):
        raise Forbidden(f"This key may not claim work for {', '.join(bad)}.", roles=bad)
    return sorted(set(roles))


def claim(handoff: Handoff, *, key_id: str, agent_id: str, lease_seconds: int, now: datetime) -> Handoff | None:
    """The hand-off claimed by this agent, or None if it is not claimable at `now` (someone got there first)."""
    if handoff.status is HandoffStatus.CLAIMED and lease_live(handoff, now):
        return None
    if handoff.status not in OPEN:
        return None
    return handoff.model_copy(update={
        "status": HandoffStatus.CLAIMED, "claimed_by": key_id, "agent_id": agent_id, "claimed_at": now,
        "lease_seconds": lease_seconds, "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "attempts": handoff.attempts + 1,
    })


def _lost(handoff: Handoff) -> LeaseLost:
    if handoff.status is HandoffStatus.CLAIMED:
        detail = (f"Hand-off {handoff.id} is claimed by another agent (your lease expired and it was claimed again, "
                  "or it was never yours).")
    elif handoff.status is HandoffStatus.PENDING:
        detail = f"Hand-off {handoff.id} is not claimed (it was released, or never claimed by you); claim it again."
    else:
        detail = f"Hand-off {handoff.id} is {handoff.status}: the workflow has moved on."
    return LeaseLost(detail, handoff_id=handoff.id, handoff_status=handoff.status.value)


def heartbeat(handoff: Handoff, *, key_id: str, agent_id: str, lease_seconds: int | None, now: datetime,
              usage: Tally | None = None) -> Handoff:
    """Extend the caller's lease, keeping the usage it reports until the hand-off's next event. A lease that ran out
    is still the caller's until someone else claims it."""
    if not holds(handoff, key_id, agent_id):
        raise _lost(handoff)
    seconds = lease_seconds or handoff.lease_seconds or 300
    pending = handoff.usage
    if usage:
        pending = (Tally.of_view(handoff.usage) + usage).view()
    return handoff.model_copy(update={"lease_seconds": seconds, "lease_expires_at": now + timedelta(seconds=seconds),
                                      "usage": pending})


def release(handoff: Handoff, *, key_id: str, agent_id: str, is_owner: bool, note: str | None = None) -> Handoff:
    """Give the work back: PENDING again, at its original place in the queue, with the releaser's note (or none). An
    owner may release any claim."""
    if handoff.status is not HandoffStatus.CLAIMED or not (is_owner or holds(handoff, key_id, agent_id)):
        raise _lost(handoff)
    return handoff.model_copy(update={"status": HandoffStatus.PENDING, "claimed_by": None, "agent_id": None,
                                      "claimed_at": None, "lease_seconds": None, "lease_expires_at": None,
                                      "release_note": note})
