"""`PATCH /v1/workflows/{id}`, the owner's change of a workflow's title, description, labels, max_retries and budget,
against the emulator: one UPDATED event per change listing each field's value before and after (the event-log
invariants, extended for it, hold after every test), nothing written when nothing changes, every refusal writes
nothing, an Idempotency-Key replays, and the open hand-off's copy of the workflow follows (a claim answers with it)."""

from __future__ import annotations

from collections import Counter

import pytest

from shared.domain.state_machine import Role
from tests.agents import Agent
from tests.helpers import assert_event_log, assert_refused, cold_instance, snapshot_all


def path(workflow_id: str) -> str:
    return f"/v1/workflows/{workflow_id}"


def test_the_owner_changes_fields_each_change_is_an_event(api, tenant):
    wf = api.create(tenant, labels={"team": "web"})
    r = api.patch(path(wf["id"]), {"title": "Hat shop", "labels": {"team": "shop", "tier": "gold"},
                                   "max_cost_usd": 12.5, "max_retries": 5}, tenant.owner)
    assert r.status == 200, r.body
    view, event = r.body["workflow"], r.body["event"]
    assert (view["title"], view["labels"], view["max_retries"], view["version"]) == (
        "Hat shop", {"team": "shop", "tier": "gold"}, 5, 2)
    assert view["budget"] == {"max_cost_usd": 12.5, "spent_usd": 0.0, "exhausted": False}
    assert (event["seq"], event["type"], event["from_state"], event["to_state"], event["playbook_version"]) == (
        2, "UPDATED", "DISCOVERY", "DISCOVERY", None)
    assert event["changes"] == {
        "labels": {"before": {"team": "web"}, "after": {"team": "shop", "tier": "gold"}},
        "max_cost_usd": {"before": None, "after": 12.5}, "max_retries": {"before": 3, "after": 5},
        "title": {"before": "Build a shop", "after": "Hat shop"}}
    assert api.get(path(wf["id"]), tenant.owner).body == view
    assert api.get("/v1/workflows?label=tier:gold", tenant.owner).body["workflows"][0]["id"] == wf["id"]
    # a field left out is kept; a value equal to the current one is no change
    r = api.patch(path(wf["id"]), {"description": "Sell hats.", "title": "Hat shop"}, tenant.owner)
    assert r.body["event"]["changes"] == {"description": {"before": "", "after": "Sell hats."}}
    workflow = assert_event_log(api.store, tenant.account_id, wf["id"])
    assert (workflow.version, workflow.title, workflow.description) == (3, "Hat shop", "Sell hats.")
    # the workflow's state is untouched: it moves on as before
    assert api.move(tenant, wf, "PLANNING").body["event"]["seq"] == 4


def test_a_patch_that_changes_nothing_writes_nothing(api, tenant):
    wf = api.create(tenant, max_cost_usd=3)
    before = snapshot_all(api.store)
    cold_instance()  # counted as on a fresh instance: the key's read is one of them
    api.store.rpcs.clear()
    r = api.patch(path(wf["id"]), {"title": wf["title"], "max_cost_usd": 3}, tenant.owner)
    assert r.status == 200 and r.body["event"] is None and r.body["workflow"]["version"] == 1
    assert snapshot_all(api.store) == before
    assert api.store.rpcs == Counter({"get": 1, "batch_get": 1})  # the key; the workflow: no commit


def test_a_patch_is_one_batched_read_and_one_commit(api, tenant):
    wf = api.create(tenant)
    cold_instance()  # counted as on a fresh instance: the key's read is one of them
    api.store.rpcs.clear()
    r = api.patch(path(wf["id"]), {"max_retries": 1}, tenant.owner, headers={"Idempotency-Key": "p-1"})
    assert r.status == 200, r.body
    assert api.store.rpcs == Counter({"get": 1, "batch_get": 1, "commit": 1})
    # the same key and body again: the first answer, nothing written
    before = snapshot_all(api.store)
    again = api.patch(path(wf["id"]), {"max_retries": 1}, tenant.owner, headers={"Idempotency-Key": "p-1"})
    assert again.headers.get("Idempotent-Replayed") == "true" and again.body == r.body
    assert snapshot_all(api.store) == before
    assert_refused(api, lambda: api.patch(path(wf["id"]), {"max_retries": 2}, tenant.owner,
                                          headers={"Idempotency-Key": "p-1"}), 422, "idempotency_key_reused")


