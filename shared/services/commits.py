"""Every commit of the product goes through `run`, the one commit loop, with one policy for a lost race.

A change reads what it needs, decides, and commits its writes atomically, each write guarded by a precondition (the
update time of what it read, or "must not exist yet"); never a read-write transaction (they back off for a second or
more under contention). Another commit may land between the read and the commit: a lost race. The policy:

- A lost race decides again, on a fresh read, up to `ATTEMPTS` (40) attempts in all. Each lost race means another
  writer's commit landed, so 40 attempts serve 40 writers racing for one document (agents on one workflow, creates
  on one account) without refusing anyone. (A claim's attempt is one query of the work queue: within it, a
  candidate taken first by another agent is a `write_once` that lost, and the claim tries another candidate of the
  same result; it queries afresh, its next attempt, when all of them were taken.)
- When the last attempt loses too, the caller gets `VersionConflict`: 409 `version_conflict` ("changing too fast:
  read it again and retry"), and nothing of this request was written. (With `expected_version` a transition hears
  409 on its first lost race, since the re-read shows another version.)
- A decision may refuse (a `ProblemError`: nothing written) or find nothing to write (no commit at all).
- `write_once` is for writes whose lost race is itself the answer ("someone else changed or removed it first: leave
  it"): the scheduled cleanup's, and lease expiry. It is the same loop, told not to decide again: it says whether
  its write landed.

`change` is the loop for the API's read → decide → commit use cases: one batched read (the documents the change
needs, plus its Idempotency-Key record), a replay if the key was used for this very request, the decision, and one
atomic commit of the decision's writes with the key's record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from shared.adapters.firestore import Collection, Doc, Key, Store, WriteConflict, Writes
from shared.domain.errors import VersionConflict
from shared.runtime import clock
from shared.services import idempotency
from shared.services.idempotency import IdempotencyRequest, Outcome

ATTEMPTS = 40
T = TypeVar("T")


class LostRace(Exception):
    """Raised by an attempt whose own `write_once`s all lost (a claim whose candidates were all taken): decide again
    on a fresh read, like a lost commit."""

# One attempt: given its number (0 first), read what it needs, decide, and return the result with the writes that
# make it true (empty: nothing to write).
Attempt = Callable[[int], tuple[T, Writes]]


def run(store: Store, attempt: Attempt[T], *, busy: str, attempts: int = ATTEMPTS) -> T:
    """The commit loop: `attempt` decides and its writes are committed, until a commit lands; on a lost race `attempt`
    decides again (it reads afresh: its number says which try it is), at most `attempts` times. Raises
    `VersionConflict(busy)` when every attempt lost its race."""
    for number in range(attempts):
        try:
            result, writes = attempt(number)
            if not writes:
                return result
            store.commit(writes)
        except (WriteConflict, LostRace):
            continue  # someone else's commit landed first: decide again on what is there now
        return result
    raise VersionConflict(busy)


def write_once(store: Store, writes: Writes) -> bool:
    """Commit `writes` if their preconditions hold; a lost race is not retried (the caller's answer is "leave it").
    True if they landed."""
    return run(store, lambda number: (True, writes) if number == 0 else (False, Writes()), busy="")


def delete_all(store: Store, collection: Collection, *, filters: Iterable[tuple[str, str, Any]] = (),
               page: int = 400) -> int:
    """Delete every document the query finds, one commit per page (a deleted workflow's children); returns how many.
    Unconditional deletes: safe to repeat, and two runs at once delete nothing twice."""
    filters = list(filters)
    deleted = 0
    while docs := store.query(collection, filters=filters, limit=page):
        writes = Writes()
        for doc in docs:
            writes.delete(doc.key)
        write_once(store, writes)
        deleted += len(docs)
    return deleted


# A use case's decision on what it read: (response body, the writes that make it true).
Decide = Callable[[dict[Key, Doc], datetime], tuple[dict[str, Any], Writes]]


def change(
    store: Store,
    account_id: str,
    idem: IdempotencyRequest | None,
    keys: Iterable[Key],
    decide: Decide,
    *,
    busy: str,
    first_read: dict[Key, Doc] | None = None,
    record_at: Key | None = None,
) -> Outcome:
    """Run `decide` on a fresh batched read of `keys` until its commit lands (or replay the key's first response).

    `decide` may raise a `ProblemError` to refuse (nothing is written). `first_read`: documents the caller already
    read (found by a query), decided on instead of the first read when no Idempotency-Key needs checking (the
    preconditions still guard the commit). `busy`: the 409's detail when every attempt lost its race. `record_at`:
    where the Idempotency-Key record lives when it is not the account's (a person's own requests, which belong to no
    account yet: sign-up, accepting an invitation).
    """
    idem_key = (record_at or store.idempotency(account_id, idem.key_hash)) if idem else None
    to_read = [*keys, *([idem_key] if idem_key else [])]

    def attempt(number: int) -> tuple[Outcome, Writes]:
        at = clock.now()
        if number == 0 and first_read is not None and idem_key is None:
            docs = first_read
        else:
            docs = store.get_many(to_read)
        if idem and idem_key and (replayed := idempotency.replay(docs[idem_key], idem, at)):
            return replayed, Writes()
        body, writes = decide(docs, at)
        outcome = Outcome(body=body)
        if idem and idem_key:
            writes.replace(idem_key, idempotency.record(idem, outcome, at), docs[idem_key])
        return outcome, writes

    return run(store, attempt, busy=busy)
