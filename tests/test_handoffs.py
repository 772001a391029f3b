"""Hand-offs and the agent work queue: created in the transition's commit, claimed under leases, heartbeats,
releases, lease_held / lease_lost, tenancy, long poll; every refusal writes nothing."""

from __future__ import annotations

import threading

import pytest

from shared.domain.state_machine import Role
from shared.services import accounts
from tests.agents import Agent
from tests.helpers import assert_event_log, assert_refused, cold_instance, snapshot_all, stored_workflow, used

Q, ARCH, DEV = Role.Q_ASSISTANT, Role.ARCHITECT, Role.DEVELOPER


def agent(api, tenant, role: Role, agent_id: str = "agent-1") -> Agent:
    return Agent(api, tenant.agents[role], agent_id)


def second_key(api, tenant, role: Role) -> str:
    return accounts.create_key(api.store, tenant.account_id, [role], name=f"second {role}")[0]


def handoffs(api, tenant, workflow_id: str) -> list[dict]:
    r = api.get(f"/v1/workflows/{workflow_id}/handoffs", tenant.owner)
    assert r.status == 200, r.body
    return r.body["handoffs"]



# ---- hand-offs follow the workflow ---------------------------------------------------------------------------------


def test_creating_a_workflow_hands_it_to_the_first_role(api, tenant):
    wf = api.create(tenant)
    [h] = handoffs(api, tenant, wf["id"])
    assert (h["from_role"], h["to_role"], h["from_state"], h["to_state"], h["seq"]) == (
        None, "Q_ASSISTANT", None, "DISCOVERY", 1)
    assert h["status"] == "PENDING" and h["attempts"] == 0 and h["artifacts"] == []
    assert wf["current_handoff"] == {"id": h["id"], "status": "PENDING", "claimed_by": None, "agent_id": None,
                                     "lease_expires_at": None, "usage": None}


def test_a_transition_hands_off_in_its_own_commit_still_two_rpcs(api, tenant):
    wf = api.create(tenant)
    first = wf["current_handoff"]["id"]
    q = tenant.agents[Q]
    used(api, q)
    cold_instance()

    api.store.rpcs.clear()
    r = api.post(f"/v1/workflows/{wf['id']}/transitions", {"to": "PLANNING", "note": "scoped"}, q)
    assert r.status == 200, r.body
    # one read of the key (auth, cold), then the transition's one batched read and one commit
    assert api.store.rpcs == {"get": 1, "batch_get": 1, "commit": 1}
    assert r.body["workflow"]["current_handoff"]["id"] == first  # within one role: the same hand-off stays open

    api.store.rpcs.clear()
    r = api.post(f"/v1/workflows/{wf['id']}/transitions", {"to": "DESIGN", "note": "the plan"}, q)
    assert r.status == 200, r.body
    assert api.store.rpcs == {"batch_get": 1, "commit": 1}  # the key is cached now
    newest, oldest = handoffs(api, tenant, wf["id"])
    assert oldest["id"] == first and oldest["status"] == "COMPLETED" and oldest["closed_seq"] == 3
    assert (newest["from_role"], newest["to_role"], newest["from_state"], newest["to_state"]) == (
        "Q_ASSISTANT", "ARCHITECT", "PLANNING", "DESIGN")
    assert newest["seq"] == 3 and newest["note"] == "the plan" and newest["status"] == "PENDING"
    assert r.body["workflow"]["current_handoff"]["id"] == newest["id"]
    assert stored_workflow(api.store, tenant.account_id, wf["id"]).current_handoff.id == newest["id"]


def test_a_final_state_cancels_the_open_handoff(api, tenant):
    wf = api.create(tenant)
    api.move(tenant, wf, "CANCELLED", key=tenant.owner)
    [h] = handoffs(api, tenant, wf["id"])
    assert h["status"] == "CANCELLED" and h["closed_seq"] == 2
    assert api.get(f"/v1/workflows/{wf['id']}", tenant.owner).body["current_handoff"] is None


