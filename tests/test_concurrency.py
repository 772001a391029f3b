"""Racing writers on one workflow, against the real emulator: 16 threads, through the service layer and through the
HTTP router. Nothing is lost or doubled: every answer is 200 or 409, the number of 200s is version - 1, every 200's
event is the stored event of its seq, and the event-log invariants hold. Also: an uncontended change is exactly two
store RPCs (one batched read, one commit), plus the one key read at the HTTP edge."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from shared.domain.errors import ProblemError
from shared.domain.models import RollbackRequest, TransitionRequest
from shared.domain.state_machine import Role, State
from shared.services import accounts
from shared.services import workflows as service
from shared.services.auth import Principal, authenticate
from shared.services.idempotency import IdempotencyRequest
from shared.services.idempotency import parse as parse_idempotency_key
from tests.helpers import Api, Tenant, assert_event_log, cold_instance, stored_events, together

THREADS = 16
TOGGLE = {State.DISCOVERY: State.PLANNING, State.PLANNING: State.DISCOVERY}


@dataclass(frozen=True)
class Outcome:
    """One attempt of one thread: what it asked, as whom, and what it heard."""

    actor: str
    to: str
    expected_version: int | None
    status: int
    code: str | None
    body: dict[str, Any]


def race(attempt: Callable[[int, int], Outcome | None], rounds: int) -> list[Outcome]:
    """Run `attempt(thread, round)` in THREADS threads released together; None from an attempt stops its thread."""

    def worker(thread: int) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for n in range(rounds):
            outcome = attempt(thread, n)
            if outcome is None:
                break
            outcomes.append(outcome)
        return outcomes

    return [o for per_thread in together(THREADS, worker) for o in per_thread]


def check_no_lost_or_doubled_change(api: Api, tenant: Tenant, workflow_id: str, outcomes: list[Outcome],
                                    allowed_conflicts: set[str], *, start: int = 1) -> int:
    """The invariants every race must keep (the race began at version `start`); returns the final version."""
    assert outcomes
    assert {o.status for o in outcomes} <= {200, 409}, Counter(o.status for o in outcomes)
    assert {o.code for o in outcomes if o.status == 409} <= allowed_conflicts
    wins = [o for o in outcomes if o.status == 200]
    final = assert_event_log(api.store, tenant.account_id, workflow_id)
    assert len(wins) == final.version - start, "every 200 is exactly one committed change (no lost update)"
    seqs = [o.body["event"]["seq"] for o in wins]
    assert sorted(seqs) == list(range(start + 1, final.version + 1)), "no two 200s share an event; none missing"
    stored = {e.seq: e for e in stored_events(api.store, tenant.account_id, workflow_id)}
    for o in wins:
        event = o.body["event"]
        assert o.body["workflow"]["version"] == event["seq"]
        assert event["to_state"] == o.to and o.body["workflow"]["state"] == o.to
        mine = stored[event["seq"]]
        assert (mine.to_state.value, mine.actor, mine.type.value) == (o.to, o.actor, "TRANSITIONED")
        if o.expected_version is not None:
            assert event["seq"] == o.expected_version + 1
    if any(o.expected_version is not None for o in wins):
        # With expected_version, each version had exactly one winner.
        assert sorted(o.expected_version for o in wins) == list(range(start, final.version))
    return final.version


# ---- through the service layer -------------------------------------------------------------------------------------


def principal(api: Api, key: str) -> Principal:
    return authenticate(api.store, f"Bearer {key}")


def service_attempt(api: Api, who: Principal, workflow_id: str, to: State, *, expected_version: int | None = None,
                    idem: IdempotencyRequest | None = None) -> Outcome:
    request = TransitionRequest(to=to, expected_version=expected_version)
    try:
        outcome = service.transition_workflow(api.store, who, workflow_id, request, idem)
        return Outcome(who.key_id, to.value, expected_version, 200, None, outcome.body)
    except ProblemError as exc:
        return Outcome(who.key_id, to.value, expected_version, exc.status, exc.code, exc.to_problem())


@pytest.mark.parametrize("with_expected_version", [False, True], ids=["blind", "expected_version"])
def test_service_race_on_one_workflow(api, tenant, with_expected_version):
    wf = api.create(tenant)  # version 1, DISCOVERY: so the number of 200s must be version - 1
    # Half the threads act as the owner, half as the Q_ASSISTANT agent: both may toggle PLANNING <-> DISCOVERY.
    actors = [principal(api, tenant.owner), principal(api, tenant.agents[Role.Q_ASSISTANT])]

    def attempt(thread: int, _: int) -> Outcome:
        current = service.get_workflow(api.store, actors[thread % 2], wf["id"])
        to = TOGGLE[State(current["state"])]
        expected = current["version"] if with_expected_version else None
        return service_attempt(api, actors[thread % 2], wf["id"], to, expected_version=expected)

    outcomes = race(attempt, rounds=6)
    allowed = {"version_conflict"} if with_expected_version else {"invalid_transition", "version_conflict"}
    version = check_no_lost_or_doubled_change(api, tenant, wf["id"], outcomes, allowed)
    assert version > 3, "the race made progress"
    if with_expected_version:
        assert any(o.code == "version_conflict" for o in outcomes), "the threads did collide"


def test_racing_retries_never_exceed_max_retries(api, tenant):
    """TESTING -> IMPLEMENTATION counts as a retry. Threads ping-pong it until the limit: the limit is checked
    against the committed count, so racing cannot overshoot it."""
    wf = api.create(tenant, max_retries=10)
    for to in ("PLANNING", "DESIGN", "IMPLEMENTATION"):
        api.move(tenant, wf, to)
    owner = principal(api, tenant.owner)
    ping_pong = {State.IMPLEMENTATION: State.TESTING, State.TESTING: State.IMPLEMENTATION}

    def attempt(_: int, __: int) -> Outcome | None:
        current = service.get_workflow(api.store, owner, wf["id"])
        result = service_attempt(api, owner, wf["id"], ping_pong[State(current["state"])])
        return None if result.code == "retry_limit_exceeded" and current["state"] == "TESTING" else result

    outcomes = race(attempt, rounds=60)
    check_no_lost_or_doubled_change(api, tenant, wf["id"], outcomes,
                                    {"invalid_transition", "retry_limit_exceeded", "version_conflict"}, start=4)
    final = assert_event_log(api.store, tenant.account_id, wf["id"])
    retries = [e for e in stored_events(api.store, tenant.account_id, wf["id"])
               if (e.from_state, e.to_state) == (State.TESTING, State.IMPLEMENTATION)]
    assert final.retry_count == len(retries) == final.max_retries == 10


def test_exactly_one_terminal_move_wins(api, tenant):
    """Sixteen owners race to fail or cancel one workflow: one wins, the account's active count drops once."""
    wf = api.create(tenant)
    api.move(tenant, wf, "PLANNING")
    before = accounts.get_account(api.store, tenant.account_id).active_workflows
    owner = principal(api, tenant.owner)

    def attempt(thread: int, _: int) -> Outcome:
        return service_attempt(api, owner, wf["id"], State.CANCELLED if thread % 2 else State.FAILED)

    outcomes = race(attempt, rounds=1)
    check_no_lost_or_doubled_change(api, tenant, wf["id"], outcomes, {"invalid_transition"}, start=2)
    assert sum(o.status == 200 for o in outcomes) == 1
    assert accounts.get_account(api.store, tenant.account_id).active_workflows == before - 1


