"""The agents' API client and tool executor against a running stack (the router over real HTTP, the emulator, moto):
artifacts written and read through presigned URLs, refusals as tool failures with the problem's code, a model's
malformed arguments refused before any request, and calls outside the held hand-off refused."""

from __future__ import annotations

import typing

import pytest

from agents.api import ApiError, QorchApi
from agents.tools import AGENT_ROLES, State, UsageLedger, content_type_for, parse_arguments
from agents.tools import Executor as ToolExecutor
from shared.domain.state_machine import AGENT_ROLES as SERVER_AGENT_ROLES
from shared.domain.state_machine import Role
from shared.domain.state_machine import State as ServerState
from tests.agents import Agent
from tests.helpers import snapshot_all

pytestmark = pytest.mark.usefixtures("s3")


def test_the_client_knows_the_servers_states_and_roles():
    assert set(typing.get_args(State)) == {s.value for s in ServerState}
    assert set(AGENT_ROLES) == {r.value for r in SERVER_AGENT_ROLES}


@pytest.mark.parametrize(("arguments", "code", "field"), [
    ('{"workflow_id": "wf_1", "name": ', "invalid_arguments", None),  # not JSON (OpenAI sends a string)
    ("[1, 2]", "invalid_arguments", None),  # JSON, but not an object
    ({"workflow_id": "wf_1", "name": "a.md"}, "invalid_arguments", "content"),  # missing
    ({"workflow_id": 7, "name": "a.md", "content": "x"}, "invalid_arguments", "workflow_id"),  # mistyped
    ({"workflow_id": "wf_1", "name": "a.md", "content": "x", "agent_id": "me"}, "invalid_arguments", "agent_id"),
])
def test_malformed_arguments_are_named_for_the_model(arguments, code, field):
    from agents.tools import ToolFailure

    with pytest.raises(ToolFailure) as caught:
        parse_arguments("write_artifact", arguments)
    failure = caught.value
    assert failure.code == code and failure.invalid_arguments
    if field:
        assert [e["field"] for e in failure.extra["errors"]] == [field]


def test_an_unknown_tool_and_the_runners_missing_claim_next_are_refused():
    from agents.tools import ALL_ARGUMENTS, ToolFailure

    for name in ("delete_everything", "claim_next"):
        with pytest.raises(ToolFailure, match="unknown_tool"):
            parse_arguments(name, {})
    assert parse_arguments("claim_next", {"wait_seconds": 3}, ALL_ARGUMENTS).wait_seconds == 3


def test_content_types_default_by_name():
    assert content_type_for("design.md", None) == "text/markdown"
    assert content_type_for("change.patch", None) == "text/plain"
    assert content_type_for("change.patch", "text/x-diff") == "text/x-diff"


def test_write_then_read_an_artifact_through_the_tools(api, tenant, live):
    wf = api.create(tenant)
    client = QorchApi(live.url + "/v1", tenant.agents[Role.Q_ASSISTANT])  # with /v1 or without: the same
    tools = ToolExecutor(client, "q-1")
    text = "# Requirements\n- hats, ünïcödé\n"
    written = tools.call("write_artifact", {"workflow_id": wf["id"], "name": "requirements.md", "content": text})
    assert written.ok, written.failure
    assert written.result["size_bytes"] == len(text.encode()) and written.result["name"] == "requirements.md"
    read = tools.call("read_artifact", {"workflow_id": wf["id"], "artifact_id": written.result["artifact_id"]})
    assert read.ok and read.result["text"] == text and read.result["content_type"] == "text/markdown"
    stored = api.get(f"/v1/workflows/{wf['id']}/artifacts/{written.result['artifact_id']}", tenant.owner).body
    assert stored["artifact"]["status"] == "AVAILABLE"


def test_a_binary_artifact_is_not_given_to_a_model_as_text(api, tenant, live):
    wf = api.create(tenant)
    art = Agent(api, tenant.agents[Role.Q_ASSISTANT], "q-1").upload(wf["id"], "logo.png", b"\x89PNG\r\n\xff\xfe",
                                                                    content_type="image/png")
    tools = ToolExecutor(QorchApi(live.url, tenant.agents[Role.Q_ASSISTANT]), "q-1")
    outcome = tools.call("read_artifact", {"workflow_id": wf["id"], "artifact_id": art["id"]})
    assert outcome.failure is not None and outcome.failure.code == "not_text"


