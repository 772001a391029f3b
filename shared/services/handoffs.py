"""The agent work queue: claim (with long poll), heartbeat, release, list; and lease expiry for the scheduled
cleanup.

Every write of a hand-off is a precondition write (the hand-off's update time), never a read-write transaction,
and goes in one commit with the workflow's `current_handoff`, so a transition's one read of the workflow sees
the lease. A claim is one query and one commit when uncontended: the query returns the candidates with the copy
of their workflow that every change refreshes, and on a lost race the agent tries the next candidate of the same
result.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime

from shared.adapters.firestore import DocRef, Snapshot, Store, WriteConflict, Writes
from shared.domain import handoff as domain
from shared.domain import workflow as workflow_domain
from shared.domain.errors import NotFound, ValidationFailed
from shared.domain.models import (
    ClaimRequest,
    ClaimResult,
    Handoff,
    HandoffPage,
    HandoffStatus,
    HeartbeatRequest,
    ReleaseRequest,
    Workflow,
)
from shared.runtime import clock
from shared.services import idempotency
from shared.services.auth import Principal
from shared.services.commits import commit_change
from shared.services.idempotency import IdempotencyRequest, Outcome
from shared.services.pagination import decode_page_token, encode_page_token
from shared.services.workflows import MAX_ATTEMPTS, handoff_document

# Candidates per claim query: enough that 16+ agents racing for the head of the queue spread out within one result
# (measured in bench/claims.py: 8 first and 32 after a lost race cost ~0.9 more queries per contended claim; 32
# from the start costs up to 32 document reads per claim, cheap to parse: the workflow copy is one JSON string).
QUEUE_DEPTH = 32
# Long poll: the queue is queried again after these pauses (then every second) until wait_seconds is up.
POLL_PAUSES = (0.1, 0.2, 0.4, 0.7)
# A claim that keeps losing races re-queries at most this many times, then answers "nothing" (204).
MAX_ROUNDS = 50

Decide = Callable[[Handoff, datetime], Handoff]


def _wf_current(handoff: Handoff) -> dict:
    return {"current_handoff": handoff.current().model_dump(mode="python")}


def _load(snap: Snapshot | None, workflow_id: str) -> Handoff:
    """The hand-off, if it exists in the caller's account and belongs to this workflow (else 404, as for any id
    of another account)."""
    if snap is None or not snap.exists or snap.get("workflow_id") != workflow_id:
        raise NotFound("No hand-off with that id in this workflow.")
    return Handoff.model_validate(snap.to_dict())


# ---- claim -------------------------------------------------------------------------------------------------------


def claim_handoff(store: Store, principal: Principal, request: ClaimRequest,
                  idem: IdempotencyRequest | None) -> Outcome | None:
    """The oldest claimable hand-off for the caller's roles, claimed under a lease; None when there is none (after
    waiting up to `wait_seconds` for one)."""
    roles = domain.claimable_roles(principal.roles, request.roles)
    idem_ref = store.idempotency(principal.account_id, idem.key_hash) if idem else None
    idem_snap = store.get(idem_ref) if idem_ref else None
    if idem and (replayed := idempotency.replay(idem_snap, idem, clock.now())):
        return replayed
    deadline = time.monotonic() + request.wait_seconds
    pauses = iter(POLL_PAUSES)
    for _ in range(MAX_ROUNDS):
        at = clock.now()
        candidates = store.query(
            store.handoffs(principal.account_id),
            filters=[("to_role", "in", [r.value for r in roles]), ("claimable_at", "<=", at)],
            order=[("created_at", "ASCENDING")],
            limit=QUEUE_DEPTH,
        )
        lost = False
        while candidates:
            # The oldest first; after a lost race, any other (at random): racing agents then spread out instead of
            # all losing again on the same next one.
            snap = candidates.pop(random.randrange(len(candidates)) if lost else 0)
            outcome = _try_claim(store, principal, request, snap, idem, idem_ref, idem_snap, at)
            if outcome is not None:
                return outcome
            lost = True
            if idem is not None and idem_ref is not None:  # the race may have been over our own Idempotency-Key
                idem_snap = store.get(idem_ref)
                if replayed := idempotency.replay(idem_snap, idem, clock.now()):
                    return replayed
        if lost:
            continue  # the whole result was taken by others: there may be more behind it
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(next(pauses, 1.0), remaining))
    return None


def _try_claim(store: Store, principal: Principal, request: ClaimRequest, snap: Snapshot,
               idem: IdempotencyRequest | None, idem_ref: DocRef | None, idem_snap: Snapshot | None,
               at: datetime) -> Outcome | None:
    handoff = Handoff.model_validate(snap.to_dict())
    claimed = domain.claim(handoff, key_id=principal.actor, agent_id=request.agent_id,
                           lease_seconds=request.lease_seconds, now=at)
    if claimed is None:
        return None
    # The copy was refreshed by the last change of the workflow, and the precondition below proves no change has
    # happened since (every change writes this hand-off), so it is the workflow as of this claim.
    workflow = Workflow.model_validate_json(snap.get("workflow")).model_copy(
        update={"current_handoff": claimed.current()})
    result = ClaimResult(handoff=claimed, workflow=workflow_domain.view(workflow, principal.roles))
    outcome = Outcome(body=result.model_dump(mode="json"))
    writes = Writes()
    writes.update(snap.reference, handoff_document(claimed), if_updated_at=snap.update_time)
    writes.update(store.workflow(principal.account_id, handoff.workflow_id), _wf_current(claimed),
                  if_updated_at=None)
    if idem and idem_ref is not None and idem_snap is not None:
        writes.replace(idem_ref, idempotency.record(idem, outcome, at), idem_snap)
    try:
        store.commit(writes)
    except WriteConflict:
        return None
    return outcome


# ---- heartbeat and release ---------------------------------------------------------------------------------------


def _change_handoff(store: Store, principal: Principal, workflow_id: str, handoff_id: str,
                    idem: IdempotencyRequest | None, decide: Decide) -> Outcome:
    """Read the hand-off (one batched RPC with the Idempotency-Key record), decide, and commit it with the
    workflow's `current_handoff` under the hand-off's update time; on a lost race, read again."""
    ref = store.handoff(principal.account_id, handoff_id)

    def change(snaps: dict[str, Snapshot], at: datetime) -> tuple[dict, Writes]:
        snap = snaps[ref.path]
        changed = decide(_load(snap, workflow_id), at)
        writes = Writes()
        writes.update(ref, handoff_document(changed), if_updated_at=snap.update_time)
        writes.update(store.workflow(principal.account_id, workflow_id), _wf_current(changed), if_updated_at=None)
        return changed.model_dump(mode="json"), writes

    return commit_change(store, principal.account_id, idem, [ref], change, attempts=MAX_ATTEMPTS,
                         exhausted="The hand-off is changing too fast; read it again and retry.")


def heartbeat_handoff(store: Store, principal: Principal, workflow_id: str, handoff_id: str,
                      request: HeartbeatRequest, idem: IdempotencyRequest | None) -> Outcome:
    def decide(handoff: Handoff, at: datetime) -> Handoff:
        return domain.heartbeat(handoff, key_id=principal.actor, agent_id=request.agent_id,
                                lease_seconds=request.lease_seconds, now=at)

    return _change_handoff(store, principal, workflow_id, handoff_id, idem, decide)


def release_handoff(store: Store, principal: Principal, workflow_id: str, handoff_id: str,
                    request: ReleaseRequest, idem: IdempotencyRequest | None) -> Outcome:
    def decide(handoff: Handoff, _: datetime) -> Handoff:
        return domain.release(handoff, key_id=principal.actor, agent_id=request.agent_id,
                              is_owner=principal.is_owner)

    return _change_handoff(store, principal, workflow_id, handoff_id, idem, decide)


# ---- list --------------------------------------------------------------------------------------------------------


def list_handoffs(store: Store, principal: Principal, workflow_id: str, *, limit: int,
                  page_token: str | None) -> dict:
    """The workflow's hand-offs, newest first."""
    scope = f"handoffs:{workflow_id}"
    before = None
    if page_token:
        before = decode_page_token(page_token, scope).get("seq")
        if not isinstance(before, int) or before < 1:
            raise ValidationFailed([{"field": "query:page_token", "message": "malformed token"}])
    snaps = store.query(store.handoffs(principal.account_id), filters=[("workflow_id", "==", workflow_id)],
                        order=[("seq", "DESCENDING")], limit=limit + 1,
                        start_after={"seq": before} if before else None)
    if not snaps and not before and not store.get(store.workflow(principal.account_id, workflow_id)).exists:
        raise NotFound("No workflow with that id.")
    handoffs = [Handoff.model_validate(s.to_dict()) for s in snaps[:limit]]
    token = encode_page_token(scope, {"seq": handoffs[-1].seq}) if len(snaps) > limit else None
    return HandoffPage(handoffs=handoffs, next_page_token=token).model_dump(mode="json")


