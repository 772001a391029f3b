"""A budget per workflow, against the emulator: set on create or by the owner's PATCH; once the recorded cost reaches
it (to the nano-dollar), an agent's transition is 409 `budget_exhausted` and writes nothing, claims skip the
workflow's hand-off (it leaves the queue's index in the commit that spends the budget), heartbeats still record what
was spent; the owner may raise the budget (the hand-off is claimable again), cancel or roll back; the context says
what is left."""

from __future__ import annotations

from typing import Any

from shared.domain.state_machine import Role
from tests.agents import Agent
from tests.helpers import Api, Tenant, assert_refused, ref
from tests.test_usage import claimed

Q = Role.Q_ASSISTANT


def cost(usd: float) -> dict[str, Any]:
    return {"model": "agent-priced", "input_tokens": 1, "output_tokens": 1, "cost_usd": usd}


def budget(api: Api, tenant: Tenant, workflow_id: str) -> dict:
    return api.get(f"/v1/workflows/{workflow_id}", tenant.owner).body["budget"]


def in_queue(api: Api, tenant: Tenant, handoff_id: str) -> bool:
    """Whether the hand-off is in the work queue's index (it has `claimable_at`)."""
    data = ref(api.store, api.store.handoff(tenant.account_id, handoff_id)).get().to_dict()
    return "claimable_at" in data


def test_without_a_budget_nothing_is_refused(api, tenant):
    wf = api.create(tenant)
    assert wf["budget"] == {"max_cost_usd": None, "spent_usd": 0.0, "exhausted": False}
    q, _ = claimed(api, tenant)
    assert q.move(wf["id"], "PLANNING", usage=cost(1_000)).status == 200
    assert budget(api, tenant, wf["id"]) == {"max_cost_usd": None, "spent_usd": 1000.0, "exhausted": False}


def test_the_budget_at_its_boundary(api, tenant):
    wf = api.create(tenant, max_cost_usd=1)["id"]
    assert budget(api, tenant, wf) == {"max_cost_usd": 1.0, "spent_usd": 0.0, "exhausted": False}
    q, ho = claimed(api, tenant)
    assert q.move(wf, "PLANNING", usage=cost(0.999999999)).status == 200
    assert budget(api, tenant, wf) == {"max_cost_usd": 1.0, "spent_usd": 0.999999999, "exhausted": False}
    assert in_queue(api, tenant, ho)
    # the transition that reaches the budget is accepted with its usage: the money is spent
    r = q.move(wf, "DISCOVERY", usage=cost(0.000000001))
    assert r.status == 200 and r.body["workflow"]["budget"] == {"max_cost_usd": 1.0, "spent_usd": 1.0,
                                                                "exhausted": True}
    assert not in_queue(api, tenant, ho)  # left the queue in that same commit

    refused = assert_refused(api, lambda: q.move(wf, "PLANNING", usage=cost(0.1)), 409, "budget_exhausted")
    assert (refused.body["max_cost_usd"], refused.body["spent_usd"]) == (1.0, 1.0)
    # what is spent is still recorded: a heartbeat with usage is accepted and extends the lease
    r = q.heartbeat(wf, ho, usage=cost(0.25))
    assert r.status == 200 and r.body["usage"]["cost_usd"] == 0.25
    assert budget(api, tenant, wf)["spent_usd"] == 1.25
    # given back, nobody can claim it
    r = q.release(wf, ho, note="budget spent; the plan needs two more passes")
    assert r.status == 200 and r.body["status"] == "PENDING"
    assert r.body["release_note"] == "budget spent; the plan needs two more passes"
    other = Agent(api, tenant.agents[Q], "agent-2")
    assert other.claim(expect=204).status == 204
    assert not in_queue(api, tenant, ho)

    # The owner raises the budget: the hand-off is back in the queue, and agents may move the workflow again.
    r = api.patch(f"/v1/workflows/{wf}", {"max_cost_usd": 2}, tenant.owner)
    assert r.status == 200 and r.body["workflow"]["budget"] == {"max_cost_usd": 2.0, "spent_usd": 1.25,
                                                                "exhausted": False}
    assert in_queue(api, tenant, ho)
    claim = other.claim(expect=200).body
    assert claim["handoff"]["id"] == ho and claim["workflow"]["budget"]["exhausted"] is False
    assert other.move(wf, "PLANNING", usage=cost(0.75)).status == 200  # exactly 2.00 now: exhausted again
    assert budget(api, tenant, wf)["exhausted"] is True
    assert_refused(api, lambda: other.move(wf, "DISCOVERY"), 409, "budget_exhausted")


