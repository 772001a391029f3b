"""The API's shapes for agents: the context of a workflow step (`GET /v1/workflows/{id}/context`) and the tool
definitions (`GET /v1/agent-tools`). Only the models, so that the route table (which every function imports) does not
pay for building the tools or the rendering: `shared.domain.context` renders a context, `shared.domain.agent_tools`
builds the tools. Each model is built on first use (`defer_build`), so importing them costs a function that never
uses them next to nothing. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.domain.models import Event, Handoff, QueryModel, WorkflowView
from shared.domain.state_machine import Role, State

ToolFormat = Literal["openai", "openai-responses", "anthropic"]
_LAZY = ConfigDict(defer_build=True)
DEFAULT_EVENTS = 20
# earlier_artifacts and the names in the history come from the workflow's newest artifacts, this many of them.
ARTIFACT_WINDOW = 100


class ContextQuery(QueryModel):
    model_config = _LAZY

    events: Annotated[int, Field(ge=1, le=100)] = Field(
        default=DEFAULT_EVENTS, description="How many events of the history, newest first")
    page_token: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = Field(
        default=None, description="history.next_page_token of an earlier answer: the events before those")


class ArtifactRef(BaseModel):
    model_config = _LAZY

    id: str
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    created_by: str
    download_url: str = Field(description="A presigned GET, valid until download_expires_at")
    download_expires_at: datetime


class ContextTransition(BaseModel):
    model_config = _LAZY

    to: State
    kind: str
    counts_as_retry: bool
    meaning: str = Field(description="When to take it, from the role's playbook")


class HistoryEvent(Event):
    model_config = _LAZY

    artifact_names: list[str | None] = Field(
        default_factory=list,
        description="The names of `artifacts`, in the same order (null for one outside the newest "
                    f"{ARTIFACT_WINDOW} artifacts)")


class History(BaseModel):
    model_config = _LAZY

    events: list[HistoryEvent] = Field(description="Newest first")
    next_page_token: str | None


class AgentTool(BaseModel):
    model_config = _LAZY

    name: str
    description: str
    parameters: dict[str, Any] = Field(description="JSON Schema of the arguments (OpenAI strict-mode compatible)")


class AgentContext(BaseModel):
    """Everything an agent needs for the workflow's current step, in one answer."""

    model_config = _LAZY

    workflow_id: str
    role: Role | None = Field(description="The workflow's current role: the caller acts as it (null once no role "
                                          "works on the workflow: COMPLETED, CANCELLED, FAILED)")
    playbook_version: str | None = Field(description="sha256:<hex> of the role's playbook")
    instructions: str = Field(description="The system prompt: the role's playbook, then this workflow")
    task: str = Field(description="The first user message: what to do now")
    workflow: WorkflowView
    handoff: Handoff | None = Field(description="The open hand-off, if any")
    handed_over: list[ArtifactRef] = Field(description="The artifacts the open hand-off carries")
    earlier_artifacts: list[ArtifactRef] = Field(
        description="The newest AVAILABLE artifact of each name from earlier steps, by name")
    history: History
    allowed_transitions: list[ContextTransition] = Field(description="What this caller may do next")
    tools: list[AgentTool]


class AgentToolsQuery(QueryModel):
    model_config = _LAZY

    format: ToolFormat = Field(default="openai", description="openai (Chat Completions), openai-responses "
                                                             "(Responses API) or anthropic (Messages API)")


class AgentTools(BaseModel):
    """The tool definitions, each exactly in the shape the named SDK sends."""

    model_config = _LAZY

    format: ToolFormat
    tools: list[dict[str, Any]]