def test_a_refusal_is_a_failure_carrying_the_problem_and_writes_nothing(api, tenant, live):
    wf = api.create(tenant)
    tools = ToolExecutor(QorchApi(live.url, tenant.agents[Role.DEVELOPER]), "dev-1")  # not the developer's step
    before = snapshot_all(api.store)
    outcome = tools.call("transition", {"workflow_id": wf["id"], "to": "PLANNING", "note": None, "reason": None,
                                        "artifacts": [], "expected_version": None})
    assert outcome.failure is not None and outcome.failure.code == "forbidden"
    assert '"code": "forbidden"' in outcome.text()
    bad = tools.call("transition", '{"workflow_id": "' + wf["id"] + '", "to": "PLAN')  # malformed: no request
    assert bad.failure is not None and bad.failure.invalid_arguments
    assert snapshot_all(api.store) == before


def test_the_runners_executor_acts_only_on_the_handoff_it_holds(api, tenant, live):
    mine, other = api.create(tenant, title="mine"), api.create(tenant, title="other")
    client = QorchApi(live.url, tenant.agents[Role.Q_ASSISTANT])
    claimed = client.claim("q-1", lease_seconds=60)
    held = claimed["handoff"]
    tools = ToolExecutor(client, "q-1", UsageLedger(), workflow_id=held["workflow_id"], handoff_id=held["id"])
    elsewhere = mine["id"] if held["workflow_id"] == other["id"] else other["id"]
    refused = tools.call("transition", {"workflow_id": elsewhere, "to": "PLANNING"})
    assert refused.failure is not None and refused.failure.code == "not_your_work"
    refused = tools.call("release", {"workflow_id": held["workflow_id"], "handoff_id": "ho_someone_elses"})
    assert refused.failure is not None and refused.failure.code == "not_your_work"
    assert tools.call("heartbeat", {"workflow_id": held["workflow_id"], "handoff_id": held["id"]}).ok
    assert api.get(f"/v1/workflows/{elsewhere}", tenant.owner).body["version"] == 1


def test_a_release_note_the_server_does_not_take_is_dropped_not_the_release(api, tenant, live):
    """The contract lets a release carry a note; a server whose release takes no note refuses the field by name,
    and the client releases without it (once told, it stops sending notes)."""
    api.create(tenant)
    client = QorchApi(live.url, tenant.agents[Role.Q_ASSISTANT])
    claimed = client.claim("q-1", lease_seconds=60)
    released = client.release(claimed["workflow"]["id"], claimed["handoff"]["id"], "q-1", "the model gave up")
    assert released["status"] == "PENDING"
    with pytest.raises(ApiError) as caught:  # and a real refusal is still one
        client.release(claimed["workflow"]["id"], claimed["handoff"]["id"], "q-1", "again")
    assert caught.value.code == "lease_lost" and caught.value.status == 409


def test_an_unreachable_api_is_a_failure_not_a_crash():
    client = QorchApi("http://127.0.0.1:9", "qo_dev_x")
    import agents.api as module

    previous, module.RETRIES = module.RETRIES, 0
    try:
        outcome = ToolExecutor(client, "q-1").call("list_events", {"workflow_id": "wf_1"})
    finally:
        module.RETRIES = previous
    assert outcome.failure is not None and outcome.failure.code == "unreachable"


def test_usage_never_costs_the_transition_it_rides_on(api, tenant, live):
    """A qorch that does not record usage yet refuses the field by name: the transition is sent again without it.
    One that does records it on the event."""
    wf = api.create(tenant)
    client = QorchApi(live.url, tenant.agents[Role.Q_ASSISTANT])
    client.claim("q-1", lease_seconds=60)
    ledger = UsageLedger()
    ledger.add({"model": "claude-sonnet-4-5", "input_tokens": 1200, "output_tokens": 300, "cache_read_tokens": 0,
                "cost_usd": None})
    tools = ToolExecutor(client, "q-1", ledger)
    moved = tools.call("transition", {"workflow_id": wf["id"], "to": "PLANNING", "note": "scoped"})
    assert moved.ok, moved.failure
    assert ledger.pending() == [] and len(ledger.recorded) == 1, "offered once, never again"
    assert moved.result["event"]["usage"], "the transition's event records it"


def test_the_agents_package_is_a_client_only():
    """agents/ ships alone in its image (agents/Dockerfile copies it and requirements-agents.txt, nothing else): it
    imports nothing of the product (shared, tools, functions, main), nor Firestore, Stripe or boto3."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    forbidden = {"shared", "tools", "functions", "main", "tests", "google", "stripe", "boto3", "firebase_admin"}
    found = {}
    for path in sorted((root / "agents").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            hits = {n.split(".")[0] for n in names} & forbidden
            if hits:
                found[str(path.relative_to(root))] = sorted(hits)
    assert found == {}
