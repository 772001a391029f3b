"""The operations an agent performs on qorch, as tool definitions for models (OpenAI Chat Completions and Responses,
Anthropic Messages, and the neutral form the context carries).

Each tool's arguments are a pydantic model derived field by field from the model the API validates that request
with (`TransitionRequest`, `CreateArtifactRequest`, `PageQuery`, ...), so a constraint changed there changes here.
The JSON Schemas fit OpenAI's strict mode, which the tests check recursively: every property is required (an
optional one is nullable: null means "leave it out of the request"), `additionalProperties` is false, `$ref`s are
inlined, and only keywords strict mode accepts remain (string lengths are dropped: the API still enforces them, and
a refusal comes back to the model as a tool error naming the field).

The model sees only these arguments: the client that executes a call (runner, MCP server) adds `agent_id` and
`usage` itself. Pure: no I/O; the definitions are built once, on first use.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from shared.domain.agent_models import ToolFormat
from shared.domain.models import ClaimRequest, CreateArtifactRequest, PageQuery, ReleaseRequest, TransitionRequest

FORMATS: tuple[str, ...] = get_args(ToolFormat)

# The ids the API's paths take (shared.http.routes: anything else is simply not found).
PathId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]

# JSON Schema keywords OpenAI's strict mode accepts (its "supported schemas"); anything else is dropped.
STRICT_KEYWORDS = frozenset({
    "type", "description", "properties", "required", "additionalProperties", "items", "anyOf", "enum", "const",
    "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems",
    "maxItems",
})


class ToolArguments(BaseModel):
    """A tool's arguments: every field required (strict mode), unknown ones refused, as strict as the API."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _from(model: type[BaseModel], name: str, *, nullable: bool | None = None,
          description: str | None = None) -> tuple[Any, Any]:
    """Field `name` of the API's `model` as a tool argument: the same type and constraints, required, and nullable
    if the API has a default for it (null then means: send nothing, take the API's default)."""
    info = model.model_fields[name]
    annotation = info.rebuild_annotation()
    if nullable if nullable is not None else not info.is_required():
        annotation = annotation | None
    return annotation, Field(description=description or info.description)


def _arguments(model_name: str, /, **fields: tuple[Any, Any]) -> type[ToolArguments]:
    return create_model(model_name, __base__=ToolArguments, **fields)


_WORKFLOW = (PathId, Field(description="The workflow's id (wf_...)"))
_HANDOFF = (PathId, Field(description="The hand-off's id (ho_...), as the context or the claim gave it"))

GetContextArgs = _arguments("GetContextArgs", workflow_id=_WORKFLOW)
ReadArtifactArgs = _arguments(
    "ReadArtifactArgs", workflow_id=_WORKFLOW,
    artifact_id=(PathId, Field(description="The artifact's id (art_...), from the context's handed_over or "
                                           "earlier_artifacts")))
WriteArtifactArgs = _arguments(
    "WriteArtifactArgs", workflow_id=_WORKFLOW,
    name=_from(CreateArtifactRequest, "name", description="The file name, e.g. design.md"),
    content=(str, Field(description="The whole content, as text (stored as UTF-8)")),
    content_type=_from(CreateArtifactRequest, "content_type",
                       description="A media type; null: text/markdown for a .md name, else text/plain"))
TransitionArgs = _arguments(
    "TransitionArgs", workflow_id=_WORKFLOW,
    to=_from(TransitionRequest, "to", description="The state to move the workflow to: one of the context's "
                                                  "allowed_transitions"),
    note=_from(TransitionRequest, "note", description="What the next role must know: what you did, what you leave"),
    reason=_from(TransitionRequest, "reason", description="Why, in a sentence (kept on the event)"),
    artifacts=_from(TransitionRequest, "artifacts", nullable=False,
                    description="Ids of your AVAILABLE artifacts to hand over with the transition ([] for none)"),
    expected_version=_from(TransitionRequest, "expected_version",
                           description="The workflow version you decided on; null to skip the check"))
HeartbeatArgs = _arguments("HeartbeatArgs", workflow_id=_WORKFLOW, handoff_id=_HANDOFF)
ReleaseArgs = _arguments(
    "ReleaseArgs", workflow_id=_WORKFLOW, handoff_id=_HANDOFF,
    note=_from(ReleaseRequest, "note", description="Why you give the work back, for the next agent (kept on the "
                                                   "hand-off); null for none"))
