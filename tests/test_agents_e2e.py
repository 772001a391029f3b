"""The runner drives real work on a running stack (the router over real HTTP, the emulator, moto), with each
provider on its official SDK pointed at the model stand-in: claim → context → the model's tool loop → artifacts →
one transition carrying the usage of every model call. And what the runner does when things go wrong: a model that
sends malformed arguments, a model API that fails, a model that never finishes, a lease lost to another agent,
Ctrl-C while the model thinks.

These need issue 10's API (GET /v1/workflows/{id}/context, GET /v1/agent-tools, `usage` on transitions and
heartbeats)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agents.runner import Runner, Settings
from shared.domain.state_machine import Role
from tests.agents import Agent
from tests.model_standin import KEY, call, fail, pairing_errors, say

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("s3")

PROVIDERS = [("anthropic", "chat"), ("openai", "chat"), ("openai", "responses")]
IDS = ["anthropic", "openai-chat", "openai-responses"]
API = {("anthropic", "chat"): "anthropic", ("openai", "chat"): "chat", ("openai", "responses"): "responses"}


def at_design(api, tenant) -> dict:
    """A workflow waiting for the architect (the owner moved it there): the architect's step leaves its role, so
    one claim is one step."""
    wf = api.create(tenant, title="Hat shop", description="Sell hats online.")
    api.move(tenant, wf, "PLANNING", key=tenant.owner)
    api.move(tenant, wf, "DESIGN", key=tenant.owner)
    return wf


def runner(live, tenant, provider="scripted", openai_api="chat", **overrides) -> Runner:
    settings = Settings(api_url=live.url, api_key=tenant.agents[Role.ARCHITECT], role="ARCHITECT",
                        agent_id="architect-1", provider=provider, model="some-model", openai_api=openai_api,
                        lease_seconds=60, wait_seconds=2, max_handoffs=1, failure_backoff=0.05)
    for name, value in overrides.items():
        setattr(settings, name, value)
    return Runner(settings)


def design_script(workflow_id: str) -> list:
    """A model's step: a 429 first (the SDK retries), the context, a malformed write (a tool error goes back), the
    design, the transition with the artifact the write returned."""
    return [
        fail(429),
        call("get_context", {"workflow_id": workflow_id}, usage=(2000, 40, 0)),
        call("write_artifact", {"workflow_id": workflow_id, "name": "design.md", "content": "x"},
             raw='{"workflow_id": "' + workflow_id + '", "name": "design.md", "content": ', usage=(2500, 60, 1800)),
        call("write_artifact", {"workflow_id": workflow_id, "name": "design.md",
                                "content": "# Design\n- Flask, Postgres\n", "content_type": None},
             usage=(2600, 400, 1800)),
        call("transition", lambda r: {"workflow_id": workflow_id, "to": "IMPLEMENTATION", "note": "Design ready",
                                      "reason": None, "expected_version": None,
                                      "artifacts": [r.result_of("write_artifact")["artifact_id"]]},
             usage=(2700, 50, 2300)),
    ]


@pytest.mark.parametrize(("provider", "openai_api"), PROVIDERS, ids=IDS)
def test_the_runner_drives_a_step_from_claim_to_transition(api, tenant, live, standin, provider, openai_api):
    wf = at_design(api, tenant)
    before = api.get(f"/v1/workflows/{wf['id']}/context", tenant.owner).body
    standin.script = design_script(wf["id"])
    r = runner(live, tenant, provider, openai_api)
    assert r.run() == 0

    (record,) = r.records
    assert (record.outcome, record.state, record.to, record.model_calls) == ("transitioned", "DESIGN",
                                                                              "IMPLEMENTATION", 4)
    sent = standin.requests_to(API[(provider, openai_api)])
    assert len(sent) == 5, "four model calls, one of them retried after the 429"
    first = sent[1]
    # the context's instructions are the system prompt, its task the first user message; qorch's tool definitions
    system = {"anthropic": lambda b: b["system"], "chat": lambda b: b["messages"][0]["content"],
              "responses": lambda b: b["instructions"]}[first.api](first.body)
    assert system == before["instructions"]
    assert first.first_user_text().startswith(before["task"].split("\n")[0])
    assert {t.get("name") or t["function"]["name"] for t in first.body["tools"]} == {
        "get_context", "read_artifact", "write_artifact", "transition", "heartbeat", "release", "list_events"}
    # every tool call answered by its result, in each request (the stand-in also refuses otherwise, like the API)
    assert all(pairing_errors(q.api, q.body) == [] for q in sent)
    assert len(sent[-1].tool_results()) == 3
    if provider == "anthropic":
        for q in sent[2:]:
            messages = q.body["messages"]
            for asked, answered in zip(messages[1::2], messages[2::2], strict=False):
                uses = [b["id"] for b in asked["content"] if b["type"] == "tool_use"]
                results = [b["tool_use_id"] for b in answered["content"] if b["type"] == "tool_result"]
                assert uses == results
    # the malformed arguments came back to the model as a tool error, and the runner carried on
    bad = sent[3].tool_results()[-1][1]
    assert bad["error"]["code"] == "invalid_arguments"

    # the runner's ledger: one entry per model call that answered, as the model API returned it, all of them sent
    # with the one transition
    assert [(u["model"], u["input_tokens"], u["output_tokens"], u["cache_read_tokens"]) for u in record.usage] == [
        (u["model"], u["input"], u["output"], u["cache_read"]) for u in standin.returned_usage]
    events = api.get(f"/v1/workflows/{wf['id']}/events", tenant.owner).body["events"]
    assert [(e["from_state"], e["to_state"]) for e in events[-1:]] == [("DESIGN", "IMPLEMENTATION")]

    # the artifact is there, and it went with the hand-off to the developer
    handoffs = api.get(f"/v1/workflows/{wf['id']}/handoffs", tenant.owner).body["handoffs"]
    assert handoffs[0]["to_role"] == "DEVELOPER" and len(handoffs[0]["artifacts"]) == 1
    developer = Agent(api, tenant.agents[Role.DEVELOPER], "dev-1")
    assert developer.download(wf["id"], handoffs[0]["artifacts"][0]) == b"# Design\n- Flask, Postgres\n"


@pytest.mark.parametrize(("provider", "openai_api"), PROVIDERS, ids=IDS)
def test_the_transition_carries_the_usage_of_every_model_call(api, tenant, live, standin, provider, openai_api):
    """Issue 10 part B: the usage recorded on the transition's event, and in the workflow's totals, is exactly what
    the model API returned, one entry per call that answered (the 429 answered nothing)."""
    wf = at_design(api, tenant)
    standin.script = design_script(wf["id"])
    r = runner(live, tenant, provider, openai_api)
    assert r.run() == 0
    (record,) = r.records
    assert record.outcome == "transitioned" and len(record.usage) == 4
    events = api.get(f"/v1/workflows/{wf['id']}/events", tenant.owner).body["events"]
    moved = events[-1]
    assert (moved["from_state"], moved["to_state"]) == ("DESIGN", "IMPLEMENTATION")
    returned = standin.returned_usage
    assert [(u["model"], u["input_tokens"], u["output_tokens"], u["cache_read_tokens"]) for u in usage_entries(moved)] \
        == [(u["model"], u["input"], u["output"], u["cache_read"]) for u in returned]
    workflow = api.get(f"/v1/workflows/{wf['id']}", tenant.owner).body
    assert workflow["usage"]["input_tokens"] == sum(u["input"] for u in returned)
    assert workflow["usage"]["output_tokens"] == sum(u["output"] for u in returned)
    assert workflow["usage"]["cache_read_tokens"] == sum(u["cache_read"] for u in returned)
    assert workflow["usage"]["by_role"]["ARCHITECT"]["output_tokens"] == sum(u["output"] for u in returned)


def usage_entries(event: dict) -> list[dict]:
    """An event's usage entries (a list, or one entry)."""
    usage = event.get("usage")
    assert usage, f"no usage on event {event['seq']}"
    return usage if isinstance(usage, list) else usage.get("calls") or usage.get("entries") or [usage]