def test_a_heartbeat_that_spends_the_budget_takes_the_handoff_out_of_the_queue(api, tenant, clock):
    wf = api.create(tenant, max_cost_usd=0.5)["id"]
    q, ho = claimed(api, tenant)
    assert q.heartbeat(wf, ho, usage=cost(0.5), lease_seconds=60).status == 200
    assert budget(api, tenant, wf)["exhausted"] is True and not in_queue(api, tenant, ho)
    clock.advance(120)  # the lease ran out: without the budget, another agent could take the hand-off now
    assert Agent(api, tenant.agents[Q], "agent-2").claim(expect=204).status == 204


def test_the_owner_may_still_act_on_an_exhausted_workflow(api, tenant):
    wf = api.create(tenant, max_cost_usd=0.01)["id"]
    q, _ = claimed(api, tenant)
    assert q.move(wf, "PLANNING", usage=cost(0.02)).status == 200
    assert_refused(api, lambda: q.move(wf, "DESIGN"), 409, "budget_exhausted")
    # forward, as the owner may always do
    r = api.post(f"/v1/workflows/{wf}/transitions", {"to": "DESIGN"}, tenant.owner)
    assert r.status == 200, r.body
    opened = r.body["workflow"]["current_handoff"]["id"]
    assert not in_queue(api, tenant, opened)  # the architect's new hand-off is not offered either
    assert Agent(api, tenant.agents[Role.ARCHITECT], "a-1").claim(expect=204).status == 204
    # roll back
    r = api.post(f"/v1/workflows/{wf}/rollback", {"to_version": 2, "reason": "again"}, tenant.owner)
    assert r.status == 200, r.body
    assert not in_queue(api, tenant, r.body["workflow"]["current_handoff"]["id"])
    # cancel
    r = api.post(f"/v1/workflows/{wf}/transitions", {"to": "CANCELLED"}, tenant.owner)
    assert r.status == 200 and r.body["workflow"]["budget"]["exhausted"] is True


def test_lowering_the_budget_below_what_is_spent_exhausts_it(api, tenant):
    wf = api.create(tenant)["id"]
    q, ho = claimed(api, tenant)
    assert q.move(wf, "PLANNING", usage=cost(3)).status == 200
    r = api.patch(f"/v1/workflows/{wf}", {"max_cost_usd": 2.5}, tenant.owner)
    assert r.status == 200 and r.body["workflow"]["budget"]["exhausted"] is True
    assert not in_queue(api, tenant, ho)
    assert_refused(api, lambda: q.move(wf, "DESIGN"), 409, "budget_exhausted")
    r = api.patch(f"/v1/workflows/{wf}", {"max_cost_usd": None}, tenant.owner)  # no budget at all
    assert r.status == 200 and r.body["workflow"]["budget"] == {"max_cost_usd": None, "spent_usd": 3.0,
                                                                "exhausted": False}
    assert in_queue(api, tenant, ho)
    assert q.move(wf, "DESIGN").status == 200


def test_the_context_says_what_is_spent_and_what_is_left(api, tenant):
    wf = api.create(tenant, max_cost_usd=5)["id"]
    q, ho = claimed(api, tenant)
    assert q.heartbeat(wf, ho, usage=cost(1.25)).status == 200
    c = api.get(f"/v1/workflows/{wf}/context", q.key).body
    assert "- Budget left: 3.75 USD of 5.00 USD (1.25 USD spent); once it is spent, your transitions are refused " \
           "(budget_exhausted)" in c["instructions"]
    assert c["workflow"]["budget"] == {"max_cost_usd": 5.0, "spent_usd": 1.25, "exhausted": False}
    assert c["workflow"]["usage"]["by_role"]["Q_ASSISTANT"]["cost_usd"] == 1.25
    assert c["handoff"]["usage"]["cost_usd"] == 1.25  # reported, waiting for the hand-off's next event
    assert q.move(wf, "PLANNING", usage=cost(3.75)).status == 200
    c = api.get(f"/v1/workflows/{wf}/context", q.key).body
    assert "- Budget left: none: 5.00 USD of 5.00 USD spent. Your transitions are refused (budget_exhausted) until " \
           "the owner raises the budget: release the hand-off with a note" in c["instructions"]
    assert c["history"]["events"][0]["usage"]["total"]["cost_usd"] == 5.0
    assert q.release(wf, ho, note="out of budget").status == 200
    c = api.get(f"/v1/workflows/{wf}/context", q.key).body
    assert "An agent gave it back earlier, saying:\n> out of budget\n" in c["task"]


def test_a_budget_must_be_a_number_of_dollars(api, tenant):
    for bad in (-1, "5", 1e7, True):
        assert_refused(api, lambda b=bad: api.post("/v1/workflows", {"title": "x", "max_cost_usd": b}, tenant.owner),
                       422, "validation_error")
