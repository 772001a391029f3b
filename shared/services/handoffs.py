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

from shared.adapters.firestore import Doc, Key, Store, Writes
from shared.domain import handoff as domain
from shared.domain import pricing
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
from shared.runtime.config import config
from shared.services import commits, idempotency
from shared.services.auth import Principal
from shared.services.changes import Change, stage
from shared.services.idempotency import IdempotencyRequest, Outcome
from shared.services.pagination import decode_page_token, encode_page_token

# Candidates per claim query: enough that 16+ agents racing for the head of the queue spread out within one result
# (measured in bench/claims.py: 8 first and 32 after a lost race cost ~0.9 more queries per contended claim; 32
# from the start costs up to 32 document reads per claim, cheap to parse: the workflow copy is one JSON string).
QUEUE_DEPTH = 32
# Long poll: the queue is queried again after these pauses (then every second) until wait_seconds is up.
POLL_PAUSES = (0.1, 0.2, 0.4, 0.7)

# The hand-off as changed, and the workflow as the change leaves it (None: as its copy says).
Decide = Callable[[Handoff, Workflow, datetime], tuple[Handoff, Workflow | None]]


def _load(doc: Doc | None, workflow_id: str) -> Handoff:
    """The hand-off, if it exists in the caller's account and belongs to this workflow (else 404, as for any id
    of another account)."""
    if doc is None or not doc.exists or doc.get("workflow_id") != workflow_id:
        raise NotFound("No hand-off with that id in this workflow.")
    return Handoff.model_validate(doc.data)


def _workflow_copy(doc: Doc) -> Workflow:
    """The workflow as of the hand-off's last write: every change of the workflow refreshes this copy in the same
    commit, so a write guarded by the hand-off's update time knows the workflow is still so."""
    return Workflow.model_validate_json(doc.get("workflow"))


# ---- claim -------------------------------------------------------------------------------------------------------


def claim_handoff(store: Store, principal: Principal, request: ClaimRequest,
                  idem: IdempotencyRequest | None) -> Outcome | None:
    """The oldest claimable hand-off for the caller's roles, claimed under a lease; None when there is none (after
    waiting up to `wait_seconds` for one). Each attempt of the commit loop is one query of the queue: a candidate that
    another agent takes first is a lost `write_once`, and the claim tries another candidate of the same result (at
    random, so racing agents spread out); when they are all taken it queries again, its next attempt. The loop's
    policy bounds those attempts (then 409 `version_conflict`)."""
    roles = domain.claimable_roles(principal.roles, request.roles)
    idem_key = store.idempotency(principal.account_id, idem.key_hash) if idem else None
    idem_doc = store.get(idem_key) if idem_key else None
    if idem and (replayed := idempotency.replay(idem_doc, idem, clock.now())):
        return replayed
    deadline = time.monotonic() + request.wait_seconds
    pauses = iter(POLL_PAUSES)

    def attempt(number: int) -> tuple[Outcome | None, Writes]:
        nonlocal idem_doc
        while True:
            candidates = store.query(
                store.handoffs(principal.account_id),
                filters=[("to_role", "in", [r.value for r in roles]), ("claimable_at", "<=", clock.now())],
                order=[("created_at", "ASCENDING")],
                limit=QUEUE_DEPTH,
            )
            if candidates:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, Writes()
            time.sleep(min(next(pauses, 1.0), remaining))
        lost = False
        while candidates:
            # The oldest first; after a lost race, any other (at random): racing agents then spread out instead of
            # all losing again on the same next one.
            doc = candidates.pop(random.randrange(len(candidates)) if lost else 0)
            at = clock.now()
            claimed = domain.claim(Handoff.model_validate(doc.data), key_id=principal.actor,
                                   agent_id=request.agent_id, lease_seconds=request.lease_seconds, now=at)
            lost = True
            copy = _workflow_copy(doc)
            # Someone else's since the query; or its workflow's budget is spent (such hand-offs leave the queue's
            # index in the commit that spends it: this only guards against a document written before that rule).
            if claimed is None or workflow_domain.exhausted(copy):
                continue
            writes = Writes()
            workflow = stage(store, writes, Change.of_handoff(principal.account_id, copy, claimed, guard=doc))
            result = ClaimResult(handoff=claimed, workflow=workflow_domain.view(workflow, principal.roles))
            outcome = Outcome(body=result.model_dump(mode="json"))
            if idem and idem_key and idem_doc is not None:
                writes.replace(idem_key, idempotency.record(idem, outcome, at), idem_doc)
            if commits.write_once(store, writes):
                return outcome, Writes()
            if idem and idem_key:  # the race lost may have been over our own Idempotency-Key
                idem_doc = store.get(idem_key)
                if replayed := idempotency.replay(idem_doc, idem, clock.now()):
                    return replayed, Writes()
        raise commits.LostRace  # the whole result was taken by others: there may be more behind it

    return commits.run(store, attempt, busy="Other agents keep taking the hand-offs first; claim again.")


