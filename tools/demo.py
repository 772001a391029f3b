"""`make demo`: a whole build by an AI team on qorch, in under a minute, with no API key and no network.

1. Uses the stack `make run` serves (found through .qorch/stack.json), or starts one the way `make run` does.
2. In a demo account, creates a workflow and starts one scripted runner per agent role (`python -m agents.runner
   --provider scripted`, each with its own agent key, as real runners would run).
3. Approves REVIEW as the owner (the customer's step).
4. Shows a live timeline: state, role, agent, note, artifact names, cost so far, and a progress bar from DISCOVERY
   to COMPLETED.

It ends with the workflow COMPLETED, one retry (the first test report fails), every artifact downloaded and checked
against its SHA-256, and the total cost; the exit status says whether all of that held. The runners' own logs go to
.qorch/demo-logs/.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STACK_FILE = ROOT / ".qorch" / "stack.json"
LOG_DIR = ROOT / ".qorch" / "demo-logs"
DEMO_ACCOUNT = "acct_demo"
PATH = ["DISCOVERY", "PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING", "VERIFICATION", "REVIEW", "DEPLOYMENT",
        "COMPLETED"]
AGENTS = {"Q_ASSISTANT": "q-1", "ARCHITECT": "architect-1", "DEVELOPER": "dev-1", "TESTER": "tester-1",
          "VERIFIER": "verifier-1", "DEVOPS": "devops-1"}
CUSTOMER_AGENT = "customer-1"


# ---- the stack -----------------------------------------------------------------------------------------------------


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v1/state-machine", timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def stack(fresh: bool) -> Iterator[str]:
    """The API's base URL, with this process's Firestore settings pointed at the same emulator (for the keys)."""
    if not fresh and STACK_FILE.exists():
        running = json.loads(STACK_FILE.read_text())
        if _answers(running["api_url"]):
            os.environ["FIRESTORE_EMULATOR_HOST"] = running["firestore_emulator_host"]
            os.environ["GOOGLE_CLOUD_PROJECT"] = running["google_cloud_project"]
            print(f"Using the stack `make run` serves at {running['api_url']}", file=sys.__stdout__, flush=True)
            yield running["api_url"]
            return
    from werkzeug.serving import make_server

    from tools.router import create_app
    from tools.run import backends

    with backends():
        # The product's request log lines (JSON on stdout) go to a file: the terminal is the timeline's.
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        sys.stdout = (LOG_DIR / "api.log").open("w")
        server = make_server("127.0.0.1", 0, create_app(), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True, name="demo-api")
        thread.start()
        url = f"http://127.0.0.1:{server.server_port}"
        print(f"Started the product at {url} (Firestore emulator {os.environ['FIRESTORE_EMULATOR_HOST']}; "
              f"its log: {LOG_DIR.relative_to(ROOT)}/api.log)", file=sys.__stdout__, flush=True)
        try:
            yield url
        finally:
            server.shutdown()
            thread.join(timeout=10)
            sys.stdout.close()
            sys.stdout = sys.__stdout__


@dataclass
class Keys:
    owner: str
    agents: dict[str, str]
    ids: list[str] = field(default_factory=list)


@contextlib.contextmanager
def demo_keys() -> Iterator[Keys]:
    """An owner key and one key per agent role in the demo account (created here, revoked on the way out): the
    runners only ever see the demo's work, never the dev account's."""
    from shared.adapters.firestore import get_store
    from shared.domain.state_machine import Role
    from shared.services import accounts

    store = get_store()
    if not store.get(store.account(DEMO_ACCOUNT)).exists:
        accounts.create_account(store, "make demo", plan="dev", entitled=True, account_id=DEMO_ACCOUNT)
    made: list[tuple[str, Any]] = []
    owner = accounts.create_key(store, DEMO_ACCOUNT, [Role.OWNER], name="make demo: owner")
    made.append(owner)
    agents = {}
    for role in AGENTS:
        secret, key = accounts.create_key(store, DEMO_ACCOUNT, [Role(role)], name=f"make demo: {role}")
        agents[role] = secret
        made.append((secret, key))
    try:
        yield Keys(owner[0], agents, [key.key_id for _, key in made])
    finally:
        for _, key in made:
            with contextlib.suppress(Exception):
                accounts.revoke_key(store, key.key_id)


# ---- the runners ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def runners(api_url: str, keys: Keys) -> Iterator[list[subprocess.Popen]]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    procs = []
    for role, agent_id in AGENTS.items():
        log = (LOG_DIR / f"{agent_id}.log").open("w")
        env = {**os.environ, "QORCH_API_URL": api_url, "QORCH_API_KEY": keys.agents[role]}  # keys: env only
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "agents.runner", "--role", role, "--agent-id", agent_id, "--provider", "scripted",
             "--wait-seconds", "5", "--lease-seconds", "120"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    try:
        yield procs
    finally:
        for proc in procs:  # Ctrl-C for each: it releases what it holds, then exits
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


# ---- the API, as the owner ----------------------------------------------------------------------------------------


class Owner:
    def __init__(self, api_url: str, key: str) -> None:
        from agents.api import QorchApi

        self.api = QorchApi(api_url, key)

    def events(self, workflow_id: str) -> list[dict[str, Any]]:
        out, token = [], None
        while True:
            page = self.api.events(workflow_id, page_token=token, limit=100)
            out += page["events"]
            token = page.get("next_page_token")
            if not token:
                return out


# ---- the timeline --------------------------------------------------------------------------------------------------


def bar(state: str, width: int = 9) -> str:
    done = PATH.index(state) + 1 if state in PATH else 0
    filled = round(width * done / len(PATH))
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{len(PATH)}"


def cost_of(workflow: dict[str, Any], events: list[dict[str, Any]]) -> float:
    """The workflow's recorded cost (qorch keeps the totals), or else the sum of its events' (each event's usage
    `total`: its calls plus what heartbeats reported)."""
    usage = workflow.get("usage") or {}
    if usage.get("cost_usd") is not None:
        return float(usage["cost_usd"])
    return sum(float(((e.get("usage") or {}).get("total") or {}).get("cost_usd") or 0) for e in events)


def agent_at(seq: int, handoffs: list[dict[str, Any]]) -> str:
    """Who held the hand-off open when event `seq` was written."""
    for h in handoffs:
        if h["seq"] < seq and (h.get("closed_seq") is None or h["closed_seq"] >= seq):
            return h.get("agent_id") or "-"
    return "-"


def clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class Timeline:
    def __init__(self, out: Any = sys.stdout) -> None:
        self.out = out
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.shown = 0
        self.started = time.monotonic()
        self.status = ""

    def header(self) -> None:
        self._print(f"{'time':>6}  {'step':<26} {'role':<12} {'agent':<12} {'cost':>8}  {'progress':<17} note")

    def show(self, workflow: dict[str, Any], events: list[dict[str, Any]], handoffs: list[dict[str, Any]],
             names: dict[str, str]) -> None:
        for event in events[self.shown:]:
            seq, to, source = event["seq"], event["to_state"], event.get("from_state")
            step = f"{source} → {to}" if source else f"created: {to}"
            role = _role_of(source) if source else "owner"
            agent = agent_at(seq, handoffs) if source else "-"
            cost = _cost_until(events, seq)
            if not cost and seq == events[-1]["seq"]:  # events without usage: the workflow's total, at the end
                cost = cost_of(workflow, [])
            retry = "  (retry)" if source == "TESTING" and to == "IMPLEMENTATION" else ""
            prefix = (f"{time.monotonic() - self.started:5.1f}s  {step:<26} {role:<12} {agent:<12} "
                      f"${cost:>7.4f}  {bar(to):<17} ")
            line = prefix + clip(event.get("note") or event.get("reason") or "", 72) + retry
            artifacts = ", ".join(names.get(a, a) for a in event.get("artifacts") or [])
            self._print(line.rstrip() + (f"\n{'':<{len(prefix)}}↳ {artifacts}" if artifacts else ""))
        self.shown = len(events)
        if self.tty:
            waiting = workflow.get("role") or "-"
            holder = (workflow.get("current_handoff") or {}).get("agent_id") or "nobody yet"
            self.status = f"  … {workflow['state']}: {waiting}'s turn ({holder}) {bar(workflow['state'])}"
            self.out.write("\r\033[K" + self.status)
            self.out.flush()

    def _print(self, line: str) -> None:
        if self.tty:
            self.out.write("\r\033[K")
        print(line, file=self.out, flush=True)


def _role_of(state: str | None) -> str:
    return {"DISCOVERY": "Q_ASSISTANT", "PLANNING": "Q_ASSISTANT", "DESIGN": "ARCHITECT",
            "IMPLEMENTATION": "DEVELOPER", "TESTING": "TESTER", "VERIFICATION": "VERIFIER", "REVIEW": "CUSTOMER",
            "DEPLOYMENT": "DEVOPS"}.get(state or "", "-")


def _cost_until(events: list[dict[str, Any]], seq: int) -> float:
    return cost_of({}, [e for e in events if e["seq"] <= seq])


# ---- the demo ------------------------------------------------------------------------------------------------------


def approve(owner: Owner, workflow_id: str) -> None:
    """The customer's step: claim the REVIEW hand-off (an owner key claims for CUSTOMER) and approve."""
    claimed = owner.api.claim(CUSTOMER_AGENT, lease_seconds=60, wait_seconds=0)
    body = {"to": "DEPLOYMENT", "note": "Approved by the customer: ship it.", "artifacts": []}
    if claimed is not None and claimed["workflow"]["id"] == workflow_id:
        body["agent_id"] = CUSTOMER_AGENT
    elif claimed is not None:  # another demo's review (an earlier run cut short): not ours to decide
        owner.api.release(claimed["workflow"]["id"], claimed["handoff"]["id"], CUSTOMER_AGENT)
    owner.api.transition(workflow_id, body)