def test_racing_repeats_of_one_idempotency_key_apply_once(api, tenant):
    wf = api.create(tenant)
    owner = principal(api, tenant.owner)
    path = f"/v1/workflows/{wf['id']}/transitions"
    idem = parse_idempotency_key("race-1", method="POST", path=path, body={"to": "PLANNING"})

    outcomes = race(lambda _, __: service_attempt(api, owner, wf["id"], State.PLANNING, idem=idem), rounds=1)
    assert {o.status for o in outcomes} == {200}
    assert len({o.body["event"]["seq"] for o in outcomes}) == 1, "every repeat got the first response"
    assert assert_event_log(api.store, tenant.account_id, wf["id"]).version == 2


# ---- through the HTTP router ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_expected_version", [False, True], ids=["blind", "expected_version"])
def test_http_race_on_one_workflow(api, tenant, live, with_expected_version):
    wf = api.create(tenant)
    keys = [tenant.owner, tenant.agents[Role.Q_ASSISTANT]]
    key_ids = [principal(api, k).key_id for k in keys]

    def attempt(thread: int, _: int) -> Outcome:
        key = keys[thread % 2]
        current = live.request("GET", f"/v1/workflows/{wf['id']}", key=key)
        assert current.status == 200, current.body
        to = TOGGLE[State(current.body["state"])].value
        body: dict[str, Any] = {"to": to}
        if with_expected_version:
            body["expected_version"] = current.body["version"]
        r = live.request("POST", f"/v1/workflows/{wf['id']}/transitions", key=key, body=body)
        return Outcome(key_ids[thread % 2], to, body.get("expected_version"), r.status, r.code, r.body)

    outcomes = race(attempt, rounds=4)
    allowed = {"version_conflict"} if with_expected_version else {"invalid_transition", "version_conflict"}
    version = check_no_lost_or_doubled_change(api, tenant, wf["id"], outcomes, allowed)
    assert version > 3, "the race made progress"
    for o in outcomes:
        if o.code == "version_conflict" and with_expected_version:
            assert o.body["current_version"] > o.expected_version


