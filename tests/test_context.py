"""`GET /v1/workflows/{id}/context` against the emulator (and moto for the artifacts): the context of each role in
each of its states, who may read it (the role's key or the owner; another role 403, another account 404), what is
handed over and what earlier steps left (with download URLs that download), the history newest first with a
cursor, the RPCs it costs, and the same documents giving the same bytes. Every refusal writes nothing."""

from __future__ import annotations

import json

import pytest

from shared.domain import agent_tools
from shared.domain import state_machine as sm
from shared.domain.state_machine import Role, State
from shared.runtime.config import config
from tests.agents import Agent, get
from tests.helpers import assert_refused, cold_instance, used

# How to reach each active state from DISCOVERY.
FORWARD = ["PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING", "VERIFICATION", "REVIEW", "DEPLOYMENT"]
ACTIVE = [s.state for s in sm.STATES.values() if s.kind is sm.StateKind.ACTIVE]


def path(workflow_id: str) -> str:
    return f"/v1/workflows/{workflow_id}/context"


def walk_to(api, tenant, state: State, **create) -> dict:
    wf = api.create(tenant, **create)
    for to in FORWARD[:FORWARD.index(state.value) + 1] if state is not State.DISCOVERY else []:
        api.move(tenant, wf, to)
    return wf


def other_agent_role(role: Role | None) -> Role:
    return Role.TESTER if role is not Role.TESTER else Role.DEVELOPER


@pytest.mark.parametrize("state", ACTIVE, ids=str)
def test_the_context_of_each_role_in_each_of_its_states(api, tenant, state):
    wf = walk_to(api, tenant, state, title="Hat shop", description="Sell hats.\nShip them.",
                 labels={"team": "web"}, max_retries=2)
    role = sm.role_of(state)
    playbook = config().playbooks.for_role(role)
    r = api.get(path(wf["id"]), tenant.key_for(role))
    assert r.status == 200, r.body
    c = r.body
    assert (c["workflow_id"], c["role"], c["playbook_version"]) == (wf["id"], role.value, playbook.version)
    assert c["instructions"].startswith(playbook.body.rstrip())
    for line in ("- Title: Hat shop", "- Labels: team=web", f"- State: {state} (role {role})",
                 "- Retries left: 2 of 2", "- Budget left: no budget set", "> Sell hats.", "> Ship them."):
        assert line in c["instructions"], line
    assert f"is in {state}: it is the {playbook.title}'s ({role}) turn." in c["task"]
    assert playbook.work_product[state] in c["task"]
    view = api.get(f"/v1/workflows/{wf['id']}", tenant.key_for(role)).body
    assert c["workflow"] == view
    assert [(t["to"], t["kind"], t["counts_as_retry"]) for t in c["allowed_transitions"]] == [
        (t["to"], t["kind"], t["counts_as_retry"]) for t in view["allowed_transitions"]]
    for t in c["allowed_transitions"]:
        assert t["meaning"] == playbook.meaning(state, State(t["to"]))
    # the open hand-off (PLANNING still works on the one DISCOVERY opened: one hand-off per role's turn)
    assert c["handoff"]["id"] == view["current_handoff"]["id"] and c["handoff"]["to_role"] == role
    assert c["handoff"]["status"] == "PENDING" and sm.role_of(State(c["handoff"]["to_state"])) is role
    assert c["handed_over"] == [] and c["earlier_artifacts"] == []
    assert [e["seq"] for e in c["history"]["events"]] == list(range(view["version"], 0, -1))
    assert c["history"]["next_page_token"] is None
    assert c["tools"] == agent_tools.definitions("neutral")

    # the owner reads it too, as the same role, with the owner's transitions (cancel included)
    owner = api.get(path(wf["id"]), tenant.owner).body
    assert owner["role"] == role.value and owner["playbook_version"] == playbook.version
    cancel = next(t for t in owner["allowed_transitions"] if t["to"] == "CANCELLED")
    assert cancel["meaning"] == playbook.meaning(state, State.CANCELLED)

    # another role may not
    if role is not Role.CUSTOMER:
        other = tenant.agents[other_agent_role(role)]
        assert_refused(api, lambda: api.get(path(wf["id"]), other), 403, "forbidden")
    for agent_role in sm.AGENT_ROLES if role is Role.CUSTOMER else ():
        assert_refused(api, lambda k=tenant.agents[agent_role]: api.get(path(wf["id"]), k), 403, "forbidden")


def test_another_accounts_workflow_and_an_unknown_one_are_not_found(api, tenant, other_tenant):
    wf = api.create(tenant)
    for key in (other_tenant.owner, other_tenant.agents[Role.Q_ASSISTANT]):
        assert_refused(api, lambda k=key: api.get(path(wf["id"]), k), 404, "not_found")
    assert_refused(api, lambda: api.get(path("wf_" + "0" * 32), tenant.owner), 404, "not_found")
    assert_refused(api, lambda: api.get(path(wf["id"])), 401, "unauthenticated")


