"""Tool definitions for models: served without a key in each SDK's shape, passed through the official OpenAI and
Anthropic SDKs unchanged (to a local stand-in of each API, over real HTTP), every schema valid JSON Schema and fit
for OpenAI's strict mode (checked recursively), and the arguments derived from the API's own request models."""

from __future__ import annotations

import json
import threading
import typing
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
import pydantic
import pytest

from shared.domain import agent_tools
from shared.domain.models import ClaimRequest, CreateArtifactRequest, PageQuery, TransitionRequest
from shared.domain.state_machine import State

# The tool names the runner, the MCP server and the dashboard rely on (CONTRACT-agents.md).
CONTRACT = {
    "get_context": ["workflow_id"],
    "read_artifact": ["workflow_id", "artifact_id"],
    "write_artifact": ["workflow_id", "name", "content", "content_type"],
    "transition": ["workflow_id", "to", "note", "reason", "artifacts", "expected_version"],
    "heartbeat": ["workflow_id", "handoff_id"],
    "release": ["workflow_id", "handoff_id", "note"],
    "list_events": ["workflow_id", "page_token", "limit"],
}


# ---- strict mode, checked recursively ----------------------------------------------------------------------------


def strict_problems(schema: Any, path: str = "$") -> list[str]:
    """Where `schema` breaks OpenAI's strict mode: an object without `additionalProperties: false` or with a
    property missing from `required`, a `$ref` (we inline them), or a keyword strict mode does not accept."""
    problems: list[str] = []
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            problems += strict_problems(item, f"{path}[{i}]")
        return problems
    if not isinstance(schema, dict):
        return problems
    if unknown := sorted(set(schema) - agent_tools.STRICT_KEYWORDS):
        problems.append(f"{path}: keywords {unknown}")
    is_object = schema.get("type") == "object" or "properties" in schema
    if is_object:
        if schema.get("additionalProperties") is not False:
            problems.append(f"{path}: additionalProperties is not false")
        if set(schema.get("required", [])) != set(schema.get("properties", {})):
            problems.append(f"{path}: not every property is required")
    for name, prop in schema.get("properties", {}).items():
        problems += strict_problems(prop, f"{path}.{name}")
    for key in ("items", "anyOf"):
        if key in schema:
            problems += strict_problems(schema[key], f"{path}.{key}")
    return problems


def test_the_strict_check_sees_a_schema_that_is_not_strict():
    loose = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}, "b": {
        "type": "object", "properties": {"c": {"$ref": "#/$defs/C"}}, "required": []}}, "required": ["a", "b"]}
    assert strict_problems(loose) == [
        "$: additionalProperties is not false", "$.a: keywords ['maxLength']",
        "$.b: additionalProperties is not false", "$.b: not every property is required",
        "$.b.c: keywords ['$ref']"]


ALL_TOOLS = [*agent_tools.TOOLS, agent_tools.CLAIM_NEXT]


@pytest.mark.parametrize("tool", ALL_TOOLS, ids=lambda t: t.name)
def test_every_schema_is_valid_json_schema_and_fits_strict_mode(tool):
    schema = tool.parameters()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert strict_problems(schema) == []
    # optional arguments are nullable: null must validate wherever the API has a default
    for name, prop in schema["properties"].items():
        model_field = tool.arguments.model_fields[name]
        nullable = {"type": "null"} in prop.get("anyOf", [])
        assert nullable == (type(None) in typing.get_args(model_field.annotation)), name


def test_the_tools_are_the_agreed_ones_with_the_agreed_arguments():
    assert {t.name: list(t.parameters()["properties"]) for t in agent_tools.TOOLS} == CONTRACT
    assert list(agent_tools.CLAIM_NEXT.parameters()["properties"]) == ["wait_seconds", "lease_seconds"]


def test_a_strict_schema_can_only_come_from_a_strict_model():
    loose = pydantic.create_model("Loose", a=(int, 3))
    with pytest.raises(ValueError, match="every field must be required"):
        agent_tools.strict_schema(loose)


