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
  account a create read (its guard), and changed by the cleanup's re-tag through here;
- the account's usage totals of the month (`usage_month`), by what the change added to the workflow's totals, as
  server-side increments of integers (exact, commutative: no read needed) in the same commit;
- whether the open hand-off is in the work queue: `claimable_at` is left off while the workflow's budget is
  exhausted, and put back when the owner raises the budget.

Every change of a workflow or of its open hand-off goes through `stage` (transitions, rollbacks, the cleanup's cancel
and re-tag, creates, claims, heartbeats, releases, lease expiry) and commits through `shared.services.commits`.

The commit is guarded by one document's update time (`Change.guard`): the workflow's for a change of its state, the
open hand-off's for a change of the lease, the account's for a create. That one precondition covers both documents
because every write of either writes the other in the same commit.

Usage reported by a transition or a heartbeat rides on this: the domain puts the new totals on `after` (a changed
workflow field is written by the diff below), a heartbeat's pending usage on the hand-off it changes, and an event
that folds that pending usage clears it on the hand-off (the `usage` of `current_handoff`, mirrored below).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.adapters.firestore import Doc, Store, Writes
from shared.domain import handoff as handoff_domain
from shared.domain import plans
from shared.domain import workflow as workflow_domain
from shared.domain.models import Event, Handoff, HandoffStatus, Workflow
from shared.domain.pricing import Tally
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
    def of_handoff(cls, account_id: str, workflow: Workflow, handoff: Handoff, guard: Doc,
                   changed: Workflow | None = None) -> Change:
        """A change of the open hand-off (`workflow` as its copy says; `changed`: the workflow as the change leaves
        it, e.g. with a heartbeat's usage in its totals): `current_handoff` follows the hand-off."""
        current = handoff.current() if handoff.status in handoff_domain.OPEN else None
        return cls(account_id, workflow, (changed or workflow).model_copy(update={"current_handoff": current}),
                   guard, handoff=handoff)


# Event fields most events leave empty: stored only when set (a missing one reads as its default).
_SPARSE_EVENT_FIELDS = ("actor_email", "usage", "playbook_version", "changes")


def event_document(event: Event) -> dict[str, Any]:
    return event.model_dump(mode="python", exclude={f for f in _SPARSE_EVENT_FIELDS if getattr(event, f) is None})


def handoff_document(handoff: Handoff, workflow: Workflow) -> tuple[dict[str, Any], list[str]]:
    """A hand-off's stored fields, with `claimable_at` (the work queue's key) while it is open and its workflow's
    budget is not exhausted; and the fields to remove (`claimable_at` otherwise, so closed work, or work nobody may
    do now, never weighs on the queue's index)."""
    doc = handoff.model_dump(mode="python")
    at = handoff_domain.claimable_at(handoff, budget_exhausted=workflow_domain.exhausted(workflow))
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
        # The workflow as stored: the document read, when it is the guard (a state change, an update); else the copy
        # it was read from, dumped. The usage record is left out of the comparison when the change kept it.
        kept = {"usage"} if after.usage is change.before.usage else None
        old = guard.data if guard.key == wf_key and guard.data is not None else change.before.to_document(exclude=kept)
        fields = {name: value for name, value in after.to_document(exclude=kept).items() if old.get(name) != value}
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
        fields, remove = handoff_document(change.handoff, after)
        writes.update(key, fields | open_fields, remove=remove, if_updated_at=guarded.get(key))
    elif effect is not None and effect.closed:
        # Closed by a state change, whose event took the usage its heartbeats reported.
        writes.update(store.handoff(account_id, effect.closed),
                      {"status": effect.closed_status, "closed_at": effect.at, "closed_seq": effect.seq,
                       "usage": None} | open_fields, remove=["claimable_at"], if_updated_at=None)
    elif after.current_handoff is not None and not (effect is not None and effect.opened):
        # The open hand-off stays open (a change within one role, an update, a re-tag): its copy follows the
        # workflow, and so does what the workflow mirrors of it or decides for it.
        current, was = after.current_handoff, change.before.current_handoff if change.before else None
        fields = dict(open_fields)
        remove: list[str] = []
        if was is None or was.usage != current.usage:  # a state change took its pending usage
            fields["usage"] = current.usage.model_dump(mode="python") if current.usage else None
        if change.before is not None and workflow_domain.exhausted(change.before) != workflow_domain.exhausted(after):
            # The budget ran out (out of the queue) or was raised (back in it: claimable from now, or when a live
            # lease ends; its place in the queue is its `created_at`, unchanged).
            if workflow_domain.exhausted(after):
                remove.append("claimable_at")
            elif current.status is HandoffStatus.CLAIMED and current.lease_expires_at is not None:
                fields["claimable_at"] = current.lease_expires_at
            else:
                fields["claimable_at"] = after.updated_at
        writes.update(store.handoff(account_id, current.id), fields, remove=remove, if_updated_at=None)
    if effect is not None and effect.opened:
        fields, _ = handoff_document(effect.opened, after)
        writes.create(store.handoff(account_id, effect.opened.id), fields | {"workflow": copy})

    # The account's count of active workflows.
    delta = int(is_active(after.state)) - int(change.before is not None and is_active(change.before.state))
    if account_key in guarded:
        writes.update(account_key, {"active_workflows": (guard.get("active_workflows") or 0) + delta},
                      if_updated_at=guarded[account_key])
    elif delta:
        writes.update(account_key, {}, add={"active_workflows": delta}, if_updated_at=None)

    # The account's usage totals of the month: what this change added to the workflow's.
    was = change.before.usage if change.before is not None else None
    if after.usage is not was and (added := after.usage.total - (was.total if was is not None else Tally())):
        assert after.usage.reported_at is not None, "the domain stamps the usage it adds"
        month = after.usage.reported_at.strftime("%Y-%m")
        writes.add_to(store.usage_month(account_id, month), added.counts(), fields={"month": month})
    return after