def test_failed_cancels_and_a_rollback_opens_fresh_work(api, tenant):
    wf = api.create(tenant)
    for to in ("PLANNING", "DESIGN", "IMPLEMENTATION"):
        api.move(tenant, wf, to)
    api.move(tenant, wf, "FAILED")
    assert [h["status"] for h in handoffs(api, tenant, wf["id"])] == ["CANCELLED", "COMPLETED", "COMPLETED"]
    assert api.get(f"/v1/workflows/{wf['id']}", tenant.owner).body["current_handoff"] is None

    r = api.post(f"/v1/workflows/{wf['id']}/rollback", {"to_version": 3, "reason": "try the design again"},
                 tenant.owner)
    assert r.status == 200, r.body
    newest = handoffs(api, tenant, wf["id"])[0]
    assert (newest["from_state"], newest["to_state"], newest["to_role"], newest["note"], newest["status"]) == (
        "FAILED", "DESIGN", "ARCHITECT", "try the design again", "PENDING")
    assert r.body["workflow"]["current_handoff"]["id"] == newest["id"]

    # a rollback out of an active state cancels the open hand-off (even within one role) and opens a new one
    api.move(tenant, wf, "IMPLEMENTATION")
    r = api.post(f"/v1/workflows/{wf['id']}/rollback", {"to_version": 6, "reason": "again"}, tenant.owner)
    assert r.status == 200, r.body
    newest, cancelled = handoffs(api, tenant, wf["id"])[:2]
    assert cancelled["status"] == "CANCELLED" and cancelled["to_state"] == "IMPLEMENTATION"
    assert newest["to_state"] == "DESIGN" and newest["status"] == "PENDING"
    assert_event_log(api.store, tenant.account_id, wf["id"])


# ---- claims ------------------------------------------------------------------------------------------------------


def test_a_claim_is_one_query_and_one_commit_and_answers_with_the_workflow(api, tenant):
    wf = api.create(tenant, title="Shop")
    q = agent(api, tenant, Q, "q-1")
    used(api, tenant.agents[Q])
    cold_instance()
    api.store.rpcs.clear()
    r = q.claim(lease_seconds=120)
    assert r.status == 200, r.body
    assert api.store.rpcs == {"get": 1, "query": 1, "commit": 1}  # the key, then one query and one commit
    h, w = r.body["handoff"], r.body["workflow"]
    assert h["status"] == "CLAIMED" and h["agent_id"] == "q-1" and h["attempts"] == 1 and h["lease_seconds"] == 120
    assert w["id"] == wf["id"] and w["title"] == "Shop" and w["state"] == "DISCOVERY" and w["version"] == 1
    assert w["current_handoff"] == {"id": h["id"], "status": "CLAIMED", "claimed_by": h["claimed_by"],
                                    "agent_id": "q-1", "lease_expires_at": h["lease_expires_at"], "usage": None}
    assert [t["to"] for t in w["allowed_transitions"]] == ["PLANNING"]  # as this agent sees it
    # the workflow document says the same
    assert api.get(f"/v1/workflows/{wf['id']}", tenant.owner).body["current_handoff"] == w["current_handoff"]


def test_claims_are_fifo_by_creation_and_only_for_the_callers_roles(api, tenant):
    first, second, third = (api.create(tenant, title=t)["id"] for t in ("one", "two", "three"))
    api.move(tenant, second, "PLANNING")
    api.move(tenant, second, "DESIGN")  # now waits for an architect
    q = agent(api, tenant, Q)
    assert q.claim(expect=200).body["workflow"]["id"] == first
    assert q.claim(expect=200).body["workflow"]["id"] == third
    assert q.claim().status == 204
    assert agent(api, tenant, DEV).claim().status == 204
    assert agent(api, tenant, ARCH).claim(expect=200).body["workflow"]["id"] == second


def test_an_owner_claims_the_customers_review_by_default(api, tenant):
    wf = api.create(tenant)
    for to in ("PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING", "VERIFICATION", "REVIEW"):
        api.move(tenant, wf, to)
    owner = Agent(api, tenant.owner, "me")
    r = owner.claim(expect=200)
    assert r.body["handoff"]["to_role"] == "CUSTOMER" and r.body["workflow"]["state"] == "REVIEW"


def test_claiming_for_a_role_the_key_does_not_hold_is_forbidden(api, tenant):
    api.create(tenant)
    q = agent(api, tenant, Q)
    r = assert_refused(api, lambda: q.claim(roles=["Q_ASSISTANT", "DEVELOPER"]), 403, "forbidden")
    assert r.body["roles"] == ["DEVELOPER"]
    assert_refused(api, lambda: q.claim(roles=["CUSTOMER"]), 403, "forbidden")


