"""The workflow state machine as data.

One declarative table (`STATES`, `TRANSITIONS`) that the validator below, the `/v1/state-machine` endpoint,
the generated docs and the Mermaid diagram all read. Nothing else restates it. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    DISCOVERY = "DISCOVERY"
    PLANNING = "PLANNING"
    DESIGN = "DESIGN"
    IMPLEMENTATION = "IMPLEMENTATION"
    TESTING = "TESTING"
    VERIFICATION = "VERIFICATION"
    REVIEW = "REVIEW"
    DEPLOYMENT = "DEPLOYMENT"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


class Role(StrEnum):
    """Who acts. OWNER is the paying customer's key role; CUSTOMER is the workflow role an OWNER plays; VIEWER (a
    key or a person) reads everything of its account and changes nothing."""

    OWNER = "OWNER"
    Q_ASSISTANT = "Q_ASSISTANT"
    ARCHITECT = "ARCHITECT"
    DEVELOPER = "DEVELOPER"
    TESTER = "TESTER"
    VERIFIER = "VERIFIER"
    CUSTOMER = "CUSTOMER"
    DEVOPS = "DEVOPS"
    VIEWER = "VIEWER"


# Roles an agent key may hold: the AI roles. CUSTOMER is played by OWNER keys only.
AGENT_ROLES: frozenset[Role] = frozenset(
    {Role.Q_ASSISTANT, Role.ARCHITECT, Role.DEVELOPER, Role.TESTER, Role.VERIFIER, Role.DEVOPS}
)


class StateKind(StrEnum):
    ACTIVE = "active"
    FINAL = "final"
    TERMINAL = "terminal"  # no transition leaves it, but an owner may roll back out of it


class TransitionKind(StrEnum):
    FORWARD = "forward"
    REWORK = "rework"
    FAIL = "fail"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class StateSpec:
    state: State
    role: Role | None
    kind: StateKind
    description: str


@dataclass(frozen=True, slots=True)
class TransitionSpec:
    source: State
    target: State
    kind: TransitionKind
    counts_as_retry: bool = False
    owner_only: bool = False
    description: str = ""


S, K, T = State, StateKind, TransitionKind

STATES: dict[State, StateSpec] = {
    spec.state: spec
    for spec in (
        StateSpec(S.DISCOVERY, Role.Q_ASSISTANT, K.ACTIVE, "The Q Assistant learns what the customer wants."),
        StateSpec(S.PLANNING, Role.Q_ASSISTANT, K.ACTIVE, "The Q Assistant turns it into a plan."),
        StateSpec(S.DESIGN, Role.ARCHITECT, K.ACTIVE, "The architect designs the software."),
        StateSpec(S.IMPLEMENTATION, Role.DEVELOPER, K.ACTIVE, "The developer builds it."),
        StateSpec(S.TESTING, Role.TESTER, K.ACTIVE, "The tester tests it."),
        StateSpec(S.VERIFICATION, Role.VERIFIER, K.ACTIVE, "The verifier checks it against the plan."),
        StateSpec(S.REVIEW, Role.CUSTOMER, K.ACTIVE, "The paying customer approves or asks for changes."),
        StateSpec(S.DEPLOYMENT, Role.DEVOPS, K.ACTIVE, "DevOps ships it."),
        StateSpec(S.COMPLETED, None, K.FINAL, "Delivered."),
        StateSpec(S.CANCELLED, None, K.FINAL, "Stopped by the owner (or by cleanup when stale)."),
        StateSpec(S.FAILED, None, K.TERMINAL, "Given up; an owner may roll back to resume."),
    )
}

_FORWARD = [
    (S.DISCOVERY, S.PLANNING),
    (S.PLANNING, S.DESIGN),
    (S.DESIGN, S.IMPLEMENTATION),
    (S.IMPLEMENTATION, S.TESTING),
    (S.TESTING, S.VERIFICATION),
    (S.VERIFICATION, S.REVIEW),
    (S.REVIEW, S.DEPLOYMENT),
    (S.DEPLOYMENT, S.COMPLETED),
]
# (source, target, counts_as_retry, description)
_REWORK = [
    (S.PLANNING, S.DISCOVERY, False, "back to discovery"),
    (S.DESIGN, S.PLANNING, False, "back to planning"),
    (S.TESTING, S.IMPLEMENTATION, True, "tests failed"),
    (S.VERIFICATION, S.IMPLEMENTATION, True, "verification failed"),
    (S.REVIEW, S.IMPLEMENTATION, False, "changes requested"),
    (S.DEPLOYMENT, S.IMPLEMENTATION, True, "deployment failed"),
]
_FAILABLE = [S.PLANNING, S.DESIGN, S.IMPLEMENTATION, S.TESTING, S.VERIFICATION, S.DEPLOYMENT]

TRANSITIONS: tuple[TransitionSpec, ...] = (
    *(TransitionSpec(a, b, T.FORWARD, description="forward") for a, b in _FORWARD),
    *(TransitionSpec(a, b, T.REWORK, counts_as_retry=r, description=d) for a, b, r, d in _REWORK),
    *(TransitionSpec(a, S.FAILED, T.FAIL, description="give up") for a in _FAILABLE),
    *(
        TransitionSpec(spec.state, S.CANCELLED, T.CANCEL, owner_only=True, description="cancelled by the owner")
        for spec in STATES.values()
        if spec.kind is K.ACTIVE
    ),
)

_BY_PAIR: dict[tuple[State, State], TransitionSpec] = {(t.source, t.target): t for t in TRANSITIONS}


def role_of(state: State) -> Role | None:
    return STATES[state].role


def is_final(state: State) -> bool:
    return STATES[state].kind is StateKind.FINAL


def is_active(state: State) -> bool:
    return STATES[state].kind is StateKind.ACTIVE


def transitions_from(state: State) -> list[TransitionSpec]:
    return [t for t in TRANSITIONS if t.source is state]


def find_transition(source: State, target: State) -> TransitionSpec | None:
    return _BY_PAIR.get((source, target))


def may_act(roles: frozenset[Role], state: State, transition: TransitionSpec) -> bool:
    """Whether a key with `roles` may take `transition` out of `state`.

    OWNER may do everything. An agent acts only in a state whose role it holds, and never cancels; the
    CUSTOMER's state (REVIEW) belongs to the OWNER alone.
    """
    if Role.OWNER in roles:
        return True
    if transition.owner_only:
        return False
    role = role_of(state)
    return role is not None and role in roles and role in AGENT_ROLES


def allowed_transitions(
    state: State, retry_count: int, max_retries: int, roles: frozenset[Role]
) -> list[TransitionSpec]:
    """What a caller with `roles` could do next, with the retry limit applied."""
    return [
        t
        for t in transitions_from(state)
        if may_act(roles, state, t) and not (t.counts_as_retry and retry_count >= max_retries)
    ]


def mermaid() -> str:
    """A Mermaid stateDiagram-v2 of the table."""
    lines = ["stateDiagram-v2", f"    [*] --> {S.DISCOVERY}"]
    for t in TRANSITIONS:
        label = t.kind.value + (" (retry)" if t.counts_as_retry else "")
        lines.append(f"    {t.source} --> {t.target}: {label}")
    lines += [f"    {state} --> [*]" for state, spec in STATES.items() if spec.kind is K.FINAL]
    return "\n".join(lines) + "\n"


def describe() -> dict:
    """The whole table as JSON-ready data (served at /v1/state-machine, used by the docs generator)."""
    return {
        "initial_state": S.DISCOVERY.value,
        "states": [
            {"name": s.state.value, "role": s.role.value if s.role else None, "kind": s.kind.value,
             "final": s.kind is K.FINAL, "description": s.description}
            for s in STATES.values()
        ],
        "roles": [r.value for r in Role],
        "agent_roles": sorted(r.value for r in AGENT_ROLES),
        "transitions": [
            {"from": t.source.value, "to": t.target.value, "kind": t.kind.value,
             "counts_as_retry": t.counts_as_retry, "owner_only": t.owner_only, "description": t.description}
            for t in TRANSITIONS
        ],
        "mermaid": mermaid(),
    }