def test_a_model_api_that_keeps_failing_releases_the_work_with_a_note(api, tenant, live, standin):
    wf = at_design(api, tenant)
    standin.script = [fail(500)] * 3
    r = runner(live, tenant, "anthropic")
    assert r.run() == 0
    (record,) = r.records
    assert record.outcome == "failed" and "model API failed" in record.note
    (handoff,) = [h for h in api.get(f"/v1/workflows/{wf['id']}/handoffs", tenant.owner).body["handoffs"]
                  if h["to_role"] == "ARCHITECT"]
    assert handoff["status"] == "PENDING" and handoff["attempts"] == 1, "given back for another runner"
    assert api.get(f"/v1/workflows/{wf['id']}", tenant.owner).body["state"] == "DESIGN"


def test_a_model_that_never_finishes_is_stopped_at_the_turn_limit(api, tenant, live, standin):
    wf = at_design(api, tenant)
    standin.script = [say("Hmm.", usage=(500, 5, 0)) for _ in range(3)]
    r = runner(live, tenant, "openai", max_turns=3)
    assert r.run() == 0
    (record,) = r.records
    assert (record.outcome, record.model_calls) == ("released", 3)
    assert "within 3 turns" in record.note
    sent = standin.requests_to("chat")
    assert sent[-1].body["messages"][-1]["role"] == "user", "each answer without a tool call got a nudge"
    workflow = api.get(f"/v1/workflows/{wf['id']}", tenant.owner).body
    assert workflow["current_handoff"]["status"] == "PENDING" and workflow["state"] == "DESIGN"