ListEventsArgs = _arguments(
    "ListEventsArgs", workflow_id=_WORKFLOW,
    page_token=_from(PageQuery, "page_token", description="next_page_token of the previous page; null: the first"),
    limit=_from(PageQuery, "limit", nullable=True, description="Events per page (1..100); null: 20"))
ClaimNextArgs = _arguments(
    "ClaimNextArgs",
    wait_seconds=_from(ClaimRequest, "wait_seconds", description="Wait up to this long for work (0..20); null: 0"),
    lease_seconds=_from(ClaimRequest, "lease_seconds", nullable=True,
                        description="The lease to take (30..3600 s); null: 300"))


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    arguments: type[ToolArguments]

    def parameters(self) -> dict[str, Any]:
        return strict_schema(self.arguments)


TOOLS: tuple[Tool, ...] = (
    Tool("get_context", "Get everything for the workflow's current step: your instructions and task, the open "
         "hand-off, the artifacts handed to you and earlier ones (each with a download URL), recent history, and the "
         "transitions you may take with what each means.", GetContextArgs),
    Tool("read_artifact", "Read one artifact of the workflow as text (UTF-8). Fails for an artifact that is not "
         "text.", ReadArtifactArgs),
    Tool("write_artifact", "Store a work product as an artifact of the workflow (declared, uploaded and checked in "
         "one step). Returns its id, to attach to your transition.", WriteArtifactArgs),
    Tool("transition", "Move the workflow to the next state, handing over your artifacts with a note. Finish your "
         "step with exactly one of these.", TransitionArgs),
    Tool("heartbeat", "Extend the lease of the hand-off you hold. Send one every third of the lease; if it fails "
         "with lease_lost, stop working on this hand-off.", HeartbeatArgs),
    Tool("release", "Give the hand-off you hold back to the queue, unfinished, for another agent.", ReleaseArgs),
    Tool("list_events", "The workflow's audit log, oldest first, a page at a time.", ListEventsArgs),
)
# The MCP server also offers this one; a model driven by the runner is handed its work instead.
CLAIM_NEXT = Tool("claim_next", "Claim the oldest hand-off waiting for your roles, under a lease. Returns the "
                  "hand-off and its workflow, or no hand-off when there is no work.", ClaimNextArgs)


# ---- JSON Schema for strict mode -----------------------------------------------------------------------------------


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """`node` with every `$ref` replaced by its definition (merged with its sibling keys) and only strict-mode
    keywords kept (property names under `properties` are data, not keywords)."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        node = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _inline(prop, defs) for name, prop in value.items()}
        elif key in STRICT_KEYWORDS:
            out[key] = _inline(value, defs)
    return out


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema (as it validates input), made fit for OpenAI's strict mode. Raises if the model
    itself is not (a field with a default, or extra fields allowed): the tool's arguments must be fixed, not the
    schema patched."""
    schema = model.model_json_schema(mode="validation")
    properties = schema.get("properties", {})
    if schema.get("additionalProperties") is not False or set(schema.get("required", [])) != set(properties):
        raise ValueError(f"{model.__name__}: every field must be required and extra fields forbidden")
    return _inline({k: v for k, v in schema.items() if k != "$defs"}, schema.get("$defs", {}))


# ---- the shapes each SDK sends -------------------------------------------------------------------------------------


def render(tool: Tool, fmt: str) -> dict[str, Any]:
    parameters = tool.parameters()
    if fmt == "openai":  # Chat Completions: ChatCompletionFunctionToolParam
        return {"type": "function", "function": {"name": tool.name, "description": tool.description,
                                                 "parameters": parameters}}
    if fmt == "openai-responses":  # Responses: FunctionToolParam
        return {"type": "function", "name": tool.name, "description": tool.description, "parameters": parameters,
                "strict": True}
    if fmt == "anthropic":  # Messages: ToolParam
        return {"name": tool.name, "description": tool.description, "input_schema": parameters}
    if fmt == "neutral":  # what the context carries
        return {"name": tool.name, "description": tool.description, "parameters": parameters}
    raise ValueError(f"unknown tool format {fmt!r}")


@cache
def _rendered(fmt: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(tool, fmt) for tool in TOOLS)


def definitions(fmt: str) -> list[dict[str, Any]]:
    """Every tool in format `fmt` (a fresh copy: callers may change it)."""
    return copy.deepcopy(list(_rendered(fmt)))