@pytest.mark.parametrize("fields", [{"lease_seconds": 29}, {"lease_seconds": 3601}, {"wait_seconds": 21},
                                    {"roles": []}, {"roles": ["NOBODY"]}, {"agent_id": ""},
                                    {"agent_id": "has space"}, {"lease_seconds": "300"}, {"extra": 1}])
def test_invalid_claims_are_refused_and_write_nothing(api, tenant, fields):
    api.create(tenant)
    q = agent(api, tenant, Q)
    body = {"agent_id": "a", **fields}
    assert_refused(api, lambda: api.post("/v1/handoffs/claim", body, q.key), 422, "validation_error")


def test_a_repeated_claim_with_the_same_idempotency_key_gets_the_same_handoff(api, tenant):
    api.create(tenant)
    api.create(tenant)
    q = agent(api, tenant, Q)
    headers = {"Idempotency-Key": "claim-1"}
    first = api.post("/v1/handoffs/claim", {"agent_id": "a"}, q.key, headers=headers)
    again = api.post("/v1/handoffs/claim", {"agent_id": "a"}, q.key, headers=headers)
    assert first.status == again.status == 200
    assert again.body == first.body and again.headers.get("Idempotent-Replayed") == "true"
    other = q.claim(expect=200)
    assert other.body["handoff"]["id"] != first.body["handoff"]["id"]


def test_long_poll_answers_as_soon_as_work_arrives(api, tenant):
    q = agent(api, tenant, Q)
    assert q.claim(wait_seconds=1).status == 204  # nothing came: 204 once the wait is over
    answers: list = []
    waiting = threading.Thread(target=lambda: answers.append(q.claim(wait_seconds=20)))
    waiting.start()
    wf = api.create(tenant)
    waiting.join(timeout=30)
    assert not waiting.is_alive()
    [r] = answers
    assert r.status == 200 and r.body["workflow"]["id"] == wf["id"]


# ---- leases ------------------------------------------------------------------------------------------------------


def test_only_the_holder_or_an_owner_moves_a_claimed_workflow(api, tenant):
    wf = api.create(tenant)
    holder = agent(api, tenant, Q, "holder")
    holder.claim(expect=200)
    other_key = Agent(api, second_key(api, tenant, Q), "other")
    same_key_other_agent = agent(api, tenant, Q, "other")

    for intruder in (other_key, same_key_other_agent):
        r = assert_refused(api, lambda a=intruder: a.move(wf["id"], "PLANNING"), 409, "lease_held")
        assert r.body["agent_id"] == "holder" and r.body["handoff_id"] == wf["current_handoff"]["id"]
    assert_refused(api, lambda: api.post(f"/v1/workflows/{wf['id']}/transitions", {"to": "PLANNING"}, holder.key),
            409, "lease_held")  # the holder's key without its agent_id

    assert holder.move(wf["id"], "PLANNING").status == 200  # within the role: still the holder's
    assert holder.move(wf["id"], "DESIGN").status == 200
    architect = agent(api, tenant, ARCH)
    h = architect.claim(expect=200).body["handoff"]
    r = api.post(f"/v1/workflows/{wf['id']}/transitions", {"to": "IMPLEMENTATION"}, tenant.owner)
    assert r.status == 200, r.body  # an owner may always
    assert architect.heartbeat(wf["id"], h["id"]).code == "lease_lost"


def test_an_expired_lease_goes_back_to_the_queue_by_itself(api, tenant, clock):
    wf = api.create(tenant)
    crashed = agent(api, tenant, Q, "crashed")
    h = crashed.claim(expect=200, lease_seconds=60).body["handoff"]
    rescuer = Agent(api, second_key(api, tenant, Q), "rescuer")
    assert rescuer.claim().status == 204  # the lease is live

    clock.advance(61)
    r = rescuer.claim(expect=200)
    assert r.body["handoff"]["id"] == h["id"] and r.body["handoff"]["attempts"] == 2
    assert r.body["handoff"]["agent_id"] == "rescuer"

    assert_refused(api, lambda: crashed.heartbeat(wf["id"], h["id"]), 409, "lease_lost")
    assert_refused(api, lambda: crashed.release(wf["id"], h["id"]), 409, "lease_lost")
    assert_refused(api, lambda: crashed.move(wf["id"], "PLANNING"), 409, "lease_held")
    assert rescuer.move(wf["id"], "PLANNING").status == 200