# ---- heartbeat and release ---------------------------------------------------------------------------------------


def _change_handoff(store: Store, principal: Principal, workflow_id: str, handoff_id: str,
                    idem: IdempotencyRequest | None, decide: Decide) -> Outcome:
    """Read the hand-off (one batched RPC with the Idempotency-Key record), decide, and commit it through the one
    write path (the workflow's `current_handoff` follows) under the hand-off's update time."""
    key = store.handoff(principal.account_id, handoff_id)

    def change(docs: dict[Key, Doc], at: datetime) -> tuple[dict, Writes]:
        doc = docs[key]
        handoff, workflow = _load(doc, workflow_id), _workflow_copy(doc)
        changed, moved = decide(handoff, workflow, at)
        writes = Writes()
        stage(store, writes, Change.of_handoff(principal.account_id, workflow, changed, guard=doc, changed=moved))
        return changed.model_dump(mode="json"), writes

    return commits.change(store, principal.account_id, idem, [key], change,
                          busy="The hand-off is changing too fast; read it again and retry.")


def heartbeat_handoff(store: Store, principal: Principal, workflow_id: str, handoff_id: str,
                      request: HeartbeatRequest, idem: IdempotencyRequest | None) -> Outcome:
    """Extend the lease; usage it reports is added to the workflow's totals (for the hand-off's role) and kept on the
    hand-off, in the same commit. The hand-off's update time guards it, and that also proves the workflow's totals
    read from its copy current: every write of the workflow writes its open hand-off in the same commit."""
    tally = pricing.Tally.of(pricing.price_usage(request.usage, config().prices))

    def decide(handoff: Handoff, workflow: Workflow, at: datetime) -> tuple[Handoff, Workflow | None]:
        extended = domain.heartbeat(handoff, key_id=principal.actor, agent_id=request.agent_id,
                                    lease_seconds=request.lease_seconds, now=at, usage=tally)
        return extended, workflow_domain.add_usage(workflow, handoff.to_role, tally, at) if tally else None

    return _change_handoff(store, principal, workflow_id, handoff_id, idem, decide)


def release_handoff(store: Store, principal: Principal, workflow_id: str, handoff_id: str,
                    request: ReleaseRequest, idem: IdempotencyRequest | None) -> Outcome:
    def decide(handoff: Handoff, _: Workflow, __: datetime) -> tuple[Handoff, Workflow | None]:
        return domain.release(handoff, key_id=principal.actor, agent_id=request.agent_id,
                              is_owner=principal.is_owner, note=request.note), None

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
    docs = store.query(store.handoffs(principal.account_id), filters=[("workflow_id", "==", workflow_id)],
                       order=[("seq", "DESCENDING")], limit=limit + 1,
                       start_after={"seq": before} if before else None)
    if not docs and not before and not store.get(store.workflow(principal.account_id, workflow_id)).exists:
        raise NotFound("No workflow with that id.")
    handoffs = [Handoff.model_validate(d.data) for d in docs[:limit]]
    token = encode_page_token(scope, {"seq": handoffs[-1].seq}) if len(docs) > limit else None
    return HandoffPage(handoffs=handoffs, next_page_token=token).model_dump(mode="json")


# ---- for the scheduled cleanup -----------------------------------------------------------------------------------


def release_expired_leases(store: Store, *, now: datetime | None = None, limit: int = 500) -> int:
    """Return claims whose lease ran out to PENDING (at their original place in the queue), across all accounts.
    Claims already take such hand-offs by themselves; this keeps the workflows' `current_handoff` truthful for
    people looking at them. Each is a precondition write: a claim or heartbeat that wins the race is kept."""
    at = now or clock.now()
    docs = store.query(Store.every_account("handoffs"), filters=[("status", "==", HandoffStatus.CLAIMED.value),
                                                                 ("lease_expires_at", "<", at)], limit=limit)
    released = 0
    for doc in docs:
        handoff = Handoff.model_validate(doc.data)
        if domain.lease_live(handoff, at) or doc.account_id is None:
            continue
        pending = domain.release(handoff, key_id="", agent_id="", is_owner=True, note=handoff.release_note)
        writes = Writes()
        stage(store, writes, Change.of_handoff(doc.account_id, _workflow_copy(doc), pending, guard=doc))
        released += commits.write_once(store, writes)
    return released


def delete_workflow_handoffs(store: Store, account_id: str, workflow_id: str) -> int:
    """Delete a workflow's hand-offs (when the workflow itself is deleted); returns how many."""
    return commits.delete_all(store, store.handoffs(account_id), filters=[("workflow_id", "==", workflow_id)])
