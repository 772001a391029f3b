"""Role playbooks: what each role is for, what it must leave as artifacts, when to take each transition out of its
states, and the rules every agent follows. The text lives in `playbooks/<ROLE>.md` beside this module (Markdown with
a small front matter), reviewed like code; this module parses and checks it. Pure: the files are read by the runtime
layer (`shared.runtime.config`, when an instance starts) and handed in as text, so importing the domain reads nothing.

A playbook file:

    ---
    role: DEVELOPER
    title: Developer
    ---
    # Developer
    ## Purpose            (free text)
    ## Work product       one `### <STATE>` per state of the role: what to leave as artifacts there
    ## Exit criteria      one `### <FROM> → <TO>` per transition of the table out of the role's states
    ## Rules              (free text)

A library of playbooks is valid only if every agent role and CUSTOMER has one, and each covers exactly the states of
its role and exactly the transitions of the state table out of them: a transition added to the table without its
exit criteria fails the check (and so the instance, and the tests). A playbook's version is the SHA-256 of its file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.domain import state_machine as sm
from shared.domain.state_machine import Role, State, TransitionSpec

# The roles that have a playbook: every AI role, and the customer (a person, at REVIEW).
PLAYBOOK_ROLES: frozenset[Role] = frozenset(sm.AGENT_ROLES | {Role.CUSTOMER})
SECTIONS = ("Purpose", "Work product", "Exit criteria", "Rules")
_FRONT_KEYS = frozenset({"role", "title"})
_ARROW = re.compile(r"^\s*([A-Z_]+)\s*(?:→|->)\s*([A-Z_]+)\s*$")


class PlaybookError(ValueError):
    """A playbook file (or the set of them) is not valid: the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class Playbook:
    role: Role
    title: str
    version: str  # "sha256:<hex>" of the file's bytes
    body: str  # the Markdown after the front matter: the role's part of the system prompt
    purpose: str
    rules: str
    work_product: dict[State, str]
    exit_criteria: dict[tuple[State, State], str]

    def meaning(self, source: State, target: State) -> str:
        """The exit criteria of one transition, as flowing text (the file's line breaks within a paragraph go)."""
        return _unwrap(self.exit_criteria[(source, target)])


@dataclass(frozen=True, slots=True)
class Library:
    playbooks: dict[Role, Playbook]

    def for_role(self, role: Role) -> Playbook:
        return self.playbooks[role]

    def versions(self) -> dict[str, str]:
        return {role.value: p.version for role, p in sorted(self.playbooks.items())}


def _unwrap(text: str) -> str:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p if re.search(r"^\s*([-*]|\d+\.) ", p, re.M) else " ".join(p.split()) for p in paragraphs)


def version_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _front_matter(name: str, text: str) -> tuple[dict[str, str], str]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise PlaybookError(f"{name}: must start with a front matter block ('---' line)")
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    except StopIteration:
        raise PlaybookError(f"{name}: the front matter is not closed by a '---' line") from None
    front: dict[str, str] = {}
    for line in lines[1:end]:
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or key not in _FRONT_KEYS or key in front:
            raise PlaybookError(f"{name}: front matter line {line!r}: expected one each of "
                                f"{', '.join(sorted(_FRONT_KEYS))} as 'key: value'")
        front[key] = value.strip()
    if missing := sorted(_FRONT_KEYS - set(front)):
        raise PlaybookError(f"{name}: front matter lacks {', '.join(missing)}")
    return front, "\n".join(lines[end + 1:]).strip() + "\n"


def _sections(body: str, level: int) -> list[tuple[str, str]]:
    """(heading, text) for each heading of exactly `level` #s, ignoring fenced code blocks; text before the first
    heading is dropped (the title)."""
    marker = "#" * level + " "
    out: list[tuple[str, list[str]]] = []
    fenced = False
    for line in body.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith(marker):
            out.append((line[len(marker):].strip(), []))
        elif out:
            out[-1][1].append(line)
    return [(heading, "\n".join(text).strip()) for heading, text in out]