def test_invalid_arguments_are_told_to_the_model_a_bounded_number_of_times(api, tenant, live, standin):
    wf = at_design(api, tenant)
    standin.script = [call("transition", {}, raw="{not json") for _ in range(5)]
    r = runner(live, tenant, "openai", openai_api="responses", max_invalid=2)
    assert r.run() == 0
    (record,) = r.records
    assert record.outcome == "released" and "invalid tool arguments 3 times" in record.note
    assert len(standin.requests_to("responses")) == 3
    assert api.get(f"/v1/workflows/{wf['id']}", tenant.owner).body["current_handoff"]["status"] == "PENDING"


def test_a_lost_lease_drops_the_work_without_another_call(api, tenant, live, standin, clock):
    """While the model thinks, the lease runs out and another agent claims the work: the runner's transition is
    refused (lease_held), and it drops the work: no release, no further model call."""
    wf = at_design(api, tenant)
    other = Agent(api, tenant.agents[Role.ARCHITECT], "architect-2")

    def meanwhile(request):
        clock.advance(120)  # past the 60 s lease
        assert other.claim(lease_seconds=600).status == 200
        return call("transition", {"workflow_id": wf["id"], "to": "IMPLEMENTATION", "note": "done",
                                   "artifacts": []})

    standin.script = [call("get_context", {"workflow_id": wf["id"]}), meanwhile, say("never asked")]
    r = runner(live, tenant, "anthropic")
    assert r.run() == 0
    (record,) = r.records
    assert record.outcome == "dropped" and record.note == "transition: lease_held"
    assert len(standin.requests) == 2
    workflow = api.get(f"/v1/workflows/{wf['id']}", tenant.owner).body
    assert workflow["state"] == "DESIGN"
    assert (workflow["current_handoff"]["status"], workflow["current_handoff"]["agent_id"]) == ("CLAIMED",
                                                                                                "architect-2")


