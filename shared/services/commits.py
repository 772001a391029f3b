"""The one read → decide → commit loop that every idempotent change uses.

One batched read (the documents the change needs, plus its Idempotency-Key record), a replay if the key was used
for this very request, the use case's decision, and one atomic commit carrying the decision's writes and the key's
record. The decision's writes carry their own preconditions; a lost race re-reads and decides again, bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.adapters.firestore import DocRef, Snapshot, Store, WriteConflict, Writes
from shared.domain.errors import VersionConflict
from shared.runtime import clock
from shared.services import idempotency
from shared.services.idempotency import IdempotencyRequest, Outcome

# (response body, the writes that make it true)
Decide = Callable[[dict[str, Snapshot], datetime], tuple[dict[str, Any], Writes]]


def commit_change(
    store: Store,
    account_id: str,
    idem: IdempotencyRequest | None,
    refs: list[DocRef],
    decide: Decide,
    *,
    attempts: int,
    exhausted: str,
    first_read: dict[str, Snapshot] | None = None,
    idem_ref: DocRef | None = None,
) -> Outcome:
    """Run `decide` on a fresh read until its commit lands (or replay the key's first response).

    `decide` may raise a `ProblemError` to refuse (nothing is written). `first_read`: documents the caller already
    read (e.g. found by a query), used instead of the first read when no Idempotency-Key needs checking.
    `exhausted`: the 409 `version_conflict` detail when every attempt lost its race. `idem_ref`: where the
    Idempotency-Key record lives when not under `account_id` (a person's own requests, e.g. sign-up).
    """
    if idem is None:
        idem_ref = None
    elif idem_ref is None:
        idem_ref = store.idempotency(account_id, idem.key_hash)
    all_refs = [*refs, *([idem_ref] if idem_ref else [])]
    for attempt in range(attempts):
        at = clock.now()
        if attempt == 0 and first_read is not None and idem_ref is None:
            snaps = first_read
        else:
            snaps = store.get_many(all_refs)
        if idem and idem_ref and (replayed := idempotency.replay(snaps.get(idem_ref.path), idem, at)):
            return replayed
        body, writes = decide(snaps, at)
        outcome = Outcome(body=body)
        if idem and idem_ref:
            writes.replace(idem_ref, idempotency.record(idem, outcome, at), snaps[idem_ref.path])
        try:
            store.commit(writes)
            return outcome
        except WriteConflict:
            continue  # someone else's commit landed first (or a same-key request: the re-read replays it)
    raise VersionConflict(exhausted)
