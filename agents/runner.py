"""The agent runner: the loop a production agent runs, for one role.

    QORCH_API_URL=http://127.0.0.1:8080 QORCH_API_KEY=qo_dev_... \\
        python -m agents.runner --role DEVELOPER --agent-id dev-1 [--provider anthropic|openai|scripted] \\
            [--model ...] [--openai-api chat|responses] [--concurrency N]

Each worker: claim (long poll) → get the context → the model's tool loop (the context's `instructions` as system
prompt, its `task` as first user message, qorch's tool definitions), with a heartbeat every third of the lease on a
timer while the model thinks → the model writes its artifacts and makes one transition, which carries the usage of
every model call of the step → claim the next work.

- `lease_lost` (from a heartbeat or any tool) drops the work at once: someone else has it now.
- A crash leaves the lease to run out; another runner then takes the work over.
- Ctrl-C (or SIGTERM) releases the work held, then exits.
- Invalid tool arguments go back to the model as tool errors, at most `--max-invalid` times per step; a step has at
  most `--max-turns` model calls. Past either limit, or when the model API fails, the work is released with a note.
- Keys come from the environment only (QORCH_API_KEY, ANTHROPIC_API_KEY, OPENAI_API_KEY) and are never logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from agents.api import ApiError, QorchApi
from agents.providers import DEFAULT_MODELS, OPENAI_APIS, PROVIDERS, Provider, ProviderError, make_provider
from agents.tools import AGENT_ROLES, ARGUMENTS, Executor, Outcome, ToolFailure, UsageLedger

log = logging.getLogger("qorch.agents.runner")

NUDGE = ("You have not finished this step. Use the tools: store your work product with write_artifact, then call "
         "transition exactly once; or call release with a note if you cannot do the work.")
STOP_CODES = {"lease_lost", "lease_held"}  # the work is no longer ours: drop it without another call
MAX_IDLE_BACKOFF = 300.0


@dataclass
class Settings:
    api_url: str
    api_key: str = field(repr=False)
    role: str
    agent_id: str
    provider: str = "scripted"
    model: str | None = None
    openai_api: str = "chat"
    concurrency: int = 1
    lease_seconds: int = 300
    wait_seconds: int = 20
    max_turns: int = 20
    max_invalid: int = 3
    max_handoffs: int | None = None  # stop after working on this many claims (tests, batch jobs); None: forever
    failure_backoff: float = 5.0  # first pause after a failed step (doubling, up to 5 min): a model API that is down


@dataclass
class Held:
    """One claimed hand-off and what may end our hold on it."""

    workflow_id: str
    handoff_id: str
    agent_id: str
    lost: threading.Event = field(default_factory=threading.Event)  # lease_lost: drop without another call
    given_up: threading.Event = field(default_factory=threading.Event)  # released (by Ctrl-C or by the step)
    done: threading.Event = field(default_factory=threading.Event)  # the worker is through with it: no heartbeat
    ledger: UsageLedger = field(default_factory=UsageLedger)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def over(self) -> bool:
        return self.lost.is_set() or self.given_up.is_set()


@dataclass
class StepRecord:
    """What one step did (for the log, the tests and the runner's summary)."""

    agent_id: str
    workflow_id: str
    handoff_id: str
    state: str
    outcome: str  # transitioned | released | dropped | failed
    to: str | None = None
    note: str = ""
    model_calls: int = 0
    usage: list[dict[str, Any]] = field(default_factory=list)  # what the transition recorded
    workflow: dict[str, Any] | None = None  # the workflow after the transition


class Runner:
    def __init__(self, settings: Settings, *, provider: Provider | None = None, api: QorchApi | None = None) -> None:
        if settings.role not in AGENT_ROLES:
            raise ValueError(f"--role must be one of {', '.join(AGENT_ROLES)}")
        self.settings = settings
        self.api = api or QorchApi(settings.api_url, settings.api_key)
        self.provider = provider or make_provider(settings.provider, settings.model, openai_api=settings.openai_api)
        self.stopping = threading.Event()
        self.records: list[StepRecord] = []
        self._held: dict[str, Held] = {}
        self._lock = threading.Lock()
        self._claims = 0
        self._tools: list[dict[str, Any]] | None = None

    # ---- the process -------------------------------------------------------------------------------------------

    def agent_ids(self) -> list[str]:
        n, base = self.settings.concurrency, self.settings.agent_id
        return [base] if n == 1 else [f"{base}/{i}" for i in range(1, n + 1)]

    def run(self) -> int:
        """Run the workers until Ctrl-C / SIGTERM (or `max_handoffs`); held work is released on the way out."""
        workers = [threading.Thread(target=self.work_loop, args=(agent_id,), name=agent_id, daemon=True)
                   for agent_id in self.agent_ids()]
        for worker in workers:
            worker.start()
        log.info("%s: %d worker(s) for %s, provider %s, model %s", self.settings.agent_id, len(workers),
                 self.settings.role, self.provider.name, self.provider.model)
        try:
            while any(worker.is_alive() for worker in workers):
                for worker in workers:
                    worker.join(timeout=0.2)
        except KeyboardInterrupt:
            log.info("%s: stopping; releasing the work held", self.settings.agent_id)
            self.shutdown(workers)
        return 0

    def shutdown(self, workers: list[threading.Thread]) -> None:
        self.stopping.set()
        with self._lock:
            held = list(self._held.values())
        for h in held:
            self.give_up(h, f"Released by {h.agent_id}: the runner was stopped.")
        # A claim in flight may still land: its worker releases it itself once it sees `stopping`.
        deadline = time.monotonic() + self.settings.wait_seconds + 5
        try:
            for worker in workers:
                worker.join(timeout=max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            log.warning("%s: second interrupt; exiting without waiting for claims in flight", self.settings.agent_id)

    def work_loop(self, agent_id: str) -> None:
        backoff = 0.0
        while not self.stopping.is_set():
            if not self._take_slot():
                return
            try:
                claimed = self.api.claim(agent_id, roles=[self.settings.role],
                                         lease_seconds=self.settings.lease_seconds,
                                         wait_seconds=self.settings.wait_seconds)
            except ApiError as exc:
                self._return_slot()
                backoff = min(max(1.0, backoff * 2), MAX_IDLE_BACKOFF)
                log.warning("%s: claim refused (%s: %s); trying again in %.0f s", agent_id, exc.code, exc.detail,
                            backoff)
                self.stopping.wait(backoff)
                continue
            if claimed is None:
                self._return_slot()
                continue
            try:
                failed = self.work_on(agent_id, claimed)
            except Exception:  # a bug or an unforeseen answer must not kill the worker (work_on released the work)
                log.exception("%s: unexpected error on %s", agent_id, claimed["handoff"]["id"])
                failed = True
            # A model API that fails would otherwise make this worker claim and release the same work in a loop.
            backoff = min(max(self.settings.failure_backoff, backoff * 2), MAX_IDLE_BACKOFF) if failed else 0.0
            if backoff:
                self.stopping.wait(backoff)

    def _take_slot(self) -> bool:
        with self._lock:
            if self.settings.max_handoffs is not None and self._claims >= self.settings.max_handoffs:
                return False
            self._claims += 1
            return True

    def _return_slot(self) -> None:
        with self._lock:
            self._claims -= 1

    # ---- one claimed hand-off ------------------------------------------------------------------------------------

    def work_on(self, agent_id: str, claimed: dict[str, Any]) -> bool:
        """Work a claimed hand-off until it leaves us. True when it ended in a failure (model API down)."""
        handoff, workflow = claimed["handoff"], claimed["workflow"]
        held = Held(workflow["id"], handoff["id"], agent_id)
        with self._lock:
            self._held[held.handoff_id] = held
        log.info("%s: claimed %s (%s, %s: %s)", agent_id, held.handoff_id, held.workflow_id, workflow["state"],
                 workflow["title"])
        if self.stopping.is_set():
            self.give_up(held, f"Released by {agent_id}: the runner was stopped.")
        beat = threading.Thread(target=self._heartbeat, args=(held,), name=f"{agent_id}-heartbeat", daemon=True)
        beat.start()
        failed = False
        try:
            while not held.over:
                record = self.step(held)
                with self._lock:
                    self.records.append(record)
                failed = record.outcome == "failed"
                if record.outcome != "transitioned" or not self._still_ours(held, record):
                    break
        except Exception:
            self.give_up(held, f"Released by {agent_id}: the runner hit an unexpected error.")
            raise
        finally:
            held.done.set()  # stops the heartbeat timer
            with self._lock:
                self._held.pop(held.handoff_id, None)
            beat.join(timeout=1)
        return failed

    @staticmethod
    def _still_ours(held: Held, record: StepRecord) -> bool:
        """After a transition within our role (DISCOVERY → PLANNING) the hand-off stays open and ours: go on."""
        current = (record.workflow or {}).get("current_handoff") or {}
        return (current.get("id") == held.handoff_id and current.get("status") == "CLAIMED"
                and current.get("agent_id") == held.agent_id)

    def _heartbeat(self, held: Held) -> None:
        every = self.settings.lease_seconds / 3
        while not held.done.wait(every):
            if held.over:
                return
            try:
                self.api.heartbeat(held.workflow_id, held.handoff_id, held.agent_id)
            except ApiError as exc:
                if exc.code in STOP_CODES or exc.status == 404:
                    log.warning("%s: %s on heartbeat; dropping %s", held.agent_id, exc.code, held.handoff_id)
                    held.lost.set()
                    return
                log.warning("%s: heartbeat failed (%s); trying again in %.0f s", held.agent_id, exc.code, every)

    def give_up(self, held: Held, note: str) -> None:
        """Release the hand-off with a note, after a heartbeat that records the step's unrecorded usage. Once."""
        with held.lock:
            if held.over:
                return
            held.given_up.set()
        executor = Executor(self.api, held.agent_id, held.ledger)
        executor.flush_usage(held.workflow_id, held.handoff_id)
        try:
            self.api.release(held.workflow_id, held.handoff_id, held.agent_id, note)
            log.info("%s: released %s: %s", held.agent_id, held.handoff_id, note)
        except ApiError as exc:
            log.warning("%s: release of %s refused (%s)", held.agent_id, held.handoff_id, exc.code)

    # ---- one step: one model tool loop, ending in one transition -------------------------------------------------

    def tools(self) -> list[dict[str, Any]]:
        """qorch's tool definitions in the provider's format, fetched once (the server is their one source)."""
        if self._tools is None:
            fmt = self.provider.tool_format
            served = self.api.agent_tools(fmt) if fmt else []
            self._tools = [t for t in served if _tool_name(t) in ARGUMENTS]
        return self._tools

    def step(self, held: Held) -> StepRecord:
        agent_id, s = held.agent_id, self.settings
        record = StepRecord(agent_id, held.workflow_id, held.handoff_id, state="?", outcome="dropped")
        try:
            context = self.api.context(held.workflow_id)
        except ApiError as exc:
            return self._end(held, record, "failed", f"the context could not be read ({exc.code})")
        record.state = context["workflow"]["state"]
        mine = context.get("handoff") or {}
        if context.get("role") != s.role or mine.get("id") != held.handoff_id or mine.get("agent_id") != agent_id:
            held.lost.set()  # the workflow moved on without us
            record.note = "the hand-off is no longer ours"
            return record
        executor = Executor(self.api, agent_id, held.ledger, workflow_id=held.workflow_id,
                            handoff_id=held.handoff_id)
        task = (f"{context['task']}\n\n(workflow_id: {held.workflow_id}; handoff_id: {held.handoff_id}. "
                "The runner adds your agent id and heartbeats for you.)")
        try:
            conversation = self.provider.conversation(context["instructions"], task, self.tools())
        except ApiError as exc:
            return self._end(held, record, "failed", f"the tool definitions could not be read ({exc.code})")
        invalid = 0
        for _ in range(s.max_turns):
            if self.stopping.is_set():  # Ctrl-C: whoever gets there first (this worker or the main thread) releases
                return self._end(held, record, "released", "the runner was stopped")
            if held.over:
                return _ended(record, held)
            try:
                reply = conversation.next()
            except ProviderError as exc:
                log.warning("%s: model call failed: %s", agent_id, exc)
                return self._end(held, record, "failed", f"the model API failed: {exc}")
            record.model_calls += 1
            held.ledger.add(reply.usage)
            if held.over:  # lost, or released by Ctrl-C, while the model thought
                return _ended(record, held)
            if not reply.tool_calls:
                conversation.add_user_text(NUDGE)
                continue
            answered: list[tuple[Any, Outcome]] = []
            for call in reply.tool_calls:
                outcome = executor.call(call.name, call.arguments)
                answered.append((call, outcome))
                if outcome.failure is not None:
                    invalid += outcome.failure.invalid_arguments
                    if outcome.failure.code in STOP_CODES:
                        held.lost.set()
                        record.note = f"{call.name}: {outcome.failure.code}"
                        log.warning("%s: %s; dropping %s", agent_id, outcome.failure.code, held.handoff_id)
                        return record
                    if outcome.failure.code == "budget_exhausted":  # nothing the model does can finish the step
                        return self._end(held, record, "released", "the workflow's budget is spent")
                    continue
                if call.name == "transition":
                    assert outcome.result is not None
                    record.workflow = outcome.result["workflow"]
                    record.outcome, record.to = "transitioned", outcome.result["workflow"]["state"]
                    record.note = outcome.result["event"].get("note", "")
                    record.usage = held.ledger.recorded[:]
                    held.ledger.recorded.clear()
                    log.info("%s: %s %s → %s after %d model call(s)", agent_id, held.workflow_id, record.state,
                             record.to, record.model_calls)
                    return record
                if call.name == "release":
                    held.given_up.set()
                    record.outcome, record.note = "released", "released by the model"
                    return record
            if invalid > s.max_invalid:
                return self._end(held, record, "released",
                                 f"the model sent invalid tool arguments {invalid} times")
            conversation.add_tool_results(answered)
        return self._end(held, record, "released", f"the model did not finish the step within {s.max_turns} turns")

    def _end(self, held: Held, record: StepRecord, outcome: str, why: str) -> StepRecord:
        record.outcome, record.note = outcome, why
        self.give_up(held, f"Released by {held.agent_id}: {why}.")
        return record


def _ended(record: StepRecord, held: Held) -> StepRecord:
    record.outcome = "released" if held.given_up.is_set() else "dropped"
    return record


def _tool_name(tool: dict[str, Any]) -> str:
    return tool.get("name") or tool.get("function", {}).get("name", "")


# ---- the command -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agents.runner", description=__doc__.split("\n\n")[0])
    p.add_argument("--role", required=True, choices=AGENT_ROLES)
    p.add_argument("--agent-id", required=True, help="this runner's name (host, pod, ...); with the key, the holder")
    p.add_argument("--provider", choices=PROVIDERS, default="scripted")
    p.add_argument("--model", help=f"default: {', '.join(f'{k} {v}' for k, v in DEFAULT_MODELS.items())}")
    p.add_argument("--openai-api", choices=OPENAI_APIS, default="chat", help="openai: Chat Completions or Responses")
    p.add_argument("--concurrency", type=int, default=1, help="hand-offs worked at once (agent ids <id>/1..N)")
    p.add_argument("--lease-seconds", type=int, default=300)
    p.add_argument("--wait-seconds", type=int, default=20, help="long poll of each claim (0..20)")
    p.add_argument("--max-turns", type=int, default=20, help="model calls per step before the work is released")
    p.add_argument("--max-invalid", type=int, default=3, help="invalid tool calls per step before release")
    p.add_argument("--max-handoffs", type=int, help="exit after working this many claims (default: run forever)")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace, env: dict[str, str]) -> Settings:
    key = env.get("QORCH_API_KEY", "")
    if not key:
        raise SystemExit("QORCH_API_KEY is not set: the runner's agent key is read from the environment only")
    return Settings(api_url=env.get("QORCH_API_URL", "http://127.0.0.1:8080"), api_key=key, role=args.role,
                    agent_id=args.agent_id, provider=args.provider, model=args.model, openai_api=args.openai_api,
                    concurrency=max(1, args.concurrency), lease_seconds=args.lease_seconds,
                    wait_seconds=args.wait_seconds, max_turns=args.max_turns, max_invalid=args.max_invalid,
                    max_handoffs=args.max_handoffs)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (Cloud Run, docker stop) releases the work exactly like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("QORCH_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("httpx2", "httpcore2", "anthropic", "openai"):  # their debug logs would show request headers
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = settings_from(parse_args(argv), dict(os.environ))
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        runner = Runner(settings)
    except (ProviderError, ValueError, ToolFailure) as exc:
        print(f"agents.runner: {exc}", file=sys.stderr)
        return 2
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
