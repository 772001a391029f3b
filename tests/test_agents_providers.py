"""The providers on the official SDKs, against the model stand-in (a real HTTP server): each conversation's wire
format, tool calls and results paired, usage as qorch records it, the SDKs' retries on a 429, and a 500 that does
not clear becoming a ProviderError. No qorch here: the results fed back are the model's tool outcomes as text."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from agents.providers import ProviderError, make_provider
from agents.tools import ARGUMENTS, DESCRIPTIONS
from tests.model_standin import Call, call, fail, pairing_errors, say


@dataclass
class Result:
    ok: bool
    body: dict

    def text(self) -> str:
        return json.dumps(self.body)


def tool_definitions(fmt: str) -> list[dict]:
    """The tools in each SDK's shape (the runner gets these from GET /v1/agent-tools; here they are made locally)."""
    out = []
    for name, model in ARGUMENTS.items():
        schema = model.model_json_schema()
        if fmt == "anthropic":
            out.append({"name": name, "description": DESCRIPTIONS[name], "input_schema": schema})
        elif fmt == "openai":
            out.append({"type": "function", "function": {"name": name, "description": DESCRIPTIONS[name],
                                                          "parameters": schema}})
        else:
            out.append({"type": "function", "name": name, "description": DESCRIPTIONS[name], "parameters": schema,
                        "strict": False})
    return out


CASES = [("anthropic", "chat", "anthropic"), ("openai", "chat", "openai"), ("openai", "responses", "openai-responses")]
IDS = ["anthropic", "openai-chat", "openai-responses"]
API = {"anthropic": "anthropic", "openai": "chat", "openai-responses": "responses"}


@pytest.mark.parametrize(("provider", "openai_api", "fmt"), CASES, ids=IDS)
def test_a_tool_loop_pairs_every_call_with_its_result_and_reports_usage(standin, provider, openai_api, fmt):
    standin.script = [
        fail(429),  # the SDK waits the retry-after-ms and asks again
        call("get_context", {"workflow_id": "wf_1"}, usage=(1000, 30, 200),
             also=[Call("list_events", {"workflow_id": "wf_1"})]),  # two calls in one turn
        say("Let me think.", usage=(1200, 15, 0)),
        call("transition", {"workflow_id": "wf_1", "to": "PLANNING"}, usage=(1300, 40, 1100)),
    ]
    p = make_provider(provider, "some-model", openai_api=openai_api)
    assert p.tool_format == fmt
    conversation = p.conversation("You are the Q Assistant.", "Discover what the customer wants.",
                                  tool_definitions(fmt))
    first = conversation.next()
    assert len(standin.requests) == 2, "the 429 was retried by the SDK"
    assert [(c.name, _args(c.arguments)) for c in first.tool_calls] == [
        ("get_context", {"workflow_id": "wf_1"}), ("list_events", {"workflow_id": "wf_1"})]
    conversation.add_tool_results([(first.tool_calls[0], Result(True, {"role": "Q_ASSISTANT"})),
                                   (first.tool_calls[1], Result(False, {"error": {"code": "not_found"}}))])
    second = conversation.next()
    assert second.tool_calls == [] and second.text == "Let me think."
    conversation.add_user_text("Please finish.")
    third = conversation.next()
    assert [c.name for c in third.tool_calls] == ["transition"]

    sent = standin.requests_to(API[fmt])
    assert len(sent) == 4
    assert all(pairing_errors(r.api, r.body) == [] for r in sent)
    # the third request carries both results, each with its own call's id, the failed one marked as such
    third_request = sent[2]
    assert third_request.tool_results() == [(cid, body) for cid, body in zip(
        [c.id for c in first.tool_calls], [{"role": "Q_ASSISTANT"}, {"error": {"code": "not_found"}}], strict=True)]
    if fmt == "anthropic":
        results = [b for m in third_request.body["messages"] if m["role"] == "user" and isinstance(m["content"], list)
                   for b in m["content"]]
        assert [b.get("is_error", False) for b in results] == [False, True]
        assert third_request.body["system"] == "You are the Q Assistant."
        assert third_request.body["cache_control"] == {"type": "ephemeral"}, "the re-sent prefix is cached"
    elif fmt == "openai":
        assert third_request.body["messages"][0] == {"role": "system", "content": "You are the Q Assistant."}
    else:
        assert third_request.body["instructions"] == "You are the Q Assistant."
    assert third_request.first_user_text() == "Discover what the customer wants."
    assert all(r.sent_key() == standin.env()["OPENAI_API_KEY"] for r in sent), "the key from the environment"
    assert [t.get("name") or t["function"]["name"] for t in sent[0].body["tools"]] == list(ARGUMENTS)

    # usage as qorch records it: uncached input, output, cache reads, one entry per model call that answered
    model = "claude-standin-1" if fmt == "anthropic" else "gpt-standin-1"
    assert [first.usage, second.usage, third.usage] == [
        {"model": model, "input_tokens": 1000, "output_tokens": 30, "cache_read_tokens": 200, "cost_usd": None},
        {"model": model, "input_tokens": 1200, "output_tokens": 15, "cache_read_tokens": 0, "cost_usd": None},
        {"model": model, "input_tokens": 1300, "output_tokens": 40, "cache_read_tokens": 1100, "cost_usd": None}]


