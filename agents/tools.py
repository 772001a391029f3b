"""The agent tools of the contract (docs/agents.md), executed against the /v1 API.

A model sees only the arguments below; the executor adds what the model must not choose: the `agent_id` that holds
the claim, and the `usage` of the model calls so far (the runner's ledger). The argument models are also the MCP
server's tool signatures. A refused call becomes a `ToolFailure` carrying the problem's `code`, so a model can react;
`lease_lost` means: stop working on this hand-off.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.api import ApiError, QorchApi

log = logging.getLogger("qorch.agents.tools")

# The states of qorch's state machine (GET /v1/state-machine); a test checks this list against the server's table.
State = Literal["DISCOVERY", "PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING", "VERIFICATION", "REVIEW",
                "DEPLOYMENT", "COMPLETED", "CANCELLED", "FAILED"]
AGENT_ROLES = ("Q_ASSISTANT", "ARCHITECT", "DEVELOPER", "TESTER", "VERIFIER", "DEVOPS")

MAX_TEXT_BYTES = 1_000_000  # read_artifact gives a model at most this much text


class ToolArgs(BaseModel):
    """Models make mistakes: unknown arguments are refused, and optional ones may be left out (null)."""

    model_config = ConfigDict(extra="forbid")


class GetContextArgs(ToolArgs):
    workflow_id: str


class ReadArtifactArgs(ToolArgs):
    workflow_id: str
    artifact_id: str


class WriteArtifactArgs(ToolArgs):
    workflow_id: str
    name: str = Field(description="A file name, e.g. design.md")
    content: str = Field(description="The whole text of the artifact")
    content_type: str | None = Field(default=None, description="Default: text/markdown for .md, else text/plain")


class TransitionArgs(ToolArgs):
    workflow_id: str
    to: State
    note: str | None = Field(default=None, description="What the next role needs to know")
    reason: str | None = None
    artifacts: list[str] = Field(default_factory=list, description="Artifact ids to hand over")
    expected_version: int | None = None


class HeartbeatArgs(ToolArgs):
    workflow_id: str
    handoff_id: str


class ReleaseArgs(ToolArgs):
    workflow_id: str
    handoff_id: str
    note: str | None = None


class ListEventsArgs(ToolArgs):
    workflow_id: str
    page_token: str | None = None
    limit: int | None = Field(default=None, ge=1, le=100)


class ClaimNextArgs(ToolArgs):
    wait_seconds: int | None = Field(default=None, ge=0, le=20)
    lease_seconds: int | None = Field(default=None, ge=30, le=3600)


ARGUMENTS: dict[str, type[ToolArgs]] = {
    "get_context": GetContextArgs,
    "read_artifact": ReadArtifactArgs,
    "write_artifact": WriteArtifactArgs,
    "transition": TransitionArgs,
    "heartbeat": HeartbeatArgs,
    "release": ReleaseArgs,
    "list_events": ListEventsArgs,
}
ALL_ARGUMENTS: dict[str, type[ToolArgs]] = {**ARGUMENTS, "claim_next": ClaimNextArgs}  # claim_next: MCP only

DESCRIPTIONS: dict[str, str] = {
    "get_context": "Everything for the current step of a workflow: your instructions, the task, the open hand-off, "
                   "the artifacts handed over and from earlier steps, recent events, and the allowed transitions.",
    "read_artifact": "Read an artifact's text (UTF-8 text artifacts only).",
    "write_artifact": "Store a work product as an artifact (declared, uploaded and completed in one call). Returns "
                      "its id, to attach to your transition.",
    "transition": "Finish your step: move the workflow to the next state with a note and the artifacts to hand "
                  "over. Exactly one per step.",
    "heartbeat": "Extend your lease on the hand-off you hold (every third of the lease while you work).",
    "release": "Give the hand-off back to the queue unfinished, with a note saying why.",
    "list_events": "The workflow's audit log, oldest first, a page at a time.",
    "claim_next": "Claim the next hand-off for your role (waits up to wait_seconds for one). Returns the hand-off "
                  "and its workflow, or handoff null when there is no work.",
}


def content_type_for(name: str, given: str | None) -> str:
    if given:
        return given
    return "text/markdown" if name.lower().endswith(".md") else "text/plain"


@dataclass
class ToolFailure(Exception):
    """A tool call that did not do what was asked. `invalid_arguments`: the model's arguments were malformed."""

    code: str
    title: str
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)
    invalid_arguments: bool = False

    def __str__(self) -> str:
        return json.dumps(self.problem())

    def problem(self) -> dict[str, Any]:
        return {"code": self.code, "title": self.title, "detail": self.detail, **self.extra}

    @classmethod
    def from_api(cls, exc: ApiError) -> ToolFailure:
        problem = exc.problem()
        extra = {k: v for k, v in problem.items() if k not in ("code", "title", "detail")}
        return cls(exc.code, exc.title, exc.detail, extra)


