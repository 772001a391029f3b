"""qorch as an MCP server, for any MCP host (Claude Code, Claude Desktop, Cursor, an IDE), on the `mcp` SDK 2.x.

- Tools: the agent tools of the contract (get_context, read_artifact, write_artifact, transition, heartbeat,
  release, list_events) plus `claim_next`, with structured (pydantic) results. A refusal is a tool error whose text
  is the problem as JSON (`{"code": "lease_lost", ...}`), so the model can react; on `lease_lost` it stops.
- Resources: `qorch://workflows/{id}` (the workflow), `qorch://workflows/{id}/events` (its audit log),
  `qorch://workflows/{id}/artifacts/{artifact_id}` (an artifact's text).
- Prompts: one per agent role, its playbook. qorch serves a playbook only inside a workflow's context (its
  `instructions`), so a prompt renders the context of a workflow at that role's step: the one named, or else the
  oldest one waiting for that role.
- Configuration (environment): QORCH_API_URL, QORCH_API_KEY (an agent key), QORCH_AGENT_ID. It is a client of the
  public /v1 API only.
- Transports: stdio (default), or streamable HTTP (`--http --port P`) which refuses any Host header not on its
  allow-list (localhost, plus --allowed-host / QORCH_MCP_ALLOWED_HOSTS) with 421.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict, Field

from agents.api import ApiError, QorchApi
from agents.tools import AGENT_ROLES, ALL_ARGUMENTS, DESCRIPTIONS, Executor, State

INVALID_PARAMS = -32602
LOCAL_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
INSTRUCTIONS = (
    "qorch hands software work from one AI role to the next. To work: claim_next (you get a hand-off and its "
    "workflow), then get_context and follow its instructions and task; store your work product with "
    "write_artifact; finish with exactly one transition that attaches the artifact ids. Heartbeat every third of "
    "the lease while you work. If a tool answers lease_lost, stop: the work is someone else's now.")


# ---- structured results ------------------------------------------------------------------------------------------


class Loose(BaseModel):
    """The API's objects as they come (new fields included), with the fields a host most needs named."""

    model_config = ConfigDict(extra="allow")


class HandoffOut(Loose):
    id: str
    workflow_id: str
    status: str
    to_role: str | None = None
    to_state: str | None = None
    note: str = ""
    artifacts: list[str] = Field(default_factory=list)
    agent_id: str | None = None
    lease_expires_at: str | None = None


class WorkflowOut(Loose):
    id: str
    title: str
    state: str
    role: str | None = None
    version: int
    retry_count: int = 0


class EventOut(Loose):
    seq: int
    type: str
    from_state: str | None = None
    to_state: str
    note: str = ""
    artifacts: list[str] = Field(default_factory=list)


class ClaimOut(BaseModel):
    handoff: HandoffOut | None = Field(description="null when there is no work for your role")
    workflow: WorkflowOut | None = None


class ContextOut(Loose):
    workflow_id: str
    role: str | None = None
    playbook_version: str | None = None
    instructions: str
    task: str
    workflow: WorkflowOut
    handoff: HandoffOut | None = None
    handed_over: list[dict[str, Any]] = Field(default_factory=list)
    earlier_artifacts: list[dict[str, Any]] = Field(default_factory=list)
    allowed_transitions: list[dict[str, Any]] = Field(default_factory=list)


class ArtifactTextOut(BaseModel):
    artifact_id: str
    name: str
    content_type: str
    size_bytes: int
    text: str


class ArtifactWrittenOut(BaseModel):
    artifact_id: str
    name: str
    size_bytes: int
    sha256: str


class ChangeOut(BaseModel):
    workflow: WorkflowOut
    event: EventOut


class EventPageOut(BaseModel):
    events: list[EventOut]
    next_page_token: str | None = None


# ---- the server --------------------------------------------------------------------------------------------------


