"""The one commit loop's policy for a lost race, the same for every writer: decide again on a fresh read, at most
`commits.ATTEMPTS` commits, then 409 `version_conflict` with nothing written; `write_once` does not decide again.
A rival that always wins is simulated at the store's commit (the emulator cannot be made to lose on demand)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from shared.adapters.firestore import Store, WriteConflict, Writes
from shared.domain.errors import VersionConflict
from shared.domain.state_machine import Role
from shared.services import commits
from tests import billing_support
from tests.agents import Agent
from tests.billing_support import deliver, event, subscription, uid
from tests.helpers import Response, snapshot_all

billing_env = billing_support.billing_env


@contextmanager
def always_losing(store: Store) -> Iterator[list[Writes]]:
    """Every commit of `store` loses its race (as if a rival's commit always landed first); the attempts are kept."""
    tried: list[Writes] = []

    def lose(writes: Writes) -> None:
        tried.append(writes)
        raise WriteConflict("a rival landed first")

    store.commit = lose  # type: ignore[method-assign]
    try:
        yield tried
    finally:
        del store.commit  # the class's method again


def test_the_loop_decides_again_on_each_lost_race_then_answers_409(store):
    numbers: list[int] = []

    def attempt(number: int) -> tuple[str, Writes]:
        numbers.append(number)
        writes = Writes()
        writes.create(store.account(f"acct_{number}"), {"n": number})
        return "done", writes

    with always_losing(store) as tried, pytest.raises(VersionConflict, match="busy") as refused:
        commits.run(store, attempt, busy="busy")
    assert numbers == list(range(commits.ATTEMPTS)) and len(tried) == commits.ATTEMPTS
    assert refused.value.status == 409 and refused.value.code == "version_conflict"


def test_an_attempt_whose_own_writes_all_lost_counts_like_a_lost_commit(store):
    numbers: list[int] = []

    def attempt(number: int) -> tuple[str, Writes]:
        numbers.append(number)
        if number < 3:
            raise commits.LostRace
        return "landed", Writes()

    assert commits.run(store, attempt, busy="busy") == "landed" and numbers == [0, 1, 2, 3]
    with pytest.raises(VersionConflict):
        commits.run(store, lambda number: (_ for _ in ()).throw(commits.LostRace()), busy="busy")


def test_nothing_to_write_is_no_commit_and_write_once_does_not_retry(store):
    assert commits.run(store, lambda number: ("nothing", Writes()), busy="") == "nothing"
    assert store.rpcs["commit"] == 0
    writes = Writes()
    writes.create(store.account("acct_once"), {"n": 1})
    with always_losing(store) as tried:
        assert commits.write_once(store, writes) is False
    assert len(tried) == 1
    assert commits.write_once(store, writes) is True
    assert commits.write_once(store, writes) is False  # it exists now: a create's lost race


def _every_writer(api, tenant, billing) -> dict[str, Callable[[], Response]]:
    """One request per kind of writer, each of which would succeed against a store that lets it commit."""
    wf = api.create(tenant)
    api.create(tenant)  # two hand-offs waiting: one claimed here, one for the claim below to lose
    agent = Agent(api, tenant.agents[Role.Q_ASSISTANT], "agent-1")
    held = agent.claim(expect=200, lease_seconds=600).body["handoff"]
    customer = billing_support.customer_tenant(api, "Payer")
    t = billing_support.now_s()
    webhook = event("customer.subscription.updated", subscription(
        uid("sub"), uid("cus"), "active", billing_support.PRICE_PRO, t + 86_400, account_id=customer.account_id), t)
    return {
        "create_workflow": lambda: api.post("/v1/workflows", {"title": "x"}, tenant.owner),
        "transition": lambda: api.post(f"/v1/workflows/{wf['id']}/transitions", {"to": "CANCELLED"}, tenant.owner),
        "heartbeat": lambda: agent.heartbeat(held["workflow_id"], held["id"]),
        "claim": lambda: agent.claim(),
        "checkout": lambda: api.post("/v1/billing/checkout-session", {"plan": "pro"}, customer.owner),
        "stripe_webhook": lambda: deliver(api, webhook),
    }


def test_every_writer_answers_409_after_the_same_number_of_lost_races(api, tenant, billing_env):
    writers = _every_writer(api, tenant, billing_env)
    for name, call in writers.items():
        before = snapshot_all(api.store)
        with always_losing(api.store) as tried:
            r: Any = call()
        assert (r.status, r.code) == (409, "version_conflict"), (name, r.body)
        assert len(tried) == commits.ATTEMPTS, (name, len(tried))
        assert snapshot_all(api.store) == before, name
