"""What the AI work costs, against the emulator: a transition's usage on its event, a heartbeat's kept on the hand-off
(and its copy on the workflow) and folded into the hand-off's next event; the workflow's totals (overall, per role,
unpriced calls apart) and the account's month in the same commit; a playbook version on agents' events; the RPCs a
change with usage costs; 16 concurrent transitions and heartbeats whose totals equal the sum of what was accepted,
and Idempotency-Key repeats that count nothing twice. (Every scenario also ends with `assert_event_log`, which
checks that the events' usage plus the open hand-off's pending usage is the workflow's totals.)"""

from __future__ import annotations

import itertools
from collections import Counter
from decimal import Decimal
from typing import Any

from shared.domain.pricing import Tally, UsageTotals
from shared.domain.state_machine import Role
from shared.runtime import clock
from shared.runtime.config import config
from tests.agents import Agent
from tests.helpers import Api, Tenant, assert_event_log, assert_refused, cold_instance, together

Q = Role.Q_ASSISTANT
# claude-opus-5-5 is 4 / 20 / 0.20 USD per million: 0.004 + 0.04 + 0.002 = 0.046
PRICED = {"model": "claude-opus-5-5", "input_tokens": 1_000, "output_tokens": 2_000, "cache_read_tokens": 10_000}
UNPRICED = {"model": "my-local-llama", "input_tokens": 10, "output_tokens": 20}
OWN_FIGURE = {"model": "gpt-6-sol", "input_tokens": 5, "output_tokens": 7, "cost_usd": 0.125}


def totals(**fields: Any) -> dict:
    return UsageTotals(**fields).model_dump()


def of(*calls: dict) -> Tally:
    """What the server should count for these calls (priced by the shipped table)."""
    from shared.domain import pricing
    from shared.domain.pricing import ModelCall

    return Tally.of([pricing.priced(ModelCall(**c), config().prices) for c in calls])


def workflow_usage(api: Api, tenant: Tenant, workflow_id: str) -> dict:
    return api.get(f"/v1/workflows/{workflow_id}", tenant.owner).body["usage"]


def this_month(api: Api, tenant: Tenant) -> dict:
    month = api.get("/v1/account", tenant.owner).body["usage"]["this_month"]
    assert month.pop("month") == clock.now().strftime("%Y-%m")
    return month


def claimed(api: Api, tenant: Tenant, role: Role = Q, agent_id: str = "agent-1") -> tuple[Agent, str]:
    agent = Agent(api, tenant.agents[role], agent_id)
    handoff = agent.claim(expect=200, lease_seconds=3600).body["handoff"]
    return agent, handoff["id"]


def test_a_transitions_usage_is_on_its_event_and_in_the_totals_of_the_workflow_and_the_month(api, tenant):
    wf = api.create(tenant)["id"]
    q, _ = claimed(api, tenant)
    r = q.move(wf, "PLANNING", usage=[PRICED, UNPRICED, OWN_FIGURE])
    assert r.status == 200, r.body
    usage = r.body["event"]["usage"]
    assert usage["role"] == "Q_ASSISTANT" and usage["heartbeats"] is None
    assert [c["cost_usd"] for c in usage["calls"]] == [0.046, None, 0.125]  # filled from the table, kept, unknown
    expected = totals(input_tokens=1_015, output_tokens=2_027, cache_read_tokens=10_000, cost_usd=0.171,
                      unpriced_calls=1)
    assert usage["total"] == expected
    assert r.body["event"]["playbook_version"] == config().playbooks.for_role(Q).version
    assert r.body["workflow"]["usage"] == {**expected, "by_role": {"Q_ASSISTANT": expected}}
    assert workflow_usage(api, tenant, wf) == r.body["workflow"]["usage"]
    assert this_month(api, tenant) == expected

    # The owner acting at the Q Assistant's step: one call, not a list; no playbook (an owner is not an agent).
    r = api.post(f"/v1/workflows/{wf}/transitions", {"to": "DESIGN", "usage": PRICED}, tenant.owner)
    assert r.status == 200, r.body
    assert r.body["event"]["playbook_version"] is None and r.body["event"]["usage"]["role"] == "Q_ASSISTANT"
    both = (of(PRICED, UNPRICED, OWN_FIGURE) + of(PRICED)).view().model_dump()
    assert workflow_usage(api, tenant, wf) == {**both, "by_role": {"Q_ASSISTANT": both}}
    # The architect's step is counted for the architect.
    arch, _ = claimed(api, tenant, Role.ARCHITECT)
    assert arch.move(wf, "IMPLEMENTATION", usage=OWN_FIGURE).status == 200
    usage = workflow_usage(api, tenant, wf)
    assert usage["by_role"] == {"ARCHITECT": of(OWN_FIGURE).view().model_dump(), "Q_ASSISTANT": both}
    assert Tally.of_view(UsageTotals(**{k: v for k, v in usage.items() if k != "by_role"})) == (
        of(PRICED, UNPRICED, OWN_FIGURE) + of(PRICED) + of(OWN_FIGURE))
    assert this_month(api, tenant) == {k: v for k, v in usage.items() if k != "by_role"}
    # every event a key wrote acting in an agent role names that role's playbook; the owner's and CREATED do not
    events = api.get(f"/v1/workflows/{wf}/events", tenant.owner).body["events"]
    assert [e["playbook_version"] for e in events] == [
        None, config().playbooks.for_role(Q).version, None, config().playbooks.for_role(Role.ARCHITECT).version]


