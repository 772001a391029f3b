"""An agent's context for the current step of a workflow: who it acts as, its instructions (the role's playbook plus
this workflow), the task in words, what was handed to it, what earlier steps left, recent history, what it may do
next and the tools to do it with. Pure: the service reads the documents and signs the download URLs; this module
decides what goes in and renders it. The same documents always give the same bytes (nothing here reads a clock,
iterates a set or depends on dict order it did not fix), which the snapshot tests pin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from shared.domain import agent_tools
from shared.domain import state_machine as sm
from shared.domain import workflow as workflow_domain
from shared.domain.agent_models import (
    AgentContext,
    AgentTool,
    ArtifactRef,
    ContextTransition,
    History,
    HistoryEvent,
)
from shared.domain.models import (
    Artifact,
    ArtifactStatus,
    Event,
    Handoff,
    HandoffStatus,
    Workflow,
)
from shared.domain.playbooks import Playbook
from shared.domain.state_machine import Role, State

Signer = Callable[[Artifact], tuple[str, datetime]]


# ---- what goes in ------------------------------------------------------------------------------------------------


def select_artifacts(workflow: Workflow, handoff: Handoff | None,
                     known: Mapping[str, Artifact]) -> tuple[list[Artifact], list[Artifact]]:
    """(handed over, earlier). Handed over: the open hand-off's artifacts, in its order. Earlier: the newest AVAILABLE
    artifact of each name that an earlier step left (created before the open hand-off, or carried on by a transition
    within the role), by name, leaving out any name whose newest version is handed over."""
    handed = [known[a] for a in (handoff.artifacts if handoff else [])
              if a in known and known[a].status is ArtifactStatus.AVAILABLE]
    handed_ids = {a.id for a in handed}
    carried = set(workflow.outgoing_artifacts)
    newest: dict[str, Artifact] = {}
    for artifact in sorted(known.values(), key=lambda a: (a.created_at, a.id), reverse=True):
        if artifact.status is not ArtifactStatus.AVAILABLE:
            continue
        if handoff is not None and artifact.created_at >= handoff.created_at and artifact.id not in carried:
            continue  # made during this step: not an earlier one
        newest.setdefault(artifact.name, artifact)
    earlier = sorted((a for a in newest.values() if a.id not in handed_ids), key=lambda a: (a.name, a.id))
    return handed, earlier


def _ref(artifact: Artifact, sign: Signer) -> ArtifactRef:
    url, expires_at = sign(artifact)
    return ArtifactRef(id=artifact.id, name=artifact.name, content_type=artifact.content_type,
                       size_bytes=artifact.size_bytes, sha256=artifact.sha256, created_by=artifact.created_by,
                       download_url=url, download_expires_at=expires_at)


# ---- rendering ---------------------------------------------------------------------------------------------------


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quoted(text: str) -> list[str]:
    """Text written by someone else (the customer, another agent), quoted so it reads as data, not as rules."""
    return [f"> {line}".rstrip() for line in text.strip().splitlines()] or [">"]


def _artifact_line(artifact: Artifact) -> str:
    return f"- {artifact.name} ({artifact.id}, {artifact.content_type}, {artifact.size_bytes} bytes)"


def _usd(amount: float) -> str:
    return f"{amount:.2f} USD" if amount >= 0.01 or amount == 0 else f"{amount:.6f} USD"


def _budget_line(workflow: Workflow) -> str:
    budget = workflow_domain.budget(workflow)
    if budget.max_cost_usd is None:
        return "no budget set"
    if budget.exhausted:
        return (f"none: {_usd(budget.spent_usd)} of {_usd(budget.max_cost_usd)} spent. Your transitions are refused "
                "(budget_exhausted) until the owner raises the budget: release the hand-off with a note")
    left = workflow_domain.budget_left_usd(workflow) or 0.0
    return (f"{_usd(left)} of {_usd(budget.max_cost_usd)} ({_usd(budget.spent_usd)} spent); once it is spent, your "
            "transitions are refused (budget_exhausted)")


def instructions(playbook: Playbook | None, workflow: Workflow) -> str:
    lines = [playbook.body.rstrip(), ""] if playbook else [
        "# qorch workflow", "",
        f"No role works on this workflow any more: it is {workflow.state}. "
        + ("Only its owner can act: roll it back to an earlier state to resume it."
           if workflow.state is State.FAILED else "Nothing more can be done on it."), ""]
    labels = ", ".join(f"{k}={v}" for k, v in sorted(workflow.labels.items())) or "none"
    role = f"role {workflow.role}" if workflow.role else "no role"
    lines += [
        "## This workflow", "",
        f"- Id: {workflow.id}",
        f"- Title: {workflow.title}",
        f"- Labels: {labels}",
        f"- State: {workflow.state} ({role}), version {workflow.version}",
        f"- Retries left: {max(workflow.max_retries - workflow.retry_count, 0)} of {workflow.max_retries} (a rework "
        "that counts as a retry uses one; with none left only FAILED remains)",
        f"- Budget left: {_budget_line(workflow)}",
        "- Description:",
        *_quoted(workflow.description or "(none)"),
    ]
    return "\n".join(lines) + "\n"


def task(playbook: Playbook | None, workflow: Workflow, handoff: Handoff | None, handed: list[Artifact],
         earlier: list[Artifact], allowed: list[sm.TransitionSpec]) -> str:
    if playbook is None:
        return (f"Workflow {workflow.id} ({workflow.title}) is {workflow.state}; there is nothing to do on it"
                + (" unless its owner rolls it back." if workflow.state is State.FAILED else ".") + "\n")
    lines = [f"Workflow {workflow.id} ({workflow.title}) is in {workflow.state}: it is the {playbook.title}'s "
             f"({playbook.role}) turn.", ""]
    if handoff is None:
        lines += ["There is no open hand-off.", ""]
    else:
        source = (f"from the {handoff.from_role} ({handoff.from_state} → {handoff.to_state})" if handoff.from_role
                  else "opened when the workflow was created")
        lines.append(f"Hand-off {handoff.id}, {source}, is {handoff.status}.")
        if handoff.status is HandoffStatus.CLAIMED and handoff.lease_expires_at and handoff.lease_seconds:
            lines.append(f"Agent {handoff.agent_id} of key {handoff.claimed_by} holds it until "
                         f"{_when(handoff.lease_expires_at)}: heartbeat every {handoff.lease_seconds // 3} s (a third "
                         f"of its {handoff.lease_seconds} s lease).")
        elif handoff.status is HandoffStatus.PENDING:
            lines.append("Claim it before you start, and heartbeat every third of your lease.")
        lines += ["Its note:", *_quoted(handoff.note or "(none)"), ""]
        if handoff.release_note:
            lines += ["An agent gave it back earlier, saying:", *_quoted(handoff.release_note), ""]
    lines += ["Handed over to you:", *([_artifact_line(a) for a in handed] or ["- nothing"]), ""]
    lines += ["Earlier work products you can read:", *([_artifact_line(a) for a in earlier] or ["- none"]), ""]
    lines += [f"What to leave in {workflow.state}:", playbook.work_product[workflow.state], ""]
    if allowed:
        lines.append("Then finish with exactly one transition (the instructions say when to take which):")
        lines += [f"- to {t.target} ({t.kind}{', counts as a retry' if t.counts_as_retry else ''})" for t in allowed]
    else:
        lines.append("You may take no transition now.")
    return "\n".join(lines) + "\n"


def history_event(event: Event, known: Mapping[str, Artifact]) -> HistoryEvent:
    return HistoryEvent(**event.model_dump(), artifact_names=[known[a].name if a in known else None
                                                              for a in event.artifacts])


def build(*, workflow: Workflow, roles: frozenset[Role], playbook: Playbook | None, handoff: Handoff | None,
          artifacts: Mapping[str, Artifact], events: list[Event], next_page_token: str | None,
          sign: Signer) -> AgentContext:
    """The context of `workflow` for a caller with `roles` (already allowed to see it). `artifacts`: the workflow's
    artifacts known to the caller (its newest ones and the handed-over ones), by id; `events`: newest first; `sign`
    gives an artifact's download URL and its expiry."""
    handed, earlier = select_artifacts(workflow, handoff, artifacts)
    allowed = sm.allowed_transitions(workflow.state, workflow.retry_count, workflow.max_retries, roles)
    return AgentContext(
        workflow_id=workflow.id,
        role=workflow.role,
        playbook_version=playbook.version if playbook else None,
        instructions=instructions(playbook, workflow),
        task=task(playbook, workflow, handoff, handed, earlier, allowed),
        workflow=workflow_domain.view(workflow, roles),
        handoff=handoff,
        handed_over=[_ref(a, sign) for a in handed],
        earlier_artifacts=[_ref(a, sign) for a in earlier],
        history=History(events=[history_event(e, artifacts) for e in events], next_page_token=next_page_token),
        allowed_transitions=[
            ContextTransition(to=t.target, kind=t.kind.value, counts_as_retry=t.counts_as_retry,
                              meaning=playbook.meaning(t.source, t.target) if playbook else t.description)
            for t in allowed],
        tools=[AgentTool(**tool) for tool in agent_tools.definitions("neutral")],
    )
