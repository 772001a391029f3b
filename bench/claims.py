"""Claim benchmark: the agent work queue's cost and throughput against the real Firestore emulator.

1. Uncontended: one agent claims 100 hand-offs one after another. The floor is one query and one commit per claim.
2. The race: 16 agents (16 keys) claim from 300 pending hand-offs at once, until the queue is empty. Lost races
   cost extra commits (a precondition write that fails) and, when a whole query result was taken, extra queries.

RPCs are counted at the store adapter (`Store.rpcs`); claims/s is wall-clock on this machine's emulator, printed
for comparison between runs, never asserted.

    python -m bench.claims        (or `make bench`, which runs every bench module's `run()`)

Uses the emulator named by FIRESTORE_EMULATOR_HOST, else starts one for the run.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

from bench import scaled

AGENTS = scaled(16, 4)
RACE_HANDOFFS = scaled(300, 20)
SOLO_HANDOFFS = scaled(100, 5)


def run() -> None:
    from tools.emulator import ensure_emulator

    with ensure_emulator():
        _run()


def _seed(store, owner, count: int) -> None:
    from shared.domain.models import CreateWorkflowRequest
    from shared.services.workflows import create_workflow

    for i in range(count):
        create_workflow(store, owner, CreateWorkflowRequest(title=f"job {i}"), None)


def _agents(store, account_id: str, count: int) -> list:
    from shared.domain.state_machine import Role
    from shared.services import accounts
    from shared.services.auth import Principal

    principals = []
    for i in range(count):
        _, key = accounts.create_key(store, account_id, [Role.Q_ASSISTANT], name=f"agent {i}")
        principals.append(Principal(account_id=account_id, key_id=key.key_id, roles=frozenset(key.roles)))
    return principals


def _phase(store, principals: list, total: int) -> tuple[float, Counter, list[int]]:
    """Every principal claims until told there is nothing; returns (seconds, RPCs, claims per agent)."""
    from shared.domain.models import ClaimRequest
    from shared.services.handoffs import claim_handoff

    got = [0] * len(principals)
    barrier = threading.Barrier(len(principals) + 1)

    def agent(i: int) -> None:
        request = ClaimRequest(agent_id=f"agent-{i}", lease_seconds=3600)
        barrier.wait()
        while claim_handoff(store, principals[i], request, None) is not None:
            got[i] += 1

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(len(principals))]
    for t in threads:
        t.start()
    store.rpcs.clear()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    assert sum(got) == total, (sum(got), total)
    return seconds, Counter(store.rpcs), got


def _report(title: str, seconds: float, rpcs: Counter, got: list[int], claims: int) -> None:
    # Each agent's last call finds nothing: one query (and no commit) that is not a claim.
    empty_polls = len(got)
    queries, commits = rpcs["query"] - empty_polls, rpcs["commit"]
    print(f"  {title}: {claims} claims in {seconds:.2f} s = {claims / seconds:.0f} claims/s")
    print(f"    RPCs per claim: {queries / claims:.2f} queries + {commits / claims:.2f} commits "
          f"(floor: 1 query + 1 commit); lost races: {commits - claims}; final empty polls: {empty_polls}")
    if len(got) > 1:
        print(f"    claims per agent: min {min(got)}, max {max(got)}")


def _run() -> None:
    from shared.adapters.firestore import Store, firestore_client
    from shared.domain.state_machine import Role
    from shared.services import accounts
    from shared.services.auth import Principal

    store = Store(firestore_client(f"bench-claims-{uuid.uuid4().hex[:8]}"))
    account = accounts.create_account(store, "Bench", entitled=True)
    _, owner_key = accounts.create_key(store, account.id, [Role.OWNER], name="owner")
    owner = Principal(account_id=account.id, key_id=owner_key.key_id, roles=frozenset({Role.OWNER}))
    principals = _agents(store, account.id, AGENTS)

    print("claim benchmark (Firestore emulator; RPCs counted at the store adapter)")
    _seed(store, owner, SOLO_HANDOFFS)
    seconds, rpcs, got = _phase(store, principals[:1], SOLO_HANDOFFS)
    _report(f"1 agent, {SOLO_HANDOFFS} hand-offs, uncontended", seconds, rpcs, got, SOLO_HANDOFFS)

    _seed(store, owner, RACE_HANDOFFS)
    seconds, rpcs, got = _phase(store, principals, RACE_HANDOFFS)
    _report(f"{AGENTS} agents racing for {RACE_HANDOFFS} hand-offs", seconds, rpcs, got, RACE_HANDOFFS)


if __name__ == "__main__":
    run()