@pytest.mark.parametrize("body", [
    {}, {"title": None}, {"labels": None}, {"max_retries": None}, {"title": ""}, {"title": "x" * 201},
    {"labels": {"Bad Key": "v"}}, {"max_retries": 11}, {"max_retries": "2"}, {"max_cost_usd": -0.01},
    {"max_cost_usd": "5"}, {"state": "COMPLETED"}, {"version": 9}, [], "title",
], ids=repr)
def test_a_bad_patch_is_refused_and_writes_nothing(api, tenant, body):
    wf = api.create(tenant)
    assert_refused(api, lambda: api.patch(path(wf["id"]), body, tenant.owner), 422, "validation_error")


def test_who_may_patch_and_what_refuses_it(api, tenant, other_tenant):
    wf = api.create(tenant, max_retries=2)
    for role in (Role.Q_ASSISTANT, Role.DEVELOPER):
        assert_refused(api, lambda k=tenant.agents[role]: api.patch(path(wf["id"]), {"max_cost_usd": 100}, k), 403,
                       "forbidden")
    assert_refused(api, lambda: api.patch(path(wf["id"]), {"title": "mine"}, other_tenant.owner), 404, "not_found")
    assert_refused(api, lambda: api.patch(path("wf_" + "0" * 32), {"title": "x"}, tenant.owner), 404, "not_found")
    assert_refused(api, lambda: api.patch(path(wf["id"]), {"title": "x"}), 401, "unauthenticated")
    for to in ("PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING", "IMPLEMENTATION"):  # one retry used
        api.move(tenant, wf, to)
    r = assert_refused(api, lambda: api.patch(path(wf["id"]), {"max_retries": 0}, tenant.owner), 422,
                       "validation_error")
    assert r.body["errors"] == [{"field": "max_retries", "message": "must be at least the workflow's retry_count (1)"}]
    assert api.patch(path(wf["id"]), {"max_retries": 1}, tenant.owner).status == 200  # no retry left, but valid


def test_the_open_handoffs_copy_follows_so_a_claim_answers_with_the_new_fields(api, tenant):
    wf = api.create(tenant)
    assert api.patch(path(wf["id"]), {"title": "Renamed", "max_cost_usd": 9}, tenant.owner).status == 200
    claim = Agent(api, tenant.agents[Role.Q_ASSISTANT], "q-1").claim(expect=200).body
    assert claim["workflow"] == api.get(path(wf["id"]), tenant.agents[Role.Q_ASSISTANT]).body
    assert claim["workflow"]["title"] == "Renamed" and claim["workflow"]["budget"]["max_cost_usd"] == 9
    # and while the hand-off is claimed, the owner's change does not disturb the lease
    assert api.patch(path(wf["id"]), {"labels": {"a": "b"}}, tenant.owner).status == 200
    current = api.get(path(wf["id"]), tenant.owner).body["current_handoff"]
    assert (current["status"], current["agent_id"]) == ("CLAIMED", "q-1")


def test_a_final_workflow_may_still_be_relabelled(api, tenant):
    wf = api.create(tenant)
    api.move(tenant, wf, "CANCELLED", key=tenant.owner)
    r = api.patch(path(wf["id"]), {"labels": {"archived": "yes"}}, tenant.owner)
    assert r.status == 200 and r.body["workflow"]["state"] == "CANCELLED" and r.body["event"]["seq"] == 3
