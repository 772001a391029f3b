"""16 agents, each with its own key, claim from 300 pending hand-offs at once over the HTTP edge: every hand-off is
claimed exactly once, and no agent is told "nothing" while any is left. Counted on the store, never timed."""

from __future__ import annotations

from collections import Counter

from shared.domain.models import HandoffStatus
from shared.domain.state_machine import Role
from shared.services import accounts
from tests.agents import Agent
from tests.helpers import Api, raw, ref, together

AGENTS = 16
HANDOFFS = 300


def pending_left(api: Api, account_id: str) -> int:
    return sum(1 for s in raw(api.store, api.store.handoffs(account_id)).stream()
               if s.get("status") == HandoffStatus.PENDING)


def test_sixteen_agents_race_for_three_hundred_handoffs(app, api, tenant):
    workflows = {api.create(tenant, title=f"job {i}")["id"] for i in range(HANDOFFS)}
    keys = [accounts.create_key(api.store, tenant.account_id, [Role.Q_ASSISTANT], name=f"agent {i}")[0]
            for i in range(AGENTS)]
    claims: dict[int, list[dict]] = {i: [] for i in range(AGENTS)}
    idle_with_work_left: list[int] = []
    api.store.rpcs.clear()

    def run(i: int) -> None:
        me = Agent(Api(app.test_client(), api.store), keys[i], f"agent-{i}")
        while True:
            r = me.claim(lease_seconds=3600)
            if r.status == 204:
                # told "nothing": then nothing may be pending (no one releases, so it stays so)
                if (left := pending_left(api, tenant.account_id)) != 0:
                    idle_with_work_left.append(left)
                return
            assert r.status == 200, r.body
            claims[i].append(r.body)

    together(AGENTS, run, timeout=600)

    got = [c["handoff"]["id"] for cs in claims.values() for c in cs]
    assert len(got) == HANDOFFS and len(set(got)) == HANDOFFS, "each hand-off claimed exactly once"
    assert {c["workflow"]["id"] for cs in claims.values() for c in cs} == workflows
    assert idle_with_work_left == [], "an agent was told there was no work while some was pending"
    assert all(claims.values()), {i: len(c) for i, c in claims.items()}  # every agent got work

    # the store agrees: each hand-off CLAIMED once, by the agent that was told it got it, and the workflow says so
    holders = {c["handoff"]["id"]: (c["handoff"]["claimed_by"], f"agent-{i}") for i, cs in claims.items() for c in cs}
    for snap in raw(api.store, api.store.handoffs(tenant.account_id)).stream():
        h = snap.to_dict()
        assert h["status"] == "CLAIMED" and h["attempts"] == 1
        assert (h["claimed_by"], h["agent_id"]) == holders[snap.id]
        current = ref(api.store, api.store.workflow(tenant.account_id, h["workflow_id"])).get().get("current_handoff")
        assert (current["id"], current["status"], current["agent_id"]) == (snap.id, "CLAIMED", h["agent_id"])

    rpcs = Counter(api.store.rpcs)
    lost = rpcs["commit"] - HANDOFFS
    print(f"\n{AGENTS} agents, {HANDOFFS} hand-offs: {rpcs['query']} queries, {rpcs['commit']} commits "
          f"({lost} lost races), {rpcs['commit'] / HANDOFFS:.2f} commits and {rpcs['query'] / HANDOFFS:.2f} "
          "queries per claim")