def verify(owner: Owner, workflow_id: str, out: Any) -> list[str]:
    """What must hold at the end; the problems found (none when the demo did what it says)."""
    problems = []
    workflow = owner.api.workflow(workflow_id)
    events = owner.events(workflow_id)
    if workflow["state"] != "COMPLETED":
        problems.append(f"the workflow is {workflow['state']}, not COMPLETED")
    retries = [e for e in events if e.get("from_state") == "TESTING" and e["to_state"] == "IMPLEMENTATION"]
    if len(retries) != 1 or workflow["retry_count"] != 1:
        problems.append(f"{len(retries)} retries in the events (retry_count {workflow['retry_count']}), not 1")
    print("\nArtifacts (each downloaded through its presigned URL and checked against its SHA-256):", file=out)
    for artifact in reversed(owner.api.artifacts(workflow_id)):
        meta, data = owner.api.download(workflow_id, artifact["id"])
        ok = hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["size_bytes"]
        if not ok:
            problems.append(f"{meta['name']} ({meta['id']}) does not match its checksum")
        print(f"  {'ok' if ok else 'BAD':<4}{meta['name']:<26}{meta['size_bytes']:>6} bytes  {meta['id']}", file=out)
    usage = workflow.get("usage") or {}
    total = cost_of(workflow, events)
    tokens = (f"{usage.get('input_tokens', 0):,} input, {usage.get('cache_read_tokens', 0):,} cache-read and "
              f"{usage.get('output_tokens', 0):,} output tokens, ") if usage else ""
    print(f"\nTotal cost: ${total:.4f} ({tokens}{len(events)} events, {len(retries)} retry)", file=out)
    if total <= 0:
        problems.append("no cost was recorded")
    return problems