@pytest.mark.parametrize(("provider", "openai_api", "fmt"), CASES, ids=IDS)
def test_malformed_arguments_reach_the_caller_as_sent(standin, provider, openai_api, fmt):
    standin.script = [call("write_artifact", {"workflow_id": "wf_1", "name": "a.md", "content": "x"},
                           raw='{"workflow_id": "wf_1", "name": ')]
    conversation = make_provider(provider, "m", openai_api=openai_api).conversation("s", "t", tool_definitions(fmt))
    reply = conversation.next()
    (only,) = reply.tool_calls
    if fmt == "anthropic":
        assert only.arguments == {"workflow_id": 12345, "name": "a.md"}  # an object, but the wrong one
    else:
        assert only.arguments == '{"workflow_id": "wf_1", "name": '  # not JSON: the executor says so


@pytest.mark.parametrize(("provider", "openai_api", "fmt"), CASES, ids=IDS)
def test_a_500_that_does_not_clear_is_a_provider_error_after_the_sdk_retries(standin, provider, openai_api, fmt):
    standin.script = [fail(500), fail(500), fail(500), say("never reached")]
    conversation = make_provider(provider, "m", openai_api=openai_api).conversation("s", "t", tool_definitions(fmt))
    with pytest.raises(ProviderError, match="500"):
        conversation.next()
    assert len(standin.requests) == 3, "the first attempt and the SDK's two retries"


def test_a_missing_key_is_refused_before_any_call(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="ANTHROPIC_API_KEY is not set"):
        make_provider("anthropic")
    with pytest.raises(ProviderError, match="OPENAI_API_KEY is not set"):
        make_provider("openai")


def test_the_standin_refuses_an_unpaired_tool_call_like_the_real_apis():
    """The check the pairing tests rely on can fail."""
    asked = {"messages": [{"role": "user", "content": "t"},
                          {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "x", "input": {}},
                                                            {"type": "tool_use", "id": "b", "name": "y", "input": {}}]},
                          {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": "1"}]}]}
    assert pairing_errors("anthropic", asked)
    stray = {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "z", "content": "1"}]}]}
    assert pairing_errors("anthropic", stray)
    chat = {"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "x", "arguments": "{}"}}]},
        {"role": "user", "content": "hello"}]}
    assert pairing_errors("chat", chat)
    assert pairing_errors("responses", {"input": [{"type": "function_call", "call_id": "a", "name": "x",
                                                   "arguments": "{}"}]})


def test_scripted_provider_needs_no_network_and_no_key(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    conversation = make_provider("scripted").conversation("playbook", "Do it.\n(workflow_id: wf_abc123)", [])
    first = conversation.next()
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("get_context", {"workflow_id": "wf_abc123"})]
    assert first.usage["model"] == "scripted" and first.usage["cost_usd"] > 0
    assert make_provider("scripted").conversation("playbook", "Do it.\n(workflow_id: wf_abc123)",
                                                  []).next().usage == first.usage, "deterministic"


def _args(arguments):
    return json.loads(arguments) if isinstance(arguments, str) else arguments