@pytest.mark.parametrize("query", [{"events": 0}, {"events": 101}, {"events": "x"}, {"page_token": "nope"},
                                   {"verbose": "1"}])
def test_bad_query_parameters_are_refused(api, tenant, query):
    wf = api.create(tenant)
    assert_refused(api, lambda: api.get(path(wf["id"]), tenant.owner, query=query), 422, "validation_error")


def test_a_final_or_failed_workflow_has_no_role_only_the_owner_reads_it(api, tenant):
    wf = walk_to(api, tenant, State.DESIGN)
    api.move(tenant, wf, "FAILED")
    r = api.get(path(wf["id"]), tenant.owner)
    assert r.status == 200, r.body
    c = r.body
    assert (c["role"], c["playbook_version"], c["handoff"], c["allowed_transitions"]) == (None, None, None, [])
    assert "roll it back" in c["instructions"] and "unless its owner rolls it back" in c["task"]
    for role in sm.AGENT_ROLES:
        assert_refused(api, lambda k=tenant.agents[role]: api.get(path(wf["id"]), k), 403, "forbidden")


def test_rpcs_one_batched_read_then_the_handoff_the_events_and_the_artifacts(api, tenant):
    wf = walk_to(api, tenant, State.DESIGN)
    used(api, tenant.agents[Role.ARCHITECT])  # its hourly last-used write: now, not in the counts
    cold_instance()  # counted as on a fresh instance: the key's read is one of them
    api.store.rpcs.clear()
    assert api.get(path(wf["id"]), tenant.agents[Role.ARCHITECT]).status == 200
    # the key (auth), then: the workflow (batched read), its open hand-off, the events query, the artifacts query
    assert api.store.rpcs == {"get": 2, "batch_get": 1, "query": 2}

    api.move(tenant, wf, "CANCELLED", key=tenant.owner)
    cold_instance()  # counted as on a fresh instance: the key's read is one of them
    api.store.rpcs.clear()
    assert api.get(path(wf["id"]), tenant.owner).status == 200
    assert api.store.rpcs == {"get": 1, "batch_get": 1, "query": 2}  # no open hand-off: nothing to read for it

    cold_instance()  # counted as on a fresh instance: the key's read is one of them
    api.store.rpcs.clear()
    assert api.get(path(wf["id"]), tenant.agents[Role.ARCHITECT]).status == 403
    assert api.store.rpcs == {"get": 1, "batch_get": 1}  # refused right after the workflow is read


def test_the_history_is_newest_first_with_a_cursor_to_older_events(api, tenant):
    wf = walk_to(api, tenant, State.TESTING)  # versions 1..5
    api.move(tenant, wf, "IMPLEMENTATION", note="two cases fail")  # 6
    seen, token, pages = [], None, 0
    while True:
        r = api.get(path(wf["id"]), tenant.agents[Role.DEVELOPER],
                    query={"events": 4, **({"page_token": token} if token else {})})
        assert r.status == 200, r.body
        seen += [e["seq"] for e in r.body["history"]["events"]]
        token, pages = r.body["history"]["next_page_token"], pages + 1
        if token is None:
            break
    assert (seen, pages) == ([6, 5, 4, 3, 2, 1], 2)
    newest = api.get(path(wf["id"]), tenant.agents[Role.DEVELOPER], query={"events": 1}).body["history"]
    assert newest["events"][0]["note"] == "two cases fail" and newest["events"][0]["from_state"] == "TESTING"
    # a cursor belongs to its workflow's context
    other = api.create(tenant)
    assert_refused(api, lambda: api.get(path(other["id"]), tenant.owner, query={"page_token": newest[
        "next_page_token"]}), 422, "validation_error")


def test_the_same_documents_give_the_same_bytes(api, tenant):
    wf = walk_to(api, tenant, State.IMPLEMENTATION, labels={"b": "2", "a": "1"})
    key = tenant.agents[Role.DEVELOPER]
    bodies = [api.client.get(path(wf["id"]), headers={"Authorization": f"Bearer {key}"}).get_data()
              for _ in range(3)]
    assert bodies[0] == bodies[1] == bodies[2]
    assert "- Labels: a=1, b=2" in json.loads(bodies[0])["instructions"]


def test_a_claimed_handoff_shows_its_holder_and_the_heartbeat_interval(api, tenant):
    wf = walk_to(api, tenant, State.DESIGN)
    arch = Agent(api, tenant.agents[Role.ARCHITECT], "arch-7")
    claimed = arch.claim(expect=200, lease_seconds=600).body["handoff"]
    c = api.get(path(wf["id"]), arch.key).body
    assert c["handoff"]["status"] == "CLAIMED" and c["handoff"]["agent_id"] == "arch-7"
    assert c["handoff"]["id"] == claimed["id"]
    assert f"Agent arch-7 of key {claimed['claimed_by']} holds it until" in c["task"]
    assert "heartbeat every 200 s (a third of its 600 s lease)" in c["task"]