class UsageLedger:
    """The usage of the model calls of one step that qorch has not recorded yet (thread-safe: the heartbeat timer
    may flush it while the step runs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self.recorded: list[dict[str, Any]] = []

    def add(self, entry: dict[str, Any] | None) -> None:
        if entry:
            with self._lock:
                self._pending.append(entry)

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._pending)

    def mark_recorded(self, entries: list[dict[str, Any]]) -> None:
        with self._lock:
            for entry in entries:
                self._pending.remove(entry)
                self.recorded.append(entry)


@dataclass
class Outcome:
    """One executed call: `result` when it worked, else `failure`."""

    name: str
    result: dict[str, Any] | None = None
    failure: ToolFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def text(self) -> str:
        """What goes back to the model."""
        if self.failure is not None:
            return json.dumps({"error": self.failure.problem()})
        return json.dumps(self.result)


class Executor:
    """Runs the contract's tools for one agent id. `ledger`: the usage a transition carries (the runner's).
    `workflow_id` / `handoff_id`: when set (the runner's one held hand-off), calls about any other are refused, so
    a model that invents an id cannot act on work this runner does not hold."""

    def __init__(self, api: QorchApi, agent_id: str, ledger: UsageLedger | None = None, *,
                 workflow_id: str | None = None, handoff_id: str | None = None) -> None:
        self.api = api
        self.agent_id = agent_id
        self.ledger = ledger
        self.scope = {"workflow_id": workflow_id, "handoff_id": handoff_id}

    # ---- dispatch for models ---------------------------------------------------------------------------------

    def call(self, name: str, arguments: dict[str, Any] | str | None,
             tools: dict[str, type[ToolArgs]] = ARGUMENTS) -> Outcome:
        """Validate and run one call from a model; never raises for the model's or the API's mistakes. `tools`:
        the tools offered (the runner's model gets no claim_next: the runner claims)."""
        try:
            args = parse_arguments(name, arguments, tools)
            for field_name, held in self.scope.items():
                given = getattr(args, field_name, None)
                if held is not None and given is not None and given != held:
                    raise ToolFailure("not_your_work", f"Not the {field_name} you are working on",
                                      f"You hold {field_name} {held}; {given} is not yours.", invalid_arguments=True)
            return Outcome(name, result=getattr(self, name)(args))
        except ToolFailure as failure:
            return Outcome(name, failure=failure)
        except ApiError as exc:
            return Outcome(name, failure=ToolFailure.from_api(exc))

    # ---- the tools ---------------------------------------------------------------------------------------------

    def get_context(self, args: GetContextArgs) -> dict[str, Any]:
        return self.api.context(args.workflow_id)

    def read_artifact(self, args: ReadArtifactArgs) -> dict[str, Any]:
        artifact, data = self.api.download(args.workflow_id, args.artifact_id)
        if len(data) > MAX_TEXT_BYTES:
            raise ToolFailure("not_text", "The artifact is too large to read as text",
                              f"{artifact['name']} has {len(data)} bytes; at most {MAX_TEXT_BYTES} are given.")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolFailure("not_text", "The artifact is not UTF-8 text",
                              f"{artifact['name']} ({artifact['content_type']}) is binary.") from None
        return {"artifact_id": artifact["id"], "name": artifact["name"], "content_type": artifact["content_type"],
                "size_bytes": artifact["size_bytes"], "text": text}

    def write_artifact(self, args: WriteArtifactArgs) -> dict[str, Any]:
        data = args.content.encode("utf-8")
        artifact = self.api.upload(args.workflow_id, args.name, data, content_type_for(args.name, args.content_type))
        return {"artifact_id": artifact["id"], "name": artifact["name"], "size_bytes": artifact["size_bytes"],
                "sha256": artifact["sha256"]}

    def transition(self, args: TransitionArgs) -> dict[str, Any]:
        body: dict[str, Any] = {"to": args.to, "agent_id": self.agent_id, "artifacts": args.artifacts}
        for name in ("note", "reason", "expected_version"):
            if getattr(args, name) is not None:
                body[name] = getattr(args, name)
        usage = self.ledger.pending() if self.ledger else []
        if usage:
            body["usage"] = usage
        answer = self.api.transition(args.workflow_id, body)
        if self.ledger and usage:  # recorded (or, by a qorch that records none, dropped: not offered twice)
            self.ledger.mark_recorded(usage)
        return answer

    def heartbeat(self, args: HeartbeatArgs) -> dict[str, Any]:
        return self.api.heartbeat(args.workflow_id, args.handoff_id, self.agent_id)

    def release(self, args: ReleaseArgs) -> dict[str, Any]:
        self.flush_usage(args.workflow_id, args.handoff_id)
        return self.api.release(args.workflow_id, args.handoff_id, self.agent_id, args.note)

    def list_events(self, args: ListEventsArgs) -> dict[str, Any]:
        return self.api.events(args.workflow_id, page_token=args.page_token, limit=args.limit)

    def claim_next(self, args: ClaimNextArgs) -> dict[str, Any]:
        claimed = self.api.claim(self.agent_id, lease_seconds=args.lease_seconds, wait_seconds=args.wait_seconds)
        return claimed if claimed is not None else {"handoff": None, "workflow": None}

    # ---- for the runner ----------------------------------------------------------------------------------------

    def flush_usage(self, workflow_id: str, handoff_id: str) -> None:
        """Before giving work up: a heartbeat carries the step's unrecorded usage, which qorch keeps on the hand-off
        and folds into its next event, so what the model calls cost is never lost with the work."""
        usage = self.ledger.pending() if self.ledger else []
        if not usage:
            return
        try:
            self.api.heartbeat(workflow_id, handoff_id, self.agent_id, usage=usage)
        except ApiError as exc:
            log.warning("usage of %d model calls not recorded: %s", len(usage), exc.code)
            return
        assert self.ledger is not None
        self.ledger.mark_recorded(usage)


def parse_arguments(name: str, arguments: dict[str, Any] | str | None,
                    tools: dict[str, type[ToolArgs]] = ARGUMENTS) -> ToolArgs:
    """A model's arguments (a JSON string from OpenAI, an object from Anthropic) as the tool's model, or a
    ToolFailure with invalid_arguments set that tells the model what to fix."""
    model = tools.get(name)
    if model is None:
        raise ToolFailure("unknown_tool", "No such tool", f"There is no tool {name!r}; use one of "
                          f"{', '.join(tools)}.", invalid_arguments=True)
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise ToolFailure("invalid_arguments", "The arguments are not valid JSON",
                              f"{exc.msg} at position {exc.pos}; send one JSON object.",
                              invalid_arguments=True) from None
    if not isinstance(arguments, dict):
        raise ToolFailure("invalid_arguments", "The arguments must be a JSON object",
                          f"Got {type(arguments).__name__}.", invalid_arguments=True)
    try:
        return model.model_validate(arguments)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "(arguments)", "message": e["msg"]}
                  for e in exc.errors()]
        raise ToolFailure("invalid_arguments", f"Invalid arguments for {name}",
                          "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                          {"errors": errors}, invalid_arguments=True) from None