def parse(name: str, text: str) -> Playbook:
    """One playbook file (`name` is its file name, for messages) → a Playbook. Checks its own shape only; whether it
    covers its role's states and transitions is `check_coverage`'s job."""
    front, body = _front_matter(name, text)
    try:
        role = Role(front["role"])
    except ValueError:
        raise PlaybookError(f"{name}: role {front['role']!r} is not a role of the state machine") from None
    if role not in PLAYBOOK_ROLES:
        raise PlaybookError(f"{name}: {role} has no playbook (only {', '.join(sorted(PLAYBOOK_ROLES))} do)")
    if name.rsplit("/", 1)[-1] != f"{role.value}.md":
        raise PlaybookError(f"{name}: the playbook of {role} must be the file {role.value}.md")
    if not front["title"]:
        raise PlaybookError(f"{name}: the title is empty")
    sections = _sections(body, 2)
    if [h for h, _ in sections] != list(SECTIONS):
        raise PlaybookError(f"{name}: the sections must be exactly {', '.join(SECTIONS)} in that order; found "
                            f"{', '.join(h for h, _ in sections) or 'none'}")
    by_name = dict(sections)
    for heading in ("Purpose", "Rules"):
        if not by_name[heading]:
            raise PlaybookError(f"{name}: the {heading} section is empty")
    work_product: dict[State, str] = {}
    for heading, content in _sections(by_name["Work product"], 3):
        try:
            state = State(heading)
        except ValueError:
            raise PlaybookError(f"{name}: Work product: {heading!r} is not a state") from None
        if state in work_product or not content:
            raise PlaybookError(f"{name}: Work product: {state} is given twice or empty")
        work_product[state] = content
    exit_criteria: dict[tuple[State, State], str] = {}
    for heading, content in _sections(by_name["Exit criteria"], 3):
        found = _ARROW.match(heading)
        try:
            pair = (State(found.group(1)), State(found.group(2))) if found else None
        except ValueError:
            pair = None
        if pair is None:
            raise PlaybookError(f"{name}: Exit criteria: {heading!r} is not 'STATE → STATE'")
        if pair in exit_criteria or not content:
            raise PlaybookError(f"{name}: Exit criteria: {pair[0]} → {pair[1]} is given twice or empty")
        exit_criteria[pair] = content
    return Playbook(role=role, title=front["title"], version=version_of(text), body=body,
                    purpose=by_name["Purpose"], rules=by_name["Rules"], work_product=work_product,
                    exit_criteria=exit_criteria)


def check_coverage(playbook: Playbook, *, states: Iterable[sm.StateSpec] = (),
                   transitions: Iterable[TransitionSpec] = ()) -> None:
    """The playbook covers exactly its role's states and the transitions out of them (defaults: the state table)."""
    state_specs = list(states) or list(sm.STATES.values())
    table = list(transitions) or list(sm.TRANSITIONS)
    role_of = {s.state: s.role for s in state_specs}
    own_states = {s.state for s in state_specs if s.role is playbook.role}
    own_pairs = {(t.source, t.target) for t in table if role_of.get(t.source) is playbook.role}
    problems = []
    if missing := own_states - set(playbook.work_product):
        problems.append(f"no work product for {', '.join(sorted(missing))}")
    if extra := set(playbook.work_product) - own_states:
        problems.append(f"a work product for {', '.join(sorted(extra))}, not a state of {playbook.role}")
    for a, b in sorted(own_pairs - set(playbook.exit_criteria)):
        problems.append(f"the state table has {a} → {b}, which the playbook does not describe")
    for a, b in sorted(set(playbook.exit_criteria) - own_pairs):
        problems.append(f"it describes {a} → {b}, which is not a transition of the table out of {playbook.role}'s "
                        "states")
    if problems:
        raise PlaybookError(f"{playbook.role.value}.md: " + "; ".join(problems))


def load_library(sources: Mapping[str, str], *, states: Iterable[sm.StateSpec] = (),
                 transitions: Iterable[TransitionSpec] = ()) -> Library:
    """Parse and check every playbook file (`sources`: file name → text). Raises PlaybookError on the first
    problem: a role without a playbook, two playbooks for a role, or a playbook that does not cover its role."""
    state_specs, table = list(states), list(transitions)
    playbooks: dict[Role, Playbook] = {}
    for name in sorted(sources):
        playbook = parse(name, sources[name])
        if playbook.role in playbooks:
            raise PlaybookError(f"{name}: a second playbook for {playbook.role}")
        check_coverage(playbook, states=state_specs, transitions=table)
        playbooks[playbook.role] = playbook
    if missing := sorted(PLAYBOOK_ROLES - set(playbooks)):
        raise PlaybookError(f"no playbook for {', '.join(missing)}")
    return Library(playbooks)