def test_with_no_retries_left_the_rework_is_not_offered(api, tenant):
    wf = walk_to(api, tenant, State.TESTING, max_retries=0)
    c = api.get(path(wf["id"]), tenant.agents[Role.TESTER]).body
    assert [t["to"] for t in c["allowed_transitions"]] == ["VERIFICATION", "FAILED"]
    assert "- Retries left: 0 of 0" in c["instructions"]


@pytest.mark.usefixtures("s3")
def test_artifacts_handed_over_and_left_by_earlier_steps_with_working_download_urls(api, tenant):
    q, arch = Agent(api, tenant.agents[Role.Q_ASSISTANT], "q"), Agent(api, tenant.agents[Role.ARCHITECT], "a")
    dev, tester = Agent(api, tenant.agents[Role.DEVELOPER], "d"), Agent(api, tenant.agents[Role.TESTER], "t")
    wf = api.create(tenant)["id"]

    requirements = q.upload(wf, "requirements.md", b"# Requirements\n")
    assert q.move(wf, "PLANNING", note="scoped", artifacts=[requirements["id"]]).status == 200
    c = api.get(path(wf), q.key).body  # within the role: what DISCOVERY left is an earlier work product
    assert [a["name"] for a in c["earlier_artifacts"]] == ["requirements.md"] and c["handed_over"] == []
    plan = q.upload(wf, "plan.md", b"# Plan\n")
    assert q.move(wf, "DESIGN", note="the plan", artifacts=[plan["id"]]).status == 200

    c = api.get(path(wf), arch.key).body  # the hand-off carries both of the Q Assistant's artifacts
    assert [a["name"] for a in c["handed_over"]] == ["requirements.md", "plan.md"] and c["earlier_artifacts"] == []
    design = arch.upload(wf, "design.md", b"# Design\n")
    assert arch.move(wf, "IMPLEMENTATION", note="start with the cart", artifacts=[design["id"]]).status == 200

    patch_v1 = dev.upload(wf, "change.patch", b"--- a\n+++ b\n", "text/x-diff")
    assert dev.move(wf, "TESTING", note="built", artifacts=[patch_v1["id"]]).status == 200
    report = tester.upload(wf, "test-report.md", b"| case | result |\n| c1 | FAIL |\n")
    assert tester.move(wf, "IMPLEMENTATION", note="c1 fails: total is 0", artifacts=[report["id"]]).status == 200
    dev.upload(wf, "change.patch", b"--- a\n+++ b (draft v2)\n", "text/x-diff")  # this step's, not an earlier one

    r = api.get(path(wf), dev.key)
    assert r.status == 200, r.body
    c = r.body
    assert [a["id"] for a in c["handed_over"]] == [report["id"]]
    assert [(a["name"], a["id"]) for a in c["earlier_artifacts"]] == [
        ("change.patch", patch_v1["id"]), ("design.md", design["id"]), ("plan.md", plan["id"]),
        ("requirements.md", requirements["id"])]
    ref = c["handed_over"][0]
    assert {k: ref[k] for k in ("name", "content_type", "size_bytes", "sha256", "created_by")} == {
        k: report[k] for k in ("name", "content_type", "size_bytes", "sha256", "created_by")}
    assert get(ref["download_url"]) == b"| case | result |\n| c1 | FAIL |\n"
    assert get(c["earlier_artifacts"][1]["download_url"]) == b"# Design\n"
    assert "> c1 fails: total is 0" in c["task"] and "- test-report.md (" in c["task"]
    assert "- design.md (" in c["task"]
    newest = c["history"]["events"][0]
    assert (newest["artifacts"], newest["artifact_names"]) == ([report["id"]], ["test-report.md"])


@pytest.mark.usefixtures("s3")
def test_a_handed_over_artifact_older_than_the_newest_ones_costs_one_more_batched_read(api, tenant, monkeypatch):
    from shared.services import context as service

    q = Agent(api, tenant.agents[Role.Q_ASSISTANT], "q")
    wf = api.create(tenant)["id"]
    requirements, plan = q.upload(wf, "requirements.md", b"# R\n"), q.upload(wf, "plan.md", b"# P\n")
    assert q.move(wf, "PLANNING", artifacts=[requirements["id"]]).status == 200
    assert q.move(wf, "DESIGN", artifacts=[plan["id"]]).status == 200
    monkeypatch.setattr(service, "ARTIFACT_WINDOW", 1)  # the artifacts query now sees plan.md alone
    used(api, tenant.agents[Role.ARCHITECT])
    cold_instance()  # counted as on a fresh instance: the key's read is one of them
    api.store.rpcs.clear()
    r = api.get(path(wf), tenant.agents[Role.ARCHITECT])
    assert r.status == 200, r.body
    assert [a["name"] for a in r.body["handed_over"]] == ["requirements.md", "plan.md"]
    assert api.store.rpcs == {"get": 2, "batch_get": 2, "query": 2}