def test_an_expired_lease_nobody_took_lets_anyone_of_the_role_move_on(api, tenant, clock):
    wf = api.create(tenant)
    agent(api, tenant, Q, "slow").claim(expect=200, lease_seconds=30)
    clock.advance(31)
    other = Agent(api, second_key(api, tenant, Q), "other")
    assert other.move(wf["id"], "PLANNING").status == 200


def test_heartbeats_keep_the_lease(api, tenant, clock):
    wf = api.create(tenant)
    worker = agent(api, tenant, Q, "worker")
    h = worker.claim(expect=200, lease_seconds=60).body["handoff"]
    other = Agent(api, second_key(api, tenant, Q), "other")
    for _ in range(3):
        clock.advance(45)
        r = worker.heartbeat(wf["id"], h["id"])
        assert r.status == 200, r.body
        assert r.body["lease_expires_at"] > h["lease_expires_at"] and r.body["attempts"] == 1
        assert other.claim().status == 204
    stored = api.get(f"/v1/workflows/{wf['id']}", tenant.owner).body["current_handoff"]
    assert stored["lease_expires_at"] == r.body["lease_expires_at"]

    r = worker.heartbeat(wf["id"], h["id"], lease_seconds=600)
    clock.advance(500)
    assert other.claim().status == 204
    clock.advance(101)  # ran out, but nobody took it: still the worker's to renew
    assert worker.heartbeat(wf["id"], h["id"]).status == 200
    assert_refused(api, lambda: other.heartbeat(wf["id"], h["id"]), 409, "lease_lost")
    assert_refused(api, lambda: worker.heartbeat(wf["id"], h["id"], lease_seconds=10), 422, "validation_error")


def test_release_puts_the_work_back_at_its_place_in_the_queue(api, tenant):
    older, newer = api.create(tenant)["id"], api.create(tenant)["id"]
    worker = agent(api, tenant, Q, "worker")
    h = worker.claim(expect=200).body["handoff"]
    assert h["workflow_id"] == older
    assert_refused(api, lambda: agent(api, tenant, Q, "nosy").release(older, h["id"]), 409, "lease_lost")

    r = worker.release(older, h["id"])
    assert r.status == 200, r.body
    assert r.body["status"] == "PENDING" and r.body["claimed_by"] is None and r.body["attempts"] == 1
    assert api.get(f"/v1/workflows/{older}", tenant.owner).body["current_handoff"]["status"] == "PENDING"
    assert_refused(api, lambda: worker.release(older, h["id"]), 409, "lease_lost")  # not claimed any more

    again = agent(api, tenant, Q, "next").claim(expect=200).body["handoff"]
    assert again["id"] == h["id"] and again["attempts"] == 2  # FIFO: before the newer workflow's
    assert newer != older


def test_a_release_note_is_kept_for_the_next_agent_until_the_next_release(api, tenant, clock):
    from shared.runtime import clock as product_clock
    from shared.services.handoffs import release_expired_leases

    wf = api.create(tenant)["id"]
    first = agent(api, tenant, Q, "first")
    h = first.claim(expect=200).body["handoff"]
    assert h["release_note"] is None
    r = first.release(wf, h["id"], note="I cannot reach the customer's site")
    assert r.status == 200 and r.body["release_note"] == "I cannot reach the customer's site"
    second = agent(api, tenant, Q, "second")
    assert second.claim(expect=200, lease_seconds=30).body["handoff"]["release_note"] == r.body["release_note"]
    clock.advance(31)
    assert release_expired_leases(api.store, now=product_clock.now()) == 1  # a lapsed lease keeps it
    third = agent(api, tenant, Q, "third")
    assert third.claim(expect=200).body["handoff"]["release_note"] == r.body["release_note"]
    assert third.release(wf, h["id"]).body["release_note"] is None  # a release without a note says nothing
    assert_refused(api, lambda: third.release(wf, h["id"], note="x" * 2001), 422, "validation_error")


def test_an_owner_may_release_anyones_claim(api, tenant):
    wf = api.create(tenant)
    h = agent(api, tenant, Q, "stuck").claim(expect=200).body["handoff"]
    r = Agent(api, tenant.owner, "ops").release(wf["id"], h["id"])
    assert r.status == 200 and r.body["status"] == "PENDING"


