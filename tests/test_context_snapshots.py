"""The context's rendering, pinned: for fixed documents, each role in each of its states renders exactly the bytes in
tests/snapshots/ (the whole answer as JSON, and its prompt, instructions then task, as Markdown to read in a review).
A change to a playbook or to the rendering shows up here as a diff to look at.

    QORCH_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_context_snapshots.py    # rewrite them
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from shared.domain import context
from shared.domain import state_machine as sm
from shared.domain.models import Artifact, ArtifactStatus, Event, EventType, Handoff, HandoffStatus, Workflow
from shared.domain.state_machine import Role, State
from shared.http.endpoint import json_response
from shared.runtime.config import config, read_playbooks

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UPDATE = os.environ.get("QORCH_UPDATE_SNAPSHOTS") == "1"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PATH = [State.DISCOVERY, State.PLANNING, State.DESIGN, State.IMPLEMENTATION, State.TESTING, State.VERIFICATION,
        State.REVIEW, State.DEPLOYMENT]
ACTIVE = [s.state for s in sm.STATES.values() if s.kind is sm.StateKind.ACTIVE]
# What each step leaves (by the state it is made in).
PRODUCTS = {State.DISCOVERY: ("requirements.md", "text/markdown"), State.PLANNING: ("plan.md", "text/markdown"),
            State.DESIGN: ("design.md", "text/markdown"), State.IMPLEMENTATION: ("change.patch", "text/x-diff"),
            State.TESTING: ("test-report.md", "text/markdown"),
            State.VERIFICATION: ("verification-report.md", "text/markdown")}


def ident(prefix: str, n: int) -> str:
    return f"{prefix}_{n:032x}"


def documents(state: State) -> dict:
    """A workflow that walked forward to `state`, one step an hour; its claimed hand-off; each earlier step's
    artifact; its events. Everything fixed: ids, times, texts."""
    steps = PATH[:PATH.index(state) + 1]
    start = NOW - timedelta(hours=len(steps))
    at = {s: start + timedelta(hours=i) for i, s in enumerate(steps)}
    artifacts = {}
    for i, made_in in enumerate(steps[:-1], 1):
        if made_in in PRODUCTS:
            name, content_type = PRODUCTS[made_in]
            artifacts[ident("art", i)] = Artifact(
                id=ident("art", i), workflow_id=ident("wf", 1), name=name, content_type=content_type,
                size_bytes=100 * i, sha256=f"{i:064x}", status=ArtifactStatus.AVAILABLE,
                created_at=at[made_in] + timedelta(minutes=30), created_by=f"key_{sm.role_of(made_in).value.lower()}",
                upload_expires_at=at[made_in] + timedelta(minutes=45), completed_at=at[made_in] + timedelta(minutes=31))
    events = [Event(seq=1, type=EventType.CREATED, from_state=None, to_state=State.DISCOVERY, actor="key_owner",
                    at=at[State.DISCOVERY])]
    for i, (a, b) in enumerate(pairwise(steps), 2):
        events.append(Event(seq=i, type=EventType.TRANSITIONED, from_state=a, to_state=b,
                            actor=f"key_{(sm.role_of(a) or Role.OWNER).value.lower()}", at=at[b],
                            note=f"{a.value.title()} is done; over to you.", artifacts=[ident("art", i - 1)]
                            if a in PRODUCTS else []))
    role = sm.role_of(state)
    opened = next(s for s in steps if sm.role_of(s) is role)  # a role's turn starts in its first state
    prev = steps[steps.index(opened) - 1] if opened is not State.DISCOVERY else None
    handed = [e for e in events if e.to_state is opened][-1].artifacts
    workflow = Workflow(
        id=ident("wf", 1), account_id="acct_1", title="Hat shop", description="Sell hats online.\nCheckout by card.",
        labels={"tier": "gold", "team": "web"}, state=state, role=role, version=len(events), retry_count=1,
        max_retries=3, created_at=start, updated_at=at[state], created_by="key_owner",
        outgoing_artifacts=[ident("art", 1)] if state is State.PLANNING else [])
    handoff = Handoff(
        id=ident("ho", 1), workflow_id=workflow.id, seq=steps.index(opened) + 1, from_role=sm.role_of(prev) if prev
        else None, to_role=role, from_state=prev, to_state=opened, note=events[steps.index(opened)].note,
        artifacts=handed, status=HandoffStatus.CLAIMED, created_at=at[opened], claimed_by=f"key_{role.value.lower()}",
        agent_id="agent-1", claimed_at=NOW - timedelta(minutes=5), lease_seconds=300,
        lease_expires_at=NOW + timedelta(seconds=295), attempts=1)
    workflow = workflow.model_copy(update={"current_handoff": handoff.current()})
    roles = frozenset({Role.OWNER}) if role is Role.CUSTOMER else frozenset({role})
    return {"workflow": workflow, "handoff": handoff, "artifacts": artifacts, "events": events[::-1][:5],
            "roles": roles, "token": "next-page" if len(events) > 5 else None}


def render(state: State) -> context.AgentContext:
    docs = documents(state)
    return context.build(
        workflow=docs["workflow"], roles=docs["roles"], playbook=config().playbooks.for_role(sm.role_of(state)),
        handoff=docs["handoff"], artifacts=docs["artifacts"], events=docs["events"], next_page_token=docs["token"],
        sign=lambda a: (f"https://objects.example/{a.id}?X-Amz-Signature=fixed", NOW + timedelta(minutes=15)))


def check(path: Path, text: str) -> None:
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path.name} missing: QORCH_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest {__file__}"
    assert path.read_text() == text, f"{path.name} differs: review the change, then rewrite the snapshots"


@pytest.mark.parametrize("state", ACTIVE, ids=str)
def test_each_roles_context_in_each_of_its_states_renders_the_pinned_bytes(state):
    first, second = render(state), render(state)
    assert json_response(first).get_data() == json_response(second).get_data()  # the bytes the endpoint sends
    body = first.model_dump(mode="json")
    check(SNAPSHOTS / f"context_{state.value}.json", json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    check(SNAPSHOTS / f"context_{state.value}.prompt.md", body["instructions"] + "\n---\n\n" + body["task"])


def test_the_snapshots_cover_every_active_state_and_nothing_else():
    assert sorted(p.name for p in SNAPSHOTS.glob("context_*")) == sorted(
        f"context_{s.value}{ext}" for s in ACTIVE for ext in (".json", ".prompt.md"))


def test_a_changed_playbook_changes_the_rendering():
    """The snapshots do pin the playbook text: a one-word edit changes the instructions and the version."""
    from shared.domain import playbooks as pb

    text = read_playbooks()["TESTER.md"].replace("honestly", "carefully")
    edited = pb.parse("TESTER.md", text)
    docs = documents(State.TESTING)
    kwargs = dict(workflow=docs["workflow"], roles=docs["roles"], handoff=docs["handoff"], artifacts=docs["artifacts"],
                  events=docs["events"], next_page_token=None, sign=lambda a: ("u", NOW))
    before = context.build(playbook=config().playbooks.for_role(Role.TESTER), **kwargs)
    after = context.build(playbook=edited, **kwargs)
    assert before.instructions != after.instructions and before.playbook_version != after.playbook_version
    assert before.task == after.task