# ---- derived from the API's models ---------------------------------------------------------------------------------


def props(tool_name: str) -> dict[str, Any]:
    return next(t for t in ALL_TOOLS if t.name == tool_name).parameters()["properties"]


def test_the_arguments_carry_the_api_models_constraints():
    transition = props("transition")
    assert transition["to"]["enum"] == [s.value for s in State]
    max_artifacts = TransitionRequest.model_fields["artifacts"].metadata[0].max_length
    assert transition["artifacts"]["maxItems"] == max_artifacts == 20
    assert transition["artifacts"]["items"]["pattern"] == r"^art_[0-9a-f]{32}$"
    assert {"minimum": 1, "type": "integer"} in transition["expected_version"]["anyOf"]
    content_type = CreateArtifactRequest.model_json_schema()["properties"]["content_type"]["pattern"]
    assert {"pattern": content_type, "type": "string"} in props("write_artifact")["content_type"]["anyOf"]
    page = PageQuery.model_json_schema()["properties"]["limit"]
    assert {"type": "integer", "minimum": page["minimum"], "maximum": page["maximum"]} in props("list_events")[
        "limit"]["anyOf"]
    claim = ClaimRequest.model_json_schema()["properties"]["lease_seconds"]
    assert {"type": "integer", "minimum": claim["minimum"], "maximum": claim["maximum"]} in props("claim_next")[
        "lease_seconds"]["anyOf"]


GOOD_CALLS = {
    "transition": {"workflow_id": "wf_1", "to": "TESTING", "note": "built it", "reason": None,
                   "artifacts": ["art_" + "a" * 32], "expected_version": None},
    "write_artifact": {"workflow_id": "wf_1", "name": "design.md", "content": "# Design\n", "content_type": None},
    "list_events": {"workflow_id": "wf_1", "page_token": None, "limit": 50},
}
BAD_CALLS = [
    ("transition", {**GOOD_CALLS["transition"], "to": "LIMBO"}),
    ("transition", {**GOOD_CALLS["transition"], "artifacts": ["design.md"]}),
    ("transition", {**GOOD_CALLS["transition"], "agent_id": "me"}),  # the client adds it, never the model
    ("transition", {k: v for k, v in GOOD_CALLS["transition"].items() if k != "note"}),
    ("list_events", {**GOOD_CALLS["list_events"], "limit": 101}),
    ("write_artifact", {**GOOD_CALLS["write_artifact"], "content_type": "not a type"}),
]


@pytest.mark.parametrize("name", GOOD_CALLS)
def test_a_valid_call_validates_against_the_schema_the_tool_model_and_the_api_request(name):
    tool = next(t for t in ALL_TOOLS if t.name == name)
    arguments = GOOD_CALLS[name]
    jsonschema.validate(arguments, tool.parameters())
    parsed = tool.arguments.model_validate_json(json.dumps(arguments))
    sent = {k: v for k, v in parsed.model_dump(mode="json").items() if v is not None and k != "workflow_id"}
    if name == "transition":  # what the client sends: the arguments without nulls, plus its agent_id
        TransitionRequest.model_validate_json(json.dumps({**sent, "agent_id": "runner-1"}))
    elif name == "list_events":
        PageQuery.model_validate(sent)


@pytest.mark.parametrize(("name", "arguments"), BAD_CALLS)
def test_an_invalid_call_is_refused_by_the_schema_and_by_the_tool_model(name, arguments):
    tool = next(t for t in ALL_TOOLS if t.name == name)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(arguments, tool.parameters())
    with pytest.raises(pydantic.ValidationError):
        tool.arguments.model_validate_json(json.dumps(arguments))


# ---- the endpoint ------------------------------------------------------------------------------------------------


