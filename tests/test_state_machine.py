"""The table's invariants, and the validator against random walks (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain import state_machine as sm
from shared.domain import workflow as domain
from shared.domain.errors import Forbidden, InvalidTransition, ProblemError, RetryLimitExceeded
from shared.domain.models import CreateWorkflowRequest
from shared.domain.state_machine import AGENT_ROLES, STATES, TRANSITIONS, Role, State, StateKind

EXPECTED_ROLES = {
    State.DISCOVERY: Role.Q_ASSISTANT, State.PLANNING: Role.Q_ASSISTANT, State.DESIGN: Role.ARCHITECT,
    State.IMPLEMENTATION: Role.DEVELOPER, State.TESTING: Role.TESTER, State.VERIFICATION: Role.VERIFIER,
    State.REVIEW: Role.CUSTOMER, State.DEPLOYMENT: Role.DEVOPS,
}


def test_table_sizes_and_roles():
    assert len(STATES) == 11
    assert len(Role) == 9  # the seven of the table's states, OWNER, and VIEWER (read-only)
    assert len(TRANSITIONS) == 28
    kinds = [t.kind.value for t in TRANSITIONS]
    assert (kinds.count("forward"), kinds.count("rework"), kinds.count("fail"), kinds.count("cancel")) == (8, 6, 6, 8)
    assert {s: spec.role for s, spec in STATES.items() if spec.kind is StateKind.ACTIVE} == EXPECTED_ROLES
    assert {(t.source, t.target) for t in TRANSITIONS if t.counts_as_retry} == {
        (State.TESTING, State.IMPLEMENTATION), (State.VERIFICATION, State.IMPLEMENTATION),
        (State.DEPLOYMENT, State.IMPLEMENTATION)}
    assert len({(t.source, t.target) for t in TRANSITIONS}) == 28  # no duplicate rows


def test_every_active_state_reaches_completed_and_finals_are_sinks():
    for state, spec in STATES.items():
        if spec.kind is not StateKind.ACTIVE:
            continue
        seen, frontier = {state}, [state]
        while frontier:
            for t in sm.transitions_from(frontier.pop()):
                if t.target not in seen:
                    seen.add(t.target)
                    frontier.append(t.target)
        assert State.COMPLETED in seen, state
    for final in (State.COMPLETED, State.CANCELLED, State.FAILED):
        assert sm.transitions_from(final) == []


def test_mermaid_diagram_has_every_transition():
    diagram = sm.mermaid()
    assert diagram.startswith("stateDiagram-v2")
    for t in TRANSITIONS:
        assert f"{t.source} --> {t.target}" in diagram


ROLE_SETS = st.sampled_from([frozenset({Role.OWNER}), *[frozenset({r}) for r in AGENT_ROLES],
                             frozenset({Role.DEVELOPER, Role.TESTER})])


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(list(State)), ROLE_SETS), max_size=40),
       max_retries=st.integers(0, 10))
def test_random_walks_keep_the_rules(steps, max_retries):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    wf, first = domain.create(CreateWorkflowRequest(title="t", max_retries=max_retries), account_id="a",
                              actor="k", now=now)
    events = [first]
    for to, roles in steps:
        allowed = {t.target for t in sm.allowed_transitions(wf.state, wf.retry_count, wf.max_retries, roles)}
        try:
            moved, event = domain.transition(wf, to, roles=roles, actor="k", reason="", note="", now=now)
        except (InvalidTransition, Forbidden, RetryLimitExceeded) as exc:
            assert to not in allowed, (wf.state, to, roles)
            assert isinstance(exc, ProblemError)
            continue
        assert to in allowed
        spec = sm.find_transition(wf.state, to)
        assert spec is not None
        if Role.OWNER not in roles:
            assert not spec.owner_only and sm.role_of(wf.state) in roles
        assert moved.version == wf.version + 1 == event.seq
        assert moved.retry_count <= moved.max_retries
        wf = moved
        events.append(event)
        assert domain.replay(events) == (wf.state, wf.role, wf.retry_count)