def test_ctrl_c_releases_the_work_held_while_the_model_thinks(api, tenant, live, standin):
    """A runner process on the real command line: the heartbeat timer keeps the lease while the model takes longer
    than a third of it; Ctrl-C releases the work and exits; no key ever reaches its output."""
    wf = at_design(api, tenant)
    thinking = threading.Event()
    finish = threading.Event()

    def slow(request):
        thinking.set()
        finish.wait(60)
        return say("too late")

    standin.script = [slow]
    agent_key = tenant.agents[Role.ARCHITECT]
    env = {**os.environ, **standin.env(), "QORCH_API_URL": live.url, "QORCH_API_KEY": agent_key,
           "QORCH_LOG_LEVEL": "DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "agents.runner", "--role", "ARCHITECT", "--agent-id",
                             "architect-9", "--provider", "anthropic", "--lease-seconds", "30", "--wait-seconds", "2"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert thinking.wait(120), "the runner never asked the model"
        first = api.get(f"/v1/workflows/{wf['id']}", tenant.owner).body["current_handoff"]
        assert first["agent_id"] == "architect-9"
        deadline = time.monotonic() + 60
        while api.get(f"/v1/workflows/{wf['id']}", tenant.owner).body["current_handoff"]["lease_expires_at"] == \
                first["lease_expires_at"]:
            assert time.monotonic() < deadline, "no heartbeat while the model was thinking"
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        finish.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    workflow = api.get(f"/v1/workflows/{wf['id']}", tenant.owner).body
    assert workflow["current_handoff"]["status"] == "PENDING" and workflow["state"] == "DESIGN"
    assert "released" in err
    for secret in (agent_key, KEY):
        assert secret not in out and secret not in err, "a key was logged"


def test_the_local_argument_models_match_the_served_tool_definitions(api):
    """The executor validates what the model sends with its own argument models; they name exactly the arguments
    qorch's tool definitions give the model, tool by tool."""
    from agents.tools import ARGUMENTS

    served = api.get("/v1/agent-tools", query={"format": "anthropic"}).body["tools"]
    assert {t["name"]: set(t["input_schema"]["properties"]) for t in served} == {
        name: set(model.model_fields) for name, model in ARGUMENTS.items()}


def test_the_mcp_prompts_are_the_role_playbooks_from_the_context(api, tenant, live):
    import anyio
    from mcp import Client, StdioServerParameters

    wf = at_design(api, tenant)
    params = StdioServerParameters(command=sys.executable, args=["-m", "agents.mcp"], cwd=str(ROOT),
                                   env={"QORCH_API_URL": live.url, "QORCH_API_KEY": tenant.agents[Role.ARCHITECT],
                                        "QORCH_AGENT_ID": "claude-code-1", "PATH": os.environ.get("PATH", "")})

    async def main():
        async with Client(params) as client:
            named = await client.get_prompt("architect", {"workflow_id": wf["id"]})
            oldest = await client.get_prompt("architect", {})
            context = await client.call_tool("get_context", {"workflow_id": wf["id"]})
            return named, oldest, context

    named, oldest, context = anyio.run(main)
    instructions = context.structured_content["instructions"]
    assert named.messages[0].content.text == instructions
    assert oldest.messages[0].content.text == instructions
    assert context.structured_content["role"] == "ARCHITECT"
    assert json.loads(json.dumps(context.structured_content))["workflow"]["id"] == wf["id"]


# ---- two runners of one role race for the same work ------------------------------------------------------------


def test_two_runners_of_one_role_never_both_work_on_one_handoff(api, tenant, live):
    from shared.services import accounts

    workflows = [api.create(tenant, title=f"shop {i}")["id"] for i in range(6)]
    keys = [tenant.agents[Role.Q_ASSISTANT],
            accounts.create_key(api.store, tenant.account_id, [Role.Q_ASSISTANT], name="second runner")[0]]
    runners = [Runner(Settings(api_url=live.url, api_key=key, role="Q_ASSISTANT", agent_id=f"q-{i}",
                               provider="scripted", concurrency=2, lease_seconds=120, wait_seconds=1))
               for i, key in enumerate(keys)]
    threads = [threading.Thread(target=r.run, daemon=True) for r in runners]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 240
    while any(api.get(f"/v1/workflows/{w}", tenant.owner).body["state"] != "DESIGN" for w in workflows):
        assert time.monotonic() < deadline, "the runners did not finish the work"
        time.sleep(0.5)
    for r in runners:
        r.stopping.set()
    for thread in threads:
        thread.join(timeout=30)

    records = [rec for r in runners for rec in r.records]
    assert all(rec.outcome == "transitioned" for rec in records), [(r.outcome, r.note) for r in records]
    by_handoff: dict[str, set[str]] = {}
    for rec in records:
        by_handoff.setdefault(rec.handoff_id, set()).add(rec.agent_id)
    assert len(by_handoff) == 6 and all(len(agents) == 1 for agents in by_handoff.values()), by_handoff
    assert sorted((rec.state, rec.to) for rec in records) == [("DISCOVERY", "PLANNING")] * 6 + [
        ("PLANNING", "DESIGN")] * 6, "each hand-off worked through both of its steps by one agent"
    for w in workflows:
        listed = api.get(f"/v1/workflows/{w}/handoffs", tenant.owner).body["handoffs"]
        first = next(h for h in listed if h["to_role"] == "Q_ASSISTANT")
        assert first["attempts"] == 1, "claimed once: nobody took it over"