def test_the_tools_are_served_without_a_key_openai_by_default(api):
    r = api.get("/v1/agent-tools")
    assert r.status == 200, r.body
    assert r.body == {"format": "openai", "tools": agent_tools.definitions("openai")}
    assert [t["function"]["name"] for t in r.body["tools"]] == list(CONTRACT)


@pytest.mark.parametrize("fmt", agent_tools.FORMATS)
def test_each_format_has_its_sdks_shape(api, fmt):
    r = api.get("/v1/agent-tools", query={"format": fmt})
    assert r.status == 200 and r.body["format"] == fmt
    for tool, served in zip(agent_tools.TOOLS, r.body["tools"], strict=True):
        parameters = tool.parameters()
        expected = {
            "openai": {"type": "function", "function": {"name": tool.name, "description": tool.description,
                                                        "parameters": parameters}},
            "openai-responses": {"type": "function", "name": tool.name, "description": tool.description,
                                 "parameters": parameters, "strict": True},
            "anthropic": {"name": tool.name, "description": tool.description, "input_schema": parameters},
        }[fmt]
        assert served == expected


@pytest.mark.parametrize("query", [{"format": "gemini"}, {"format": ""}, {"fmt": "openai"}])
def test_an_unknown_format_or_parameter_is_a_validation_error(api, query):
    r = api.get("/v1/agent-tools", query=query)
    assert (r.status, r.code) == (422, "validation_error")


def test_the_shapes_match_the_sdks_own_types():
    """The keys each SDK's TypedDict for a function tool requires are there, and there is no key it does not know."""
    from anthropic.types import ToolParam
    from openai.types.chat import ChatCompletionFunctionToolParam
    from openai.types.responses import FunctionToolParam
    from openai.types.shared_params import FunctionDefinition

    def fits(value: dict, typed: Any) -> None:
        assert typed.__required_keys__ <= set(value) <= set(typing.get_type_hints(typed)), (typed, set(value))

    for chat, responses, anthropic in zip(*(agent_tools.definitions(f) for f in agent_tools.FORMATS), strict=True):
        fits(chat, ChatCompletionFunctionToolParam)
        fits(chat["function"], FunctionDefinition)
        fits(responses, FunctionToolParam)
        fits(anthropic, ToolParam)


# ---- through the official SDKs, to a local stand-in of each API ----------------------------------------------------

REPLIES = {
    "/v1/chat/completions": {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-6-sol",
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "ok"}}]},
    "/v1/responses": {"id": "resp_1", "object": "response", "created_at": 0, "model": "gpt-6-sol",
                      "status": "completed", "output": [], "parallel_tool_calls": True, "tool_choice": "auto",
                      "tools": []},
    "/v1/messages": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-opus-5-5",
                     "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
                     "usage": {"input_tokens": 1, "output_tokens": 1}},
}


class StandIn:
    """A loopback HTTP server that records each request body by path and answers a minimal valid reply."""

    def __init__(self) -> None:
        received: dict[str, Any] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received[self.path] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reply = json.dumps(REPLIES[self.path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.server.shutdown()


def test_the_official_sdks_send_the_served_tools_unchanged(api, stand_in):
    import anthropic
    import openai

    served = {fmt: api.get("/v1/agent-tools", query={"format": fmt}).body["tools"] for fmt in agent_tools.FORMATS}
    client = openai.OpenAI(base_url=stand_in.url + "/v1", api_key="test", max_retries=0)
    client.chat.completions.create(model="gpt-6-sol", messages=[{"role": "user", "content": "hi"}],
                                   tools=served["openai"])
    client.responses.create(model="gpt-6-sol", input="hi", tools=served["openai-responses"])
    anthropic.Anthropic(base_url=stand_in.url, api_key="test", max_retries=0).messages.create(
        model="claude-opus-5-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}],
        tools=served["anthropic"])
    assert stand_in.received["/v1/chat/completions"]["tools"] == served["openai"]
    assert stand_in.received["/v1/responses"]["tools"] == served["openai-responses"]
    assert stand_in.received["/v1/messages"]["tools"] == served["anthropic"]
