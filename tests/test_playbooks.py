"""Role playbooks: the shipped files parse and cover every agent role (and the customer), every state of each role and
every transition of the state table out of those states; a transition added to the table without exit criteria, or
criteria for a transition the table does not have, fail the check; the version is the file's SHA-256; the files ship
with the functions; and importing the domain reads no file."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.domain import playbooks as pb
from shared.domain import state_machine as sm
from shared.domain.state_machine import Role, State, TransitionKind, TransitionSpec
from shared.runtime import config as config_module
from shared.runtime.config import ConfigError, config, load

ROOT = Path(__file__).resolve().parent.parent


def sources() -> dict[str, str]:
    return config_module.read_playbooks()


def test_the_shipped_playbooks_cover_every_role_state_and_transition():
    library = pb.load_library(sources())
    assert set(library.playbooks) == sm.AGENT_ROLES | {Role.CUSTOMER}
    for role, playbook in library.playbooks.items():
        own = [s.state for s in sm.STATES.values() if s.role is role]
        assert own and set(playbook.work_product) == set(own)
        for state in own:  # every transition out of the role's states has its meaning
            for t in sm.transitions_from(state):
                assert playbook.meaning(t.source, t.target).strip()
        assert playbook.purpose and playbook.rules and playbook.title


def test_every_transition_of_the_table_is_described_by_exactly_one_playbook():
    library = pb.load_library(sources())
    described = [pair for p in library.playbooks.values() for pair in p.exit_criteria]
    out_of_role_states = [(t.source, t.target) for t in sm.TRANSITIONS if sm.role_of(t.source) is not None]
    assert sorted(described) == sorted(out_of_role_states)
    assert len(described) == len(set(described))


def test_a_transition_added_to_the_table_without_exit_criteria_fails_the_check():
    new = TransitionSpec(State.IMPLEMENTATION, State.DEPLOYMENT, TransitionKind.FORWARD)
    with pytest.raises(pb.PlaybookError, match=r"DEVELOPER\.md: the state table has IMPLEMENTATION → DEPLOYMENT"):
        pb.load_library(sources(), transitions=(*sm.TRANSITIONS, new))


def test_exit_criteria_for_a_transition_the_table_lacks_fail_the_check():
    table = tuple(t for t in sm.TRANSITIONS if (t.source, t.target) != (State.PLANNING, State.DISCOVERY))
    with pytest.raises(pb.PlaybookError, match=r"Q_ASSISTANT\.md: it describes PLANNING → DISCOVERY, which is not"):
        pb.load_library(sources(), transitions=table)


def test_a_playbook_missing_a_transition_or_a_state_fails_the_check():
    text = sources()["TESTER.md"]
    cut = text.replace(text[text.index("### TESTING → FAILED"):text.index("### TESTING → CANCELLED")], "")
    with pytest.raises(pb.PlaybookError, match="TESTING → FAILED, which the playbook does not describe"):
        pb.load_library({**sources(), "TESTER.md": cut})
    no_state = text.replace("### TESTING\n", "### VERIFICATION\n", 1)
    with pytest.raises(pb.PlaybookError, match="no work product for TESTING"):
        pb.load_library({**sources(), "TESTER.md": no_state})


def test_a_missing_role_or_a_second_playbook_for_a_role_fails():
    without = {k: v for k, v in sources().items() if k != "DEVOPS.md"}
    with pytest.raises(pb.PlaybookError, match="no playbook for DEVOPS"):
        pb.load_library(without)
    with pytest.raises(pb.PlaybookError, match=r"must be the file TESTER\.md"):
        pb.load_library({**sources(), "TESTER2.md": sources()["TESTER.md"]})


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.replace("---\n", "", 1), "must start with a front matter block"),
    (lambda t: t.replace("title: Tester\n", ""), "front matter lacks title"),
    (lambda t: t.replace("role: TESTER", "role: OWNER"), "OWNER has no playbook"),
    (lambda t: t.replace("role: TESTER", "role: JANITOR"), "is not a role"),
    (lambda t: t.replace("role: TESTER", "role: TESTER\ncolour: blue"), "front matter line"),
    (lambda t: t.replace("## Rules", "## Habits"), "sections must be exactly"),
    (lambda t: t.replace("### TESTING → VERIFICATION", "### TESTING to VERIFICATION"), "is not 'STATE → STATE'"),
    (lambda t: t.replace("### TESTING → VERIFICATION", "### TESTING → NOWHERE"), "is not 'STATE → STATE'"),
    (lambda t: t.replace("### TESTING → VERIFICATION", "### TESTING → IMPLEMENTATION"), "given twice"),
    (lambda t: t.replace("### TESTING\n", "### LIMBO\n"), "'LIMBO' is not a state"),
])
def test_malformed_playbooks_are_refused_with_the_reason(change, message):
    text = sources()["TESTER.md"]
    assert change(text) != text
    with pytest.raises(pb.PlaybookError, match=message):
        pb.parse("TESTER.md", change(text))


def test_headings_inside_a_code_block_are_text():
    text = sources()["ARCHITECT.md"].replace(
        "## Exit criteria", "```\n## not a section\n### DESIGN → COMPLETED\n```\n\n## Exit criteria", 1)
    playbook = pb.parse("ARCHITECT.md", text)
    assert "## not a section" in playbook.work_product[State.DESIGN]


def test_the_version_is_the_sha256_of_the_file():
    library = pb.load_library(sources())
    for role, playbook in library.playbooks.items():
        data = (config_module.PLAYBOOKS_DIR / f"{role.value}.md").read_bytes()
        assert playbook.version == "sha256:" + hashlib.sha256(data).hexdigest()
    edited = pb.parse("TESTER.md", sources()["TESTER.md"] + "\nOne more line.\n")
    assert edited.version != library.for_role(Role.TESTER).version


def test_the_instance_loads_them_at_start_with_its_configuration():
    assert config().playbooks.versions() == pb.load_library(sources()).versions()
    assert config().playbooks is config().playbooks


def test_a_broken_playbook_or_price_table_stops_the_instance_at_start(tmp_path):
    """Like a bad variable: `load()` (what main.py and make run call first) refuses, naming the file and why."""
    books = tmp_path / "playbooks"
    books.mkdir()
    for name, text in sources().items():
        (books / name).write_text(text.replace("### TESTING → FAILED", "### TESTING → NOWHERE"))
    with pytest.raises(ConfigError) as refused:
        load(playbooks_dir=books)
    assert "qorch cannot start: the playbooks in" in str(refused.value)
    assert "TESTER.md: Exit criteria: 'TESTING → NOWHERE' is not 'STATE → STATE'" in str(refused.value)
    (books / "TESTER.md").unlink()
    with pytest.raises(ConfigError, match="no playbook for TESTER"):
        load(playbooks_dir=books)
    prices = tmp_path / "prices.json"
    prices.write_text(config_module.PRICES_FILE.read_text().replace('"output": 20', '"output": -20', 1))
    with pytest.raises(ConfigError, match=r"(?s)the price table .*prices.json is refused: .*output.*greater than"):
        load(prices_file=prices)
    assert load().playbooks.versions() == config().playbooks.versions()  # the shipped files load


def test_the_playbooks_and_the_price_table_ship_with_the_functions():
    """`gcloud functions deploy --source=.` uploads the repository minus .gcloudignore: none of the data files the
    functions read may be left out (and the check does see what is left out: the README is)."""
    files = (*config_module.PLAYBOOKS_DIR.glob("*.md"), config_module.PRICES_FILE, config_module.PLANS_FILE)
    data = sorted(str(p.relative_to(ROOT)) for p in files)
    done = subprocess.run(["git", "ls-files", "--cached", "--others", "--ignored", "--exclude-from=.gcloudignore",
                           "--", *data, "README.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["README.md"]


# The domain modules must read no file when imported: the configuration reads the files, when an instance starts.
NO_IO = r"""
import builtins, importlib, io, json, pathlib, sys
import pydantic, pydantic.json_schema  # pydantic reads its plugins' metadata on first use: not the product's I/O
pydantic.create_model("Warm", x=(int, ...)), pydantic.RootModel[int]
def refuse(*a, **k):
    raise AssertionError("file I/O at import")
builtins.open = io.open = refuse
for name in ("read_bytes", "read_text", "open"):
    setattr(pathlib.Path, name, refuse)
out = {}
for module in sys.argv[1:]:
    try:
        if ":" in module:
            mod, call = module.split(":")
            getattr(importlib.import_module(mod), call)()
        else:
            importlib.import_module(module)
        out[module] = "ok"
    except AssertionError as exc:
        out[module] = str(exc)
print(json.dumps(out))
"""


def test_importing_the_domain_reads_no_file():
    modules = ["shared.domain.playbooks", "shared.domain.pricing", "shared.domain.agent_tools",
               "shared.domain.context", "shared.runtime.config", "shared.runtime.config:load_prices"]
    done = subprocess.run([sys.executable, "-c", NO_IO, *modules], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # the probe sees file reads: calling the runtime reader under it is refused
    assert result.pop("shared.runtime.config:load_prices") == "file I/O at import"
    assert result == dict.fromkeys(modules[:-1], "ok")
