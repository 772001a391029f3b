"""A scripted "model": a deterministic build, with no network and no API key (the demo and the tests use it).

It plays the part through the same tools a real model uses: it asks for the context, reads what was handed over,
writes its role's artifacts as the playbooks name them (requirements.md, plan.md, design.md, a small code change
as change.patch with implementation-notes.md, test-report.md, verification-report.md, deployment-record.md) and
makes one transition. The tester's first report fails, so the work goes back to
IMPLEMENTATION with the failure; once the developer has reworked it, the next report passes. Each call reports
usage figures as a model with prompt caching would (the conversation so far read from the cache, only what is new
billed as input), priced here: the model name `scripted` is in no price table.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agents.providers import ModelReply, ToolCall, ToolResult, usage_entry

# A made-up price per token, in the range of today's mid-size models, so the demo shows what a run would cost.
PRICE_IN, PRICE_OUT, PRICE_CACHE_READ = 3.0 / 1e6, 15.0 / 1e6, 0.3 / 1e6
PROMPT_TOKENS = 1500  # the tool definitions and the fixed part of a request, in tokens
FORWARD = {"DISCOVERY": "PLANNING", "PLANNING": "DESIGN", "DESIGN": "IMPLEMENTATION", "IMPLEMENTATION": "TESTING",
           "TESTING": "VERIFICATION", "VERIFICATION": "REVIEW", "DEPLOYMENT": "COMPLETED"}
WORKFLOW_ID = re.compile(r"\bwf_[A-Za-z0-9]+")


class ScriptedProvider:
    name = "scripted"
    tool_format = None  # it knows the tools by heart

    def __init__(self, model: str = "scripted") -> None:
        self.model = model

    def conversation(self, system: str, task: str, tools: list[dict[str, Any]]) -> ScriptedConversation:
        return ScriptedConversation(self.model, system, task)


class ScriptedConversation:
    def __init__(self, model: str, system: str, task: str) -> None:
        self.model = model
        found = WORKFLOW_ID.search(task)
        self.workflow_id = found.group(0) if found else ""
        self.read = len(system) + len(task)  # characters of the conversation so far: the figures grow with it
        self.cached = 0  # characters of it a previous call sent (a real model would read them from its cache)
        self.context: dict[str, Any] | None = None
        self.handed_over: list[dict[str, Any]] = []
        self.to_write: list[tuple[str, str]] | None = None
        self.written: list[dict[str, Any]] = []
        self.failure: str | None = None
        self.turn = 0
        self.nudged = False

    # ---- the model's turns -------------------------------------------------------------------------------------

    def next(self) -> ModelReply:
        self.turn += 1
        call = self._decide()
        said = json.dumps(call.arguments) if call else ""
        # Deterministic figures, about four characters per token: what this call adds to the conversation is input,
        # what earlier calls sent (and the fixed prompt) is read from the cache, the tool call is output.
        fresh = (self.read - self.cached) // 4 + (PROMPT_TOKENS if self.turn == 1 else 0)
        cached = self.cached // 4 + (PROMPT_TOKENS if self.turn > 1 else 0)
        tokens_out = 40 + len(said) // 4
        self.read += len(said)
        self.cached = self.read
        cost = fresh * PRICE_IN + tokens_out * PRICE_OUT + cached * PRICE_CACHE_READ
        usage = usage_entry(self.model, fresh, tokens_out, cached, round(cost, 6))
        return ModelReply(tool_calls=[call] if call else [], text="" if call else "Done.", usage=usage)

    def _decide(self) -> ToolCall | None:
        wid = self.workflow_id
        if self.failure is not None:
            if self.context and self.context.get("handoff"):
                return self._call("release", workflow_id=wid, handoff_id=self.context["handoff"]["id"],
                                  note=f"Scripted agent gave up: {self.failure}")
            return None
        if self.context is None:
            return self._call("get_context", workflow_id=wid)
        if self.handed_over:
            ref = self.handed_over.pop(0)
            return self._call("read_artifact", workflow_id=wid, artifact_id=ref["id"])
        if self.to_write is None:
            self.to_write = artifacts_for(self.context)
        if len(self.written) < len(self.to_write):
            name, content = self.to_write[len(self.written)]
            return self._call("write_artifact", workflow_id=wid, name=name, content=content, content_type=None)
        to, note = transition_for(self.context, [w["name"] for w in self.written])
        return self._call("transition", workflow_id=wid, to=to, note=note, reason=None,
                          artifacts=[w["artifact_id"] for w in self.written], expected_version=None)

    def _call(self, tool: str, /, **arguments: Any) -> ToolCall:
        return ToolCall(f"call_{self.turn}_{tool}", tool, arguments)

    # ---- what the tools answered -------------------------------------------------------------------------------

    def add_tool_results(self, results: list[tuple[ToolCall, ToolResult]]) -> None:
        for call, result in results:
            text = result.text()
            self.read += len(text)
            answer = json.loads(text)
            if not result.ok:
                self.failure = f"{call.name}: {answer['error']['code']}"
            elif call.name == "get_context":
                self.context = answer
                # only the newest artifact handed over is read (the developer reads the failing test report)
                self.handed_over = list(answer.get("handed_over") or [])[:1]
            elif call.name == "write_artifact":
                self.written.append(answer)

    def add_user_text(self, text: str) -> None:
        self.read += len(text)
        self.nudged = True


# ---- the build -------------------------------------------------------------------------------------------------


def attempt(context: dict[str, Any]) -> int:
    return int(context["workflow"].get("retry_count") or 0) + 1


def tests_fail(context: dict[str, Any]) -> bool:
    """The first test run fails, if the workflow may still go back to IMPLEMENTATION."""
    allowed = {t["to"] for t in context.get("allowed_transitions") or []}
    return attempt(context) == 1 and "IMPLEMENTATION" in allowed


def artifacts_for(context: dict[str, Any]) -> list[tuple[str, str]]:
    """The work product of the step, named as the role's playbook asks."""
    wf = context["workflow"]
    title, description, state, n = wf["title"], wf.get("description") or "", wf["state"], attempt(context)
    if state == "DISCOVERY":
        return [("requirements.md", (
            f"# Requirements: {title}\n\n{description}\n\n## Must have\n"
            "- R1. A catalogue of products with prices.\n- R2. A cart whose total applies discounts.\n"
            "- R3. Checkout that charges the cart total.\n\n## Acceptance\n"
            "- The cart total is exact to the cent, with and without a discount.\n"))]
    if state == "PLANNING":
        return [("plan.md", (
            f"# Plan: {title}\n\n1. Catalogue (R1).\n2. Cart and discounts (R2).\n3. Checkout (R3).\n\n"
            "Acceptance criteria: AC1 catalogue lists prices (R1); AC2 cart total exact to the cent with a discount "
            "(R2); AC3 checkout charges the total (R3).\n"))]
    if state == "DESIGN":
        return [("design.md", (
            f"# Design: {title}\n\n- `cart.py`: `total_cents(items, discount_percent)` -> int.\n"
            "- Money is integer cents everywhere; rounding happens once, half up (AC2).\n"
            "- `checkout.py` charges `total_cents` through the payment provider (AC3).\n"))]
    if state == "IMPLEMENTATION":
        fixed = n > 1
        body = ("    gross = sum(item.price_cents * item.quantity for item in items)\n"
                + ("    return (gross * (100 - discount_percent) + 50) // 100\n" if fixed else
                   "    return int(gross * (1 - discount_percent / 100))\n"))
        patch = ("--- /dev/null\n+++ b/cart.py\n@@ -0,0 +1,3 @@\n"
                 "+def total_cents(items, discount_percent=0):\n" + "".join(f"+{line}\n" for line in body.splitlines()))
        notes = (f"# Implementation notes (attempt {n})\n\n"
                 + ("Fixed the discount rounding: integer arithmetic, half up.\n" if fixed else
                    "First version of the cart total. Run `pytest tests/test_cart.py`.\n"))
        return [("change.patch", patch), ("implementation-notes.md", notes)]
    if state == "TESTING":
        verdict = "FAIL" if tests_fail(context) else "PASS"
        discount_row = ("FAIL: 10% off 19.95 expected 17.96, got 17.95 (truncated, not rounded)"
                        if verdict == "FAIL" else "PASS")
        return [("test-report.md", (
            f"# Test report (run {n}): {verdict}\n\n| case | criterion | result |\n|---|---|---|\n"
            "| T1 test_catalogue_lists_prices | AC1 | PASS |\n"
            f"| T2 test_total_with_discount | AC2 | {discount_row} |\n"
            "| T3 test_checkout_charges_total | AC3 | PASS |\n"))]
    if state == "VERIFICATION":
        return [("verification-report.md", (
            f"# Verification: {title}\n\nAC1 MET (T1), AC2 MET (T2), AC3 MET (T3). No deviation from design.md.\n"))]
    if state == "DEPLOYMENT":
        return [("deployment-record.md", (
            f"# Deployment: {title}\n\nDeployed version 1.0.0 to production; smoke test passed. "
            "Roll back by redeploying the previous version.\n"))]
    raise ValueError(f"the scripted agent has no work for {state}")


def transition_for(context: dict[str, Any], written: list[str]) -> tuple[str, str]:
    state, names = context["workflow"]["state"], ", ".join(written)
    if state == "TESTING" and tests_fail(context):
        return "IMPLEMENTATION", (f"Tests failed: T2 test_total_with_discount (10% off 19.95 expected 17.96, got "
                                  f"17.95: the total is truncated, not rounded). See {names}.")
    notes = {"DISCOVERY": "Requirements gathered", "PLANNING": "Plan ready", "DESIGN": "Design ready",
             "IMPLEMENTATION": "Change ready for testing", "TESTING": "All tests pass",
             "VERIFICATION": "Matches the plan", "DEPLOYMENT": "Live"}
    return FORWARD[state], f"{notes[state]}: see {names}."