def test_a_heartbeats_usage_waits_on_the_handoff_for_its_next_event(api, tenant):
    wf = api.create(tenant)["id"]
    q, ho = claimed(api, tenant)
    r = q.heartbeat(wf, ho, usage=PRICED)
    assert r.status == 200 and r.body["usage"] == of(PRICED).view().model_dump()
    r = q.heartbeat(wf, ho, usage=[OWN_FIGURE, UNPRICED])
    pending = of(PRICED, OWN_FIGURE, UNPRICED).view().model_dump()
    assert r.status == 200 and r.body["usage"] == pending
    view = api.get(f"/v1/workflows/{wf}", tenant.owner).body
    assert view["current_handoff"]["usage"] == pending  # the workflow's copy: a transition's one read sees it
    assert view["usage"] == {**pending, "by_role": {"Q_ASSISTANT": pending}}  # counted when reported
    assert this_month(api, tenant) == pending
    assert q.heartbeat(wf, ho).body["usage"] == pending  # a heartbeat without usage keeps it

    # A transition within the role: the hand-off stays open, its pending usage goes onto the event.
    r = q.move(wf, "PLANNING", usage=UNPRICED)
    assert r.status == 200, r.body
    usage = r.body["event"]["usage"]
    assert usage["heartbeats"] == pending and [c["model"] for c in usage["calls"]] == ["my-local-llama"]
    assert usage["total"] == of(PRICED, OWN_FIGURE, UNPRICED, UNPRICED).view().model_dump()
    assert r.body["workflow"]["current_handoff"]["usage"] is None
    [handoff] = api.get(f"/v1/workflows/{wf}/handoffs", tenant.owner).body["handoffs"]
    assert (handoff["id"], handoff["status"], handoff["usage"]) == (ho, "CLAIMED", None)

    # The hand-off's last event: the transition that completes it.
    assert q.heartbeat(wf, ho, usage=PRICED).status == 200
    r = q.move(wf, "DESIGN")
    assert r.status == 200, r.body
    assert r.body["event"]["usage"] == {"role": "Q_ASSISTANT", "calls": [],
                                        "heartbeats": of(PRICED).view().model_dump(),
                                        "total": of(PRICED).view().model_dump()}
    closed, opened = sorted(api.get(f"/v1/workflows/{wf}/handoffs", tenant.owner).body["handoffs"],
                            key=lambda h: h["seq"])
    assert (closed["status"], closed["usage"], opened["usage"]) == ("COMPLETED", None, None)
    everything = of(PRICED, OWN_FIGURE, UNPRICED, UNPRICED, PRICED).view().model_dump()
    assert workflow_usage(api, tenant, wf) == {**everything, "by_role": {"Q_ASSISTANT": everything}}
    assert this_month(api, tenant) == everything