# ---- the cost of a change ------------------------------------------------------------------------------------------


def test_an_uncontended_transition_is_two_store_rpcs(api, tenant):
    wf = api.create(tenant)
    owner = principal(api, tenant.owner)
    path = f"/v1/workflows/{wf['id']}/transitions"

    api.store.rpcs.clear()
    assert service_attempt(api, owner, wf["id"], State.PLANNING).status == 200
    assert api.store.rpcs == Counter({"batch_get": 1, "commit": 1})

    api.store.rpcs.clear()
    idem = parse_idempotency_key("k-1", method="POST", path=path, body={"to": "DISCOVERY"})
    assert service_attempt(api, owner, wf["id"], State.DISCOVERY, idem=idem).status == 200
    assert api.store.rpcs == Counter({"batch_get": 1, "commit": 1}), "the idempotency record rides along"

    api.store.rpcs.clear()
    outcome = service.rollback_workflow(api.store, owner, wf["id"], RollbackRequest(to_version=2, reason="back"),
                                        None)
    assert outcome.body["workflow"]["state"] == "PLANNING"
    assert api.store.rpcs == Counter({"batch_get": 1, "commit": 1}), "the target event rides along too"


def test_an_uncontended_http_transition_adds_one_key_read(api, tenant):
    wf = api.create(tenant)
    cold_instance()  # the key cache is tests/test_key_cache.py's business: here the key is read
    api.store.rpcs.clear()
    r = api.post(f"/v1/workflows/{wf['id']}/transitions", {"to": "PLANNING"}, tenant.owner,
                 headers={"Idempotency-Key": "once"})
    assert r.status == 200, r.body
    assert api.store.rpcs == Counter({"get": 1, "batch_get": 1, "commit": 1})

    cold_instance()
    api.store.rpcs.clear()
    r = api.post(f"/v1/workflows/{wf['id']}/transitions", {"to": "PLANNING"}, tenant.owner,
                 headers={"Idempotency-Key": "once"})
    assert r.status == 200 and r.headers.get("Idempotent-Replayed") == "true"
    assert api.store.rpcs == Counter({"get": 1, "batch_get": 1}), "a replay reads and writes nothing"


@pytest.mark.parametrize("with_expected_version", [False, True], ids=["blind", "expected_version"])
def test_a_lost_race_re_reads_or_answers_409(api, tenant, with_expected_version):
    """Make one writer lose exactly once: a rival's change lands between its read and its commit. Without
    expected_version it re-reads, re-validates against the new state and commits; with it, it answers 409
    `version_conflict` without a second commit. Counted on the store, not timed."""
    wf = api.create(tenant)
    for to in ("PLANNING", "DESIGN", "IMPLEMENTATION"):
        api.move(tenant, wf, to)
    owner = principal(api, tenant.owner)
    developer = principal(api, tenant.agents[Role.DEVELOPER])
    store = api.store
    real_commit = store.commit
    rival: list[Outcome] = []
    pending = [True]  # the rival goes once: IMPLEMENTATION -> TESTING lands before the writer's first commit

    def rival_lands_first(writes):
        if pending:
            pending.clear()
            rival.append(service_attempt(api, developer, wf["id"], State.TESTING))
        return real_commit(writes)

    store.commit = rival_lands_first
    try:
        store.rpcs.clear()
        # FAILED is allowed from IMPLEMENTATION (what the writer read) and from TESTING (what it re-reads).
        writer = service_attempt(api, owner, wf["id"], State.FAILED, expected_version=4 if with_expected_version
                                 else None)
    finally:
        store.commit = real_commit
    assert rival[0].status == 200 and rival[0].body["event"]["seq"] == 5
    if with_expected_version:
        assert (writer.status, writer.code, writer.body["current_version"]) == (409, "version_conflict", 5)
        assert store.rpcs["commit"] == 2, "the rival's commit and the writer's lost one; no retry"
        assert assert_event_log(store, tenant.account_id, wf["id"]).state == State.TESTING
    else:
        assert writer.status == 200, writer.body
        assert (writer.body["event"]["seq"], writer.body["event"]["from_state"]) == (6, "TESTING")
        assert store.rpcs == Counter({"batch_get": 3, "commit": 3}), "writer: read, lost commit, re-read, commit"
        assert assert_event_log(store, tenant.account_id, wf["id"]).state == State.FAILED
