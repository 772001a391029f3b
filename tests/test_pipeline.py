"""The whole product as an agent fleet uses it: one agent per role, each with its own key, claims its work, reads
what the previous role handed over, uploads its own work product to the object store, and hands it on with its
transition; from DISCOVERY to COMPLETED, including a test failure that sends the work back to the developer."""

from __future__ import annotations

import pytest

from shared.domain.state_machine import Role
from tests.agents import Agent
from tests.helpers import assert_event_log

pytestmark = pytest.mark.usefixtures("s3")

# (role that works, state it works in, what it produces, where it sends the workflow)
STEPS = [
    (Role.Q_ASSISTANT, "DISCOVERY", "discovery.md", "PLANNING"),
    (Role.Q_ASSISTANT, "PLANNING", "plan.md", "DESIGN"),
    (Role.ARCHITECT, "DESIGN", "design.md", "IMPLEMENTATION"),
    (Role.DEVELOPER, "IMPLEMENTATION", "change-1.diff", "TESTING"),
    (Role.TESTER, "TESTING", "test-report-1.txt", "IMPLEMENTATION"),  # the tests fail: back to the developer
    (Role.DEVELOPER, "IMPLEMENTATION", "change-2.diff", "TESTING"),
    (Role.TESTER, "TESTING", "test-report-2.txt", "VERIFICATION"),
    (Role.VERIFIER, "VERIFICATION", "verification.md", "REVIEW"),
    (Role.CUSTOMER, "REVIEW", "approval.md", "DEPLOYMENT"),
    (Role.DEVOPS, "DEPLOYMENT", "release-notes.md", "COMPLETED"),
]


def test_an_agent_fleet_builds_the_software_from_discovery_to_completed(api, tenant):
    wf = api.create(tenant, title="Build a shop", description="A shop for hand-made shoes.")
    fleet = {role: Agent(api, tenant.agents[role], f"{role.value.lower()}-1") for role in tenant.agents}
    fleet[Role.CUSTOMER] = Agent(api, tenant.owner, "customer-1")  # the owner plays the customer (REVIEW)
    produced: dict[str, str] = {}  # artifact id -> bytes' text
    expected_inputs: list[str] = []  # what the next hand-off should carry
    handoff = None

    for role, state, product, to in STEPS:
        me = fleet[role]
        if handoff is None or handoff["to_role"] != role.value:
            # a new role: its agent claims the work and finds what the previous role handed over
            others = [a for r, a in fleet.items() if r is not role and r is not Role.CUSTOMER]
            assert all(a.claim().status == 204 for a in others), "no other role has work"
            r = me.claim(expect=200, lease_seconds=600)
            handoff, workflow = r.body["handoff"], r.body["workflow"]
            assert workflow["id"] == wf["id"] and workflow["state"] == state
            assert handoff["to_state"] == state and handoff["artifacts"] == expected_inputs
            for artifact_id in handoff["artifacts"]:
                assert me.download(wf["id"], artifact_id).decode() == produced[artifact_id]
            expected_inputs = []
            assert me.heartbeat(wf["id"], handoff["id"]).status == 200
        # the work product goes to the object store, then rides on the transition
        text = f"{product} by {me.agent_id} for {state}"
        artifact = me.upload(wf["id"], product, text.encode(), content_type="text/plain")
        produced[artifact["id"]] = text
        r = me.move(wf["id"], to, note=f"{state} done", artifacts=[artifact["id"]])
        assert r.status == 200, r.body
        assert r.body["event"]["artifacts"] == [artifact["id"]]
        expected_inputs.append(artifact["id"])

    final = assert_event_log(api.store, tenant.account_id, wf["id"])
    assert final.state == "COMPLETED" and final.retry_count == 1 and final.current_handoff is None

    listed = api.get(f"/v1/workflows/{wf['id']}/handoffs", tenant.owner, query={"limit": 100}).body["handoffs"]
    assert [(h["from_role"], h["to_role"]) for h in reversed(listed)] == [
        (None, "Q_ASSISTANT"), ("Q_ASSISTANT", "ARCHITECT"), ("ARCHITECT", "DEVELOPER"), ("DEVELOPER", "TESTER"),
        ("TESTER", "DEVELOPER"), ("DEVELOPER", "TESTER"), ("TESTER", "VERIFIER"), ("VERIFIER", "CUSTOMER"),
        ("CUSTOMER", "DEVOPS")]
    # every hand-off was claimed once by its role's agent; each was completed by the next, the last cancelled
    # when the workflow reached its final state
    assert all(h["attempts"] == 1 and h["agent_id"] for h in listed)
    assert [h["status"] for h in listed] == ["CANCELLED"] + ["COMPLETED"] * 8
    # the developer's second hand-off carried the failing test report
    rework = next(h for h in listed if h["from_role"] == "TESTER" and h["to_role"] == "DEVELOPER")
    assert [produced[a] for a in rework["artifacts"]] == ["test-report-1.txt by tester-1 for TESTING"]
    artifacts = api.get(f"/v1/workflows/{wf['id']}/artifacts", tenant.owner, query={"limit": 100}).body
    assert len(artifacts["artifacts"]) == len(STEPS) and all(a["status"] == "AVAILABLE"
                                                            for a in artifacts["artifacts"])
    assert all(a.claim().status == 204 for a in fleet.values())