def test_the_owners_rollback_and_cancel_take_the_pending_usage_too(api, tenant):
    wf = api.create(tenant)["id"]
    for to in ("PLANNING", "DESIGN"):
        api.move(tenant, wf, to, key=tenant.owner)
    arch, ho = claimed(api, tenant, Role.ARCHITECT)
    assert arch.heartbeat(wf, ho, usage=PRICED).status == 200
    r = api.post(f"/v1/workflows/{wf}/rollback", {"to_version": 2, "reason": "plan again"}, tenant.owner)
    assert r.status == 200, r.body
    assert r.body["event"]["usage"]["role"] == "ARCHITECT"
    assert r.body["event"]["usage"]["heartbeats"] == of(PRICED).view().model_dump()
    q, ho = claimed(api, tenant)
    assert q.heartbeat(wf, ho, usage=OWN_FIGURE).status == 200
    r = api.post(f"/v1/workflows/{wf}/transitions", {"to": "CANCELLED"}, tenant.owner)
    assert r.status == 200 and r.body["event"]["usage"]["total"] == of(OWN_FIGURE).view().model_dump()
    assert r.body["workflow"]["usage"]["by_role"] == {"ARCHITECT": of(PRICED).view().model_dump(),
                                                      "Q_ASSISTANT": of(OWN_FIGURE).view().model_dump()}


def test_usage_costs_no_extra_rpc(api, tenant):
    wf = api.create(tenant)["id"]
    q, ho = claimed(api, tenant)
    cold_instance()  # counted as on a fresh instance: the key's read is one of them
    api.store.rpcs.clear()
    assert q.heartbeat(wf, ho, usage=[PRICED, UNPRICED], headers={"Idempotency-Key": "hb-1"}).status == 200
    assert api.store.rpcs == Counter({"get": 1, "batch_get": 1, "commit": 1})  # the key; hand-off + record; commit
    cold_instance()  # counted as on a fresh instance: the key's read is one of them
    api.store.rpcs.clear()
    r = q.move(wf, "PLANNING", usage=[PRICED] * 50, headers={"Idempotency-Key": "tr-1"})
    assert r.status == 200, r.body
    assert api.store.rpcs == Counter({"get": 1, "batch_get": 1, "commit": 1})  # the key; workflow + record; commit


def test_bad_usage_is_refused_and_writes_nothing(api, tenant):
    wf = api.create(tenant)["id"]
    q, ho = claimed(api, tenant)
    for bad in ({"model": "a", "input_tokens": -1, "output_tokens": 0}, "gpt-6-sol", [UNPRICED, {"model": "a"}],
                {**PRICED, "cost_usd": "0.5"}, {**PRICED, "cache_write_tokens": 1}, [PRICED] * 1001):
        assert_refused(api, lambda b=bad: q.move(wf, "PLANNING", usage=b), 422, "validation_error")
        assert_refused(api, lambda b=bad: q.heartbeat(wf, ho, usage=b), 422, "validation_error")
    # refused for another reason (not the holder), its usage is not counted either
    other = Agent(api, tenant.agents[Q], "agent-2")
    assert_refused(api, lambda: other.heartbeat(wf, ho, usage=PRICED), 409, "lease_lost")
    assert_refused(api, lambda: other.move(wf, "PLANNING", usage=PRICED), 409, "lease_held")
    assert workflow_usage(api, tenant, wf)["cost_usd"] == 0


# ---- under concurrency ---------------------------------------------------------------------------------------------

THREADS = 16
ROUNDS = 4


def _call(thread: int, n: int) -> dict:
    """A distinct model call per request (so a miscount shows), priced three ways in turn."""
    i = thread * ROUNDS + n + 1
    call = {"model": ("claude-opus-5-5", "my-local-llama", "gpt-6-sol")[i % 3], "input_tokens": 1_000 + i,
            "output_tokens": 10 * i, "cache_read_tokens": i}
    return {**call, "cost_usd": i / 1000} if i % 3 == 2 else call