def test_heartbeat_and_release_of_a_closed_handoff_are_lease_lost(api, tenant):
    wf = api.create(tenant)
    worker = agent(api, tenant, Q, "w")
    h = worker.claim(expect=200).body["handoff"]
    api.move(tenant, wf, "CANCELLED", key=tenant.owner)
    r = assert_refused(api, lambda: worker.heartbeat(wf["id"], h["id"]), 409, "lease_lost")
    assert r.body["handoff_status"] == "CANCELLED"


# ---- tenancy -----------------------------------------------------------------------------------------------------


def test_handoffs_are_invisible_across_accounts(api, tenant, other_tenant):
    wf = api.create(tenant)
    h = agent(api, tenant, Q, "mine").claim(expect=200).body["handoff"]
    stranger = agent(api, other_tenant, Q, "mine")
    assert stranger.claim().status == 204  # never another account's work
    assert_refused(api, lambda: stranger.heartbeat(wf["id"], h["id"]), 404, "not_found")
    assert_refused(api, lambda: stranger.release(wf["id"], h["id"]), 404, "not_found")
    assert_refused(api, lambda: api.get(f"/v1/workflows/{wf['id']}/handoffs", other_tenant.owner), 404, "not_found")

    # a hand-off id under another workflow's path is not found either
    other_wf = api.create(tenant)
    assert_refused(api, lambda: agent(api, tenant, Q, "mine").heartbeat(other_wf["id"], h["id"]), 404, "not_found")


def test_list_handoffs_pages_newest_first(api, tenant):
    wf = api.create(tenant)
    for to in ("PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING", "IMPLEMENTATION", "TESTING"):
        api.move(tenant, wf, to)
    seen, token = [], None
    while True:
        r = api.get(f"/v1/workflows/{wf['id']}/handoffs", tenant.owner,
                    query={"limit": 2, **({"page_token": token} if token else {})})
        assert r.status == 200, r.body
        seen += [h["seq"] for h in r.body["handoffs"]]
        token = r.body["next_page_token"]
        if not token:
            break
    assert seen == [7, 6, 5, 4, 3, 1]
    assert_refused(api, lambda: api.get(f"/v1/workflows/{wf['id']}/handoffs", tenant.owner,
                                 query={"page_token": "nonsense"}), 422, "validation_error")


# ---- for the scheduled cleanup -----------------------------------------------------------------------------------


def test_release_expired_leases_returns_lapsed_claims_to_the_queue(api, tenant, clock):
    from shared.runtime import clock as product_clock
    from shared.services.handoffs import release_expired_leases

    lapsed, live = api.create(tenant)["id"], api.create(tenant)["id"]
    q = agent(api, tenant, Q, "a")
    assert q.claim(expect=200, lease_seconds=30).body["workflow"]["id"] == lapsed
    assert q.claim(expect=200, lease_seconds=600).body["workflow"]["id"] == live
    clock.advance(31)
    assert release_expired_leases(api.store, now=product_clock.now()) == 1
    views = {w: api.get(f"/v1/workflows/{w}", tenant.owner).body["current_handoff"] for w in (lapsed, live)}
    assert views[lapsed]["status"] == "PENDING" and views[lapsed]["claimed_by"] is None
    assert views[live]["status"] == "CLAIMED"


def test_a_repeated_release_or_heartbeat_with_its_idempotency_key_is_replayed(api, tenant):
    wf = api.create(tenant)
    worker = agent(api, tenant, Q, "w")
    h = worker.claim(expect=200).body["handoff"]
    path = f"/v1/workflows/{wf['id']}/handoffs/{h['id']}"
    beat = api.post(f"{path}/heartbeat", {"agent_id": "w"}, worker.key, headers={"Idempotency-Key": "hb-1"})
    assert beat.status == 200, beat.body
    first = api.post(f"{path}/release", {"agent_id": "w"}, worker.key, headers={"Idempotency-Key": "rel-1"})
    assert first.status == 200, first.body
    before = snapshot_all(api.store)
    again = api.post(f"{path}/release", {"agent_id": "w"}, worker.key, headers={"Idempotency-Key": "rel-1"})
    assert again.status == 200 and again.body == first.body and again.headers["Idempotent-Replayed"] == "true"
    assert snapshot_all(api.store) == before
    assert_refused(api, lambda: api.post(f"{path}/release", {"agent_id": "w"}, worker.key,
                                  headers={"Idempotency-Key": "hb-1"}), 422, "idempotency_key_reused")