def run_demo(api_url: str, keys: Keys, timeout: float, out: Any) -> int:
    owner = Owner(api_url, keys.owner)
    wf = owner.api.create_workflow(title="Shoe shop", description="Sell hand-made shoes online, with discounts.",
                                   labels={"demo": "make-demo"}, max_retries=2)
    print(f"\nWorkflow {wf['id']}: {wf['title']}. One scripted runner per role; the owner approves REVIEW.\n",
          file=out, flush=True)
    timeline = Timeline(out)
    timeline.header()
    deadline = time.monotonic() + timeout
    approved = False
    with runners(api_url, keys):
        while True:
            workflow = owner.api.workflow(wf["id"])
            events = owner.events(wf["id"])
            handoffs = owner.api.handoffs(wf["id"])
            names = {a["id"]: a["name"] for a in owner.api.artifacts(wf["id"])}
            timeline.show(workflow, events, handoffs, names)
            if workflow["state"] == "REVIEW" and not approved:
                approve(owner, wf["id"])
                approved = True
                continue
            if workflow["final"] or workflow["state"] == "FAILED":
                break
            if time.monotonic() > deadline:
                print(f"\n\nThe demo did not finish within {timeout:.0f} s. The runners' last words "
                      f"(their logs: {LOG_DIR}):", file=out)
                for agent_id in AGENTS.values():
                    lines = (LOG_DIR / f"{agent_id}.log").read_text(errors="replace").splitlines()
                    print("".join(f"  {agent_id}: {line}\n" for line in lines[-2:]), end="", file=out)
                return 1
            time.sleep(0.25)
    if timeline.tty:
        out.write("\r\033[K")
    problems = verify(owner, wf["id"], out)
    elapsed = time.monotonic() - timeline.started
    if problems:
        print("\nThe demo did NOT do what it says:\n  - " + "\n  - ".join(problems), file=out)
        return 1
    print(f"COMPLETED in {elapsed:.1f} s, with one retry. Runner logs: {LOG_DIR.relative_to(ROOT)}/", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description="make demo")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    parser.add_argument("--fresh", action="store_true", help="start a stack even if `make run` serves one")
    args = parser.parse_args(argv)
    from tools.emulator import MissingPrerequisite

    out = sys.stdout  # the terminal: the product's own log lines may be sent elsewhere meanwhile
    try:
        with stack(args.fresh) as api_url, demo_keys() as keys:
            return run_demo(api_url, keys, args.timeout, out)
    except MissingPrerequisite as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