def test_totals_under_16_concurrent_transitions_and_heartbeats_are_the_sum_of_what_was_accepted(api, tenant, live):
    """One workflow, its hand-off claimed by one agent; 8 threads move it back and forth within the role (the hand-off
    stays open, so each transition also takes what the heartbeats left on it) and 8 heartbeat it, each request with
    its own usage. Every answer is 200 or a refusal; the workflow's totals, its events' usage plus the hand-off's
    pending usage, and the account's month all equal the sum of the usage of the 200s, exactly."""
    wf = api.create(tenant)["id"]
    q, ho = claimed(api, tenant)
    key = tenant.agents[Q]
    sent: dict[tuple[int, int], dict] = {}

    def work(thread: int) -> list[tuple[str, int, str | None, dict]]:
        heard = []
        for n in range(ROUNDS):
            call = sent[(thread, n)] = _call(thread, n)
            headers = {"Idempotency-Key": f"t{thread}-r{n}"}
            if thread % 2:
                r = live.request("POST", f"/v1/workflows/{wf}/handoffs/{ho}/heartbeat", key=key, headers=headers,
                                 body={"agent_id": q.agent_id, "usage": call})
                heard.append(("heartbeat", r.status, r.code, {"thread": thread, "round": n}))
            else:
                to = "PLANNING" if (thread // 2 + n) % 2 == 0 else "DISCOVERY"
                r = live.request("POST", f"/v1/workflows/{wf}/transitions", key=key, headers=headers,
                                 body={"to": to, "agent_id": q.agent_id, "usage": [call]})
                heard.append(("transition", r.status, r.code, {"thread": thread, "round": n, "to": to}))
        return heard

    outcomes = list(itertools.chain.from_iterable(together(THREADS, work)))
    assert {(kind, status, code) for kind, status, code, _ in outcomes} <= {
        ("heartbeat", 200, None), ("transition", 200, None), ("transition", 409, "invalid_transition"),
        ("heartbeat", 409, "version_conflict"), ("transition", 409, "version_conflict")}, Counter(
        (kind, status, code) for kind, status, code, _ in outcomes)
    accepted = [o for o in outcomes if o[1] == 200]
    assert sum(o[0] == "transition" for o in accepted) >= 2 and sum(o[0] == "heartbeat" for o in accepted) >= 8
    expected = of(*(sent[(o[3]["thread"], o[3]["round"])] for o in accepted))
    workflow = assert_event_log(api.store, tenant.account_id, wf)  # events' usage + pending == totals
    assert workflow.usage.total == expected and workflow.usage.by_role == {"Q_ASSISTANT": expected}
    assert this_month(api, tenant) == expected.view().model_dump()
    assert workflow.version == 1 + sum(o[0] == "transition" for o in accepted)

    # Every accepted request again, with its Idempotency-Key, all at once: replayed, nothing counted twice.
    def again(i: int) -> int:
        kind, _, _, info = accepted[i]
        thread, n = info["thread"], info["round"]
        headers = {"Idempotency-Key": f"t{thread}-r{n}"}
        if kind == "heartbeat":
            r = live.request("POST", f"/v1/workflows/{wf}/handoffs/{ho}/heartbeat", key=key, headers=headers,
                             body={"agent_id": q.agent_id, "usage": sent[(thread, n)]})
        else:
            r = live.request("POST", f"/v1/workflows/{wf}/transitions", key=key, headers=headers,
                             body={"to": info["to"], "agent_id": q.agent_id, "usage": [sent[(thread, n)]]})
        assert r.status == 200 and r.headers.get("Idempotent-Replayed") == "true", r.body
        return r.status

    together(len(accepted), again)
    assert assert_event_log(api.store, tenant.account_id, wf).usage.total == expected
    assert this_month(api, tenant) == expected.view().model_dump()


def test_racing_repeats_of_one_key_with_usage_count_it_once(api, tenant, live):
    wf = api.create(tenant)["id"]
    q, ho = claimed(api, tenant)
    key = tenant.agents[Q]

    def heartbeat(_: int) -> Any:
        return live.request("POST", f"/v1/workflows/{wf}/handoffs/{ho}/heartbeat", key=key,
                            headers={"Idempotency-Key": "hb-once"}, body={"agent_id": q.agent_id, "usage": PRICED})

    def transition(_: int) -> Any:
        return live.request("POST", f"/v1/workflows/{wf}/transitions", key=key, headers={"Idempotency-Key": "tr-once"},
                            body={"to": "PLANNING", "agent_id": q.agent_id, "usage": OWN_FIGURE})

    for race in (heartbeat, transition):
        answers = together(THREADS, race)
        assert {a.status for a in answers} == {200}, Counter((a.status, a.code) for a in answers)
        assert sum(a.headers.get("Idempotent-Replayed") != "true" for a in answers) == 1
    workflow = assert_event_log(api.store, tenant.account_id, wf)
    assert workflow.usage.total == of(PRICED, OWN_FIGURE) and workflow.version == 2
    assert this_month(api, tenant)["cost_usd"] == float(Decimal("0.046") + Decimal("0.125"))
