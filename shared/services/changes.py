"""The one write path of a workflow and its open hand-off: `stage` turns what the domain decided (a `Change`) into
the writes of one commit, deriving every stored copy from it, so no writer keeps them in step by hand:

- the workflow document: created whole, or its changed fields (the domain's result against what was read);
- its audit event, when the change has one;
- its hand-offs: the one a change closes, opens, or changes (claim, heartbeat, release, lease expiry), and the
  open one in any case, since each open hand-off carries a JSON copy of its workflow (a claim answers from it);
- the workflow's `current_handoff`, which mirrors its open hand-off (so a transition's one read sees the lease);
- the account's `active_workflows`: set under the account's update time when the change is guarded by the account
  (a create: the quota holds under races), else adjusted by an increment (no read needed);
- the workflow's `plan` (the account's plan, kept on each workflow for the cleanup's queries): copied here from the
  account a create read (its guard), and changed by the cleanup's re-tag through here.

Every change of a workflow or of its open hand-off goes through `stage` (transitions, rollbacks, the cleanup's cancel
and re-tag, creates, claims, heartbeats, releases, lease expiry) and commits through `shared.services.commits`.

The commit is guarded by one document's update time (`Change.guard`): the workflow's for a change of its state, the
open hand-off's for a change of the lease, the account's for a create. That one precondition covers both documents
because every write of either writes the other in the same commit.

To carry something new in the same commit (issue 10: token usage, with totals per role on the workflow and a usage
record on the open hand-off), give `Change` a field, let the domain put the totals on `after` (a changed workflow
field is written by the diff below), and add the record to `open_fields`, the one update every change makes to the
open hand-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.adapters.firestore import Doc, Store, Writes
from shared.domain import handoff as handoff_domain
from shared.domain import plans
from shared.domain.models import Event, Handoff, Workflow
from shared.domain.state_machine import is_active


@dataclass(frozen=True)
class Change:
    """One change of a workflow and/or its open hand-off, as the domain decided it."""

    account_id: str
    before: Workflow | None  # as read; None when this change creates the workflow
    after: Workflow  # as decided (for a state change: with the hand-off effect's `current_handoff`)
    guard: Doc  # the document, as read, whose update time guards the commit (workflow, open hand-off or account)
    event: Event | None = None  # the audit event of a state change (None: a lease change or a re-tag)
    handoffs: handoff_domain.Effect | None = None  # what a state change does to the hand-offs
    handoff: Handoff | None = None  # the open hand-off as changed by a claim, heartbeat, release or lease expiry

    @classmethod
    def of_handoff(cls, account_id: str, workflow: Workflow, handoff: Handoff, guard: Doc) -> Change:
        """A change of the open hand-off alone (`workflow` as its copy says): `current_handoff` follows it."""
        current = handoff.current() if handoff.status in handoff_domain.OPEN else None
        return cls(account_id, workflow, workflow.model_copy(update={"current_handoff": current}), guard,
                   handoff=handoff)


def event_document(event: Event) -> dict[str, Any]:
    return event.model_dump(mode="python")


def handoff_document(handoff: Handoff) -> tuple[dict[str, Any], list[str]]:
    """A hand-off's stored fields, with `claimable_at` (the work queue's key) while it is open; and the fields to
    remove (`claimable_at` once it is closed, so closed work never weighs on the queue's index)."""
    doc = handoff.model_dump(mode="python")
    at = handoff_domain.claimable_at(handoff)
    if at is None:
        return doc, ["claimable_at"]
    return doc | {"claimable_at": at}, []


def stage(store: Store, writes: Writes, change: Change) -> Workflow:
    """Add `change`'s writes to `writes`; returns the workflow as stored after it."""
    account_id, after, guard = change.account_id, change.after, change.guard
    wf_key = store.workflow(account_id, after.id)
    account_key = store.account(account_id)
    guarded = {guard.key: guard.update_time}
    if change.before is None and guard.key == account_key:  # a create: the workflow takes its account's plan
        after = after.model_copy(update={"plan": guard.get("plan") or plans.DEV})

    # The workflow document.
    if change.before is None:
        writes.create(wf_key, after.to_document())
    else:
        old = change.before.to_document()
        fields = {name: value for name, value in after.to_document().items() if old.get(name) != value}
        if change.handoff is not None:
            fields["current_handoff"] = after.model_dump(mode="python")["current_handoff"]  # always: it mirrors it
        writes.update(wf_key, fields, if_updated_at=guarded.get(wf_key))

    # Its audit event.
    if change.event is not None:
        writes.create(store.event(account_id, after.id, change.event.seq), event_document(change.event))

    # Its hand-offs. Each open one carries the workflow's copy: JSON text, one string to skip over for every
    # candidate a claim reads, parsed for the one it claims, never indexed.
    copy = after.model_dump_json()
    effect = change.handoffs
    open_fields: dict[str, Any] = {"workflow": copy}
    if change.handoff is not None:
        key = store.handoff(account_id, change.handoff.id)
        fields, remove = handoff_document(change.handoff)
        writes.update(key, fields | open_fields, remove=remove, if_updated_at=guarded.get(key))
    elif effect is not None and effect.closed:
        writes.update(store.handoff(account_id, effect.closed),
                      {"status": effect.closed_status, "closed_at": effect.at, "closed_seq": effect.seq}
                      | open_fields, remove=["claimable_at"], if_updated_at=None)
    elif after.current_handoff is not None and not (effect is not None and effect.opened):
        # The open hand-off stays open (a change within one role, a re-tag): its copy follows the workflow.
        writes.update(store.handoff(account_id, after.current_handoff.id), open_fields, if_updated_at=None)
    if effect is not None and effect.opened:
        fields, _ = handoff_document(effect.opened)
        writes.create(store.handoff(account_id, effect.opened.id), fields | {"workflow": copy})

    # The account's count of active workflows.
    delta = int(is_active(after.state)) - int(change.before is not None and is_active(change.before.state))
    if account_key in guarded:
        writes.update(account_key, {"active_workflows": (guard.get("active_workflows") or 0) + delta},
                      if_updated_at=guarded[account_key])
    elif delta:
        writes.update(account_key, {}, add={"active_workflows": delta}, if_updated_at=None)
    return after