def build_server(api: QorchApi, agent_id: str) -> MCPServer:
    executor = Executor(api, agent_id)
    mcp = MCPServer("qorch", instructions=INSTRUCTIONS, version="1")

    def run(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """One contract tool through the executor (the same validation and API calls the runner makes); a refusal
        becomes a tool error carrying the problem's code."""
        outcome = executor.call(name, arguments, ALL_ARGUMENTS)
        if outcome.failure is not None:
            raise ToolError(json.dumps(outcome.failure.problem()))
        assert outcome.result is not None
        return outcome.result

    @mcp.tool(description=DESCRIPTIONS["claim_next"])
    def claim_next(wait_seconds: int | None = None, lease_seconds: int | None = None) -> ClaimOut:
        return ClaimOut.model_validate(run("claim_next", {"wait_seconds": wait_seconds,
                                                          "lease_seconds": lease_seconds}))

    @mcp.tool(description=DESCRIPTIONS["get_context"])
    def get_context(workflow_id: str) -> ContextOut:
        return ContextOut.model_validate(run("get_context", {"workflow_id": workflow_id}))

    @mcp.tool(description=DESCRIPTIONS["read_artifact"])
    def read_artifact(workflow_id: str, artifact_id: str) -> ArtifactTextOut:
        return ArtifactTextOut.model_validate(run("read_artifact", {"workflow_id": workflow_id,
                                                                    "artifact_id": artifact_id}))

    @mcp.tool(description=DESCRIPTIONS["write_artifact"])
    def write_artifact(workflow_id: str, name: str, content: str,
                       content_type: str | None = None) -> ArtifactWrittenOut:
        return ArtifactWrittenOut.model_validate(run("write_artifact", {
            "workflow_id": workflow_id, "name": name, "content": content, "content_type": content_type}))

    @mcp.tool(description=DESCRIPTIONS["transition"])
    def transition(workflow_id: str, to: State, note: str | None = None, reason: str | None = None,
                   artifacts: list[str] | None = None, expected_version: int | None = None) -> ChangeOut:
        return ChangeOut.model_validate(run("transition", {
            "workflow_id": workflow_id, "to": to, "note": note, "reason": reason, "artifacts": artifacts or [],
            "expected_version": expected_version}))

    @mcp.tool(description=DESCRIPTIONS["heartbeat"])
    def heartbeat(workflow_id: str, handoff_id: str) -> HandoffOut:
        return HandoffOut.model_validate(run("heartbeat", {"workflow_id": workflow_id, "handoff_id": handoff_id}))

    @mcp.tool(description=DESCRIPTIONS["release"])
    def release(workflow_id: str, handoff_id: str, note: str | None = None) -> HandoffOut:
        return HandoffOut.model_validate(run("release", {"workflow_id": workflow_id, "handoff_id": handoff_id,
                                                         "note": note}))

    @mcp.tool(description=DESCRIPTIONS["list_events"])
    def list_events(workflow_id: str, page_token: str | None = None, limit: int | None = None) -> EventPageOut:
        return EventPageOut.model_validate(run("list_events", {"workflow_id": workflow_id,
                                                               "page_token": page_token, "limit": limit}))

    # ---- resources --------------------------------------------------------------------------------------------

    def read(call: Any) -> Any:
        try:
            return call()
        except ApiError as exc:
            kind = ResourceNotFoundError if exc.status == 404 else ResourceError
            raise kind(json.dumps(exc.problem())) from None

    @mcp.resource("qorch://workflows/{workflow_id}", name="workflow", mime_type="application/json",
                  description="A workflow: state, role, version, retries, its open hand-off")
    def workflow_resource(workflow_id: str) -> str:
        return json.dumps(read(lambda: api.workflow(workflow_id)), indent=1)

    @mcp.resource("qorch://workflows/{workflow_id}/events", name="workflow-events", mime_type="application/json",
                  description="A workflow's audit log, oldest first (up to 1,000 events)")
    def events_resource(workflow_id: str) -> str:
        events: list[dict[str, Any]] = []
        token = None
        while len(events) < 1000:
            page = read(lambda t=token: api.events(workflow_id, page_token=t, limit=100))
            events += page["events"]
            token = page.get("next_page_token")
            if not token:
                break
        return json.dumps({"workflow_id": workflow_id, "events": events}, indent=1)

    @mcp.resource("qorch://workflows/{workflow_id}/artifacts/{artifact_id}", name="artifact",
                  mime_type="text/plain", description="An artifact's text (UTF-8 artifacts only)")
    def artifact_resource(workflow_id: str, artifact_id: str) -> str:
        outcome = executor.call("read_artifact", {"workflow_id": workflow_id, "artifact_id": artifact_id})
        if outcome.failure is not None:
            kind = ResourceNotFoundError if outcome.failure.code == "not_found" else ResourceError
            raise kind(json.dumps(outcome.failure.problem()))
        assert outcome.result is not None
        return outcome.result["text"]

    # ---- prompts: one per role, its playbook ----------------------------------------------------------------

    for role in AGENT_ROLES:
        mcp.prompt(name=role.lower(), title=f"qorch {role.replace('_', ' ').lower()} playbook",
                   description=f"The {role} playbook with a workflow's current task (qorch serves playbooks inside "
                               "a workflow's context). workflow_id: a workflow at this role's step; default: the "
                               "oldest one waiting for it.")(_playbook_prompt(api, role))
    return mcp


def _playbook_prompt(api: QorchApi, role: str) -> Any:
    def playbook(workflow_id: str | None = None) -> list[UserMessage]:
        try:
            if not workflow_id:
                found = api.workflows(role=role)
                if not found:
                    raise MCPError(INVALID_PARAMS, f"No workflow is at a {role} step now; qorch serves the {role} "
                                                   "playbook inside such a workflow's context. Name one with "
                                                   "workflow_id once there is one.")
                workflow_id = min(found, key=lambda w: w["updated_at"])["id"]
            context = api.context(workflow_id)
        except ApiError as exc:
            raise MCPError(INVALID_PARAMS, json.dumps(exc.problem())) from None
        if context.get("role") != role:
            raise MCPError(INVALID_PARAMS, f"{workflow_id} is at {context['workflow']['state']}, a "
                                           f"{context.get('role')} step, not a {role} one.")
        return [UserMessage(context["instructions"]),
                UserMessage(f"{context['task']}\n\n(workflow_id: {workflow_id})")]

    playbook.__name__ = f"{role.lower()}_playbook"
    return playbook


# ---- the command -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agents.mcp", description="qorch's MCP server (stdio by default)")
    p.add_argument("--http", action="store_true", help="serve streamable HTTP at /mcp instead of stdio")
    p.add_argument("--host", default=os.environ.get("QORCH_MCP_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8765")))
    p.add_argument("--allowed-host", action="append", default=[],
                   help="a Host header to accept besides localhost (repeatable; also QORCH_MCP_ALLOWED_HOSTS, "
                        "comma-separated), e.g. qorch-mcp-abc123-ew.a.run.app")
    p.add_argument("--stateless", action="store_true",
                   help="no MCP sessions kept between requests (several instances behind a load balancer)")
    return p.parse_args(argv)