# ---- for the scheduled cleanup -----------------------------------------------------------------------------------


def release_expired_leases(store: Store, *, now: datetime | None = None, limit: int = 500) -> int:
    """Return claims whose lease ran out to PENDING (at their original place in the queue), across all accounts.
    Claims already take such hand-offs by themselves; this keeps the workflows' `current_handoff` truthful for
    people looking at them. Each is a precondition commit: a claim or heartbeat that wins the race is kept."""
    at = now or clock.now()
    snaps = store.query("handoffs", filters=[("status", "==", HandoffStatus.CLAIMED.value),
                                             ("lease_expires_at", "<", at)], limit=limit)
    released = 0
    for snap in snaps:
        handoff = Handoff.model_validate(snap.to_dict())
        if domain.lease_live(handoff, at):
            continue
        account_id = snap.reference.parent.parent.id  # accounts/{account_id}/handoffs/{id}
        pending = domain.release(handoff, key_id="", agent_id="", is_owner=True)
        writes = Writes()
        writes.update(snap.reference, handoff_document(pending), if_updated_at=snap.update_time)
        writes.update(store.workflow(account_id, handoff.workflow_id), _wf_current(pending), if_updated_at=None)
        try:
            store.commit(writes)
            released += 1
        except WriteConflict:
            continue
    return released


def delete_workflow_handoffs(store: Store, account_id: str, workflow_id: str) -> int:
    """Delete a workflow's hand-offs (when the workflow itself is deleted); returns how many."""
    return store.delete_matching(store.handoffs(account_id), filters=[("workflow_id", "==", workflow_id)])