def allowed_hosts(args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    extra = [h.strip() for h in env.get("QORCH_MCP_ALLOWED_HOSTS", "").split(",") if h.strip()]
    return LOCAL_HOSTS + [h for h in [*args.allowed_host, *extra] if h not in LOCAL_HOSTS]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = dict(os.environ)
    # stdout is the protocol channel over stdio: logs go to stderr, and never show the key.
    logging.basicConfig(level=env.get("QORCH_LOG_LEVEL", "WARNING"), stream=sys.stderr)
    for noisy in ("httpx2", "httpcore2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    key = env.get("QORCH_API_KEY", "")
    if not key:
        print("agents.mcp: QORCH_API_KEY is not set (an agent key, from the environment only)", file=sys.stderr)
        return 2
    agent_id = env.get("QORCH_AGENT_ID") or f"mcp@{socket.gethostname()}"
    server = build_server(QorchApi(env.get("QORCH_API_URL", "http://127.0.0.1:8080"), key), agent_id)
    if not args.http:
        server.run()
        return 0
    hosts = allowed_hosts(args, env)
    origins = [f"{scheme}://{h.replace(':*', '')}" for h in hosts for scheme in ("http", "https")]
    security = TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                         allowed_origins=[o + suffix for o in origins for suffix in ("", ":*")])
    server.run(transport="streamable-http", host=args.host, port=args.port, transport_security=security,
               stateless_http=args.stateless)
    return 0
