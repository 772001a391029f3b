"""Every workflow endpoint over HTTP (through the local router and the real entry points), against the emulator."""

from __future__ import annotations

import json

import pytest

from shared.domain.state_machine import Role
from shared.services import accounts
from tests.helpers import assert_event_log, snapshot_all

WF = "/v1/workflows"


# ---- create ------------------------------------------------------------------------------------------------------


def test_create_returns_the_workflow_with_location_and_event_1(api, tenant):
    r = api.post(WF, {"title": "Shop", "description": "A web shop", "labels": {"team": "web", "tier": "1"},
                      "max_retries": 2}, tenant.owner)
    assert r.status == 201
    wf = r.body
    assert r.headers["Location"] == f"{WF}/{wf['id']}"
    assert wf["id"].startswith("wf_") and len(wf["id"]) > 20
    assert (wf["state"], wf["role"], wf["version"], wf["retry_count"], wf["max_retries"], wf["final"]) == (
        "DISCOVERY", "Q_ASSISTANT", 1, 0, 2, False)
    assert wf["labels"] == {"team": "web", "tier": "1"}
    assert {t["to"] for t in wf["allowed_transitions"]} == {"PLANNING", "CANCELLED"}
    assert "account_id" not in wf
    events = api.get(f"{WF}/{wf['id']}/events", tenant.owner).body["events"]
    assert [(e["seq"], e["type"], e["from_state"], e["to_state"]) for e in events] == [
        (1, "CREATED", None, "DISCOVERY")]
    assert_event_log(api.store, tenant.account_id, wf["id"])


def test_ids_are_random(api, tenant):
    ids = {api.create(tenant)["id"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize("body, fields", [
    ({}, ["title"]),
    ({"title": ""}, ["title"]),
    ({"title": "x" * 201}, ["title"]),
    ({"title": "ok", "description": "d" * 20_001}, ["description"]),
    ({"title": "ok", "labels": {"Bad Key": "v"}}, ["labels.Bad Key.[key]"]),
    ({"title": "ok", "labels": {"k": "v" * 257}}, ["labels.k"]),
    ({"title": "ok", "labels": {f"k{i}": "v" for i in range(21)}}, ["labels"]),
    ({"title": "ok", "max_retries": 11}, ["max_retries"]),
    ({"title": "ok", "max_retries": "3"}, ["max_retries"]),
    ({"title": 5, "surprise": True}, ["title", "surprise"]),
    ([], ["(body)"]),
])
def test_create_validation_lists_each_bad_field_and_writes_nothing(api, tenant, body, fields):
    before = snapshot_all(api.store)
    r = api.post(WF, body, tenant.owner)
    assert r.status == 422 and r.code == "validation_error"
    assert sorted(e["field"] for e in r.body["errors"]) == sorted(fields)
    assert snapshot_all(api.store) == before


def test_malformed_json_and_oversized_bodies(api, tenant):
    before = snapshot_all(api.store)
    r = api.request("POST", WF, key=tenant.owner, data=b'{"title": ', headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.code == "malformed_json"
    r = api.request("POST", WF, key=tenant.owner, data=b"\xff\xfe", headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.code == "malformed_json"
    r = api.request("POST", WF, key=tenant.owner, data=b"[" * 50_000 + b"]" * 50_000)
    assert r.status == 400 and r.code == "malformed_json"
    r = api.request("POST", WF, key=tenant.owner, data=b'{"title": "\\ud800"}')
    assert r.status == 400 and r.code == "malformed_json"
    big = json.dumps({"title": "t", "description": "x" * (256 * 1024)})
    r = api.request("POST", WF, key=tenant.owner, data=big, headers={"Content-Type": "application/json"})
    assert r.status == 413 and r.code == "payload_too_large"
    assert snapshot_all(api.store) == before


def test_unauthenticated_requests_all_look_the_same(api, tenant):
    revoked, record = accounts.create_key(api.store, tenant.account_id, [Role.OWNER])
    accounts.revoke_key(api.store, record.key_id)
    before = snapshot_all(api.store)
    bodies = []
    for headers in [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer nope"},
                    {"Authorization": "Bearer qo_dev_" + "a" * 40}, {"Authorization": f"Bearer {revoked}"}]:
        r = api.request("POST", WF, body={"title": "t"}, headers=headers)
        assert r.status == 401 and r.code == "unauthenticated"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        bodies.append(r.body)
        assert api.get(WF, headers=headers).status == 401
    assert all(b == bodies[0] for b in bodies)
    assert snapshot_all(api.store) == before


def test_create_needs_an_entitled_account_and_an_owner_key(api, tenant):
    unpaid = api.tenant("Unpaid", entitled=False)
    before = snapshot_all(api.store)
    r = api.post(WF, {"title": "t"}, unpaid.owner)
    assert r.status == 402 and r.code == "payment_required"
    r = api.post(WF, {"title": "t"}, tenant.agents[Role.DEVELOPER])
    assert r.status == 403 and r.code == "forbidden"
    assert snapshot_all(api.store) == before


# ---- read, list, pagination --------------------------------------------------------------------------------------


def test_get_and_not_found(api, tenant):
    wf = api.create(tenant)
    r = api.get(f"{WF}/{wf['id']}", tenant.agents[Role.TESTER])
    assert r.status == 200 and r.body["id"] == wf["id"]
    assert r.body["allowed_transitions"] == []  # a TESTER cannot act in DISCOVERY
    assert api.get(f"{WF}/wf_doesnotexist", tenant.owner).code == "not_found"
    assert api.get(f"{WF}/bad.id", tenant.owner).code == "not_found"


def test_tenancy_every_endpoint_is_404_across_accounts(api, tenant, other_tenant):
    wf = api.create(tenant)
    before = snapshot_all(api.store)
    wid, key = wf["id"], other_tenant.owner
    assert api.get(f"{WF}/{wid}", key).status == 404
    assert api.get(f"{WF}/{wid}/events", key).status == 404
    assert api.post(f"{WF}/{wid}/transitions", {"to": "PLANNING"}, key).status == 404
    assert api.post(f"{WF}/{wid}/rollback", {"to_version": 1, "reason": "x"}, key).status == 404
    assert api.get(WF, key).body["workflows"] == []
    missing = api.get(f"{WF}/wf_00000000000000000000000000000000", key).body
    assert api.get(f"{WF}/{wid}", key).body["detail"] == missing["detail"]
    assert snapshot_all(api.store) == before


def test_list_filters_and_pagination(api, tenant):
    ids = [api.create(tenant, title=f"w{i}", labels={"team": "a" if i % 2 else "b"})["id"] for i in range(5)]
    api.move(tenant, ids[0], "PLANNING")  # now the most recently updated
    pages, token = [], None
    while True:
        r = api.get(WF, tenant.owner, query={"limit": 2, **({"page_token": token} if token else {})})
        assert r.status == 200
        pages.append([w["id"] for w in r.body["workflows"]])
        token = r.body["next_page_token"]
        if not token:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    flat = [i for p in pages for i in p]
    assert flat[0] == ids[0] and sorted(flat) == sorted(ids)
    assert [w["id"] for w in api.get(WF, tenant.owner, query={"state": "PLANNING"}).body["workflows"]] == [ids[0]]
    assert len(api.get(WF, tenant.owner, query={"role": "Q_ASSISTANT"}).body["workflows"]) == 5
    assert {w["id"] for w in api.get(WF, tenant.owner, query={"label": "team:a"}).body["workflows"]} == {
        ids[1], ids[3]}
    both = api.get(WF, tenant.owner, query={"state": "DISCOVERY", "label": "team:b"}).body["workflows"]
    assert {w["id"] for w in both} == {ids[2], ids[4]}


@pytest.mark.parametrize("query, field", [
    ({"limit": 0}, "query:limit"), ({"limit": 101}, "query:limit"), ({"limit": "x"}, "query:limit"),
    ({"state": "NOPE"}, "query:state"), ({"role": "KING"}, "query:role"), ({"label": "Bad"}, "query:label"),
    ({"colour": "red"}, "query:colour"), ({"page_token": "garbage"}, "query:page_token"),
])
def test_list_rejects_bad_queries(api, tenant, query, field):
    r = api.get(WF, tenant.owner, query=query)
    assert r.status == 422 and r.code == "validation_error"
    assert [e["field"] for e in r.body["errors"]] == [field]


def test_page_token_is_bound_to_its_filters(api, tenant):
    for _ in range(3):
        api.create(tenant)
    token = api.get(WF, tenant.owner, query={"limit": 1}).body["next_page_token"]
    r = api.get(WF, tenant.owner, query={"limit": 1, "state": "DISCOVERY", "page_token": token})
    assert r.status == 422 and r.body["errors"][0]["field"] == "query:page_token"


def test_events_pagination(api, tenant):
    wf = api.create(tenant)
    for to in ["PLANNING", "DISCOVERY", "PLANNING", "DESIGN"]:
        api.move(tenant, wf, to)
    seqs, token = [], None
    while True:
        r = api.get(f"{WF}/{wf['id']}/events", tenant.owner, query={"limit": 2, **({"page_token": token} if token
                                                                                    else {})})
        seqs += [e["seq"] for e in r.body["events"]]
        token = r.body["next_page_token"]
        if not token:
            break
    assert seqs == [1, 2, 3, 4, 5]


# ---- transitions and roles ---------------------------------------------------------------------------------------


def test_transition_returns_workflow_and_event(api, tenant):
    wf = api.create(tenant)
    r = api.move(tenant, wf, "PLANNING", reason="scope is clear", note="Customer wants a shop")
    assert r.body["workflow"]["state"] == "PLANNING" and r.body["workflow"]["version"] == 2
    ev = r.body["event"]
    assert (ev["seq"], ev["type"], ev["from_state"], ev["to_state"], ev["reason"], ev["note"]) == (
        2, "TRANSITIONED", "DISCOVERY", "PLANNING", "scope is clear", "Customer wants a shop")
    assert ev["actor"].startswith("key_")


def test_invalid_transition_lists_the_allowed_ones_and_writes_nothing(api, tenant):
    wf = api.create(tenant)
    before = snapshot_all(api.store)
    r = api.move(tenant, wf, "TESTING", key=tenant.owner, expect=409)
    assert r.code == "invalid_transition"
    assert sorted(r.body["allowed_transitions"]) == ["CANCELLED", "PLANNING"]
    r = api.move(tenant, wf, "FAILED", key=tenant.owner, expect=409)  # DISCOVERY cannot fail
    assert snapshot_all(api.store) == before


def test_agents_act_only_in_their_role_and_never_cancel(api, tenant):
    wf = api.create(tenant)
    before = snapshot_all(api.store)
    r = api.move(tenant, wf, "PLANNING", key=tenant.agents[Role.DEVELOPER], expect=403)
    assert r.code == "forbidden"
    r = api.move(tenant, wf, "CANCELLED", key=tenant.agents[Role.Q_ASSISTANT], expect=403)
    assert snapshot_all(api.store) == before
    api.move(tenant, wf, "PLANNING", key=tenant.agents[Role.Q_ASSISTANT])
    api.move(tenant, wf, "FAILED", key=tenant.agents[Role.Q_ASSISTANT])  # agents may give up
    assert_event_log(api.store, tenant.account_id, wf["id"])


def test_review_belongs_to_the_owner(api, tenant):
    wf = api.create(tenant)
    for to in ["PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING", "VERIFICATION", "REVIEW"]:
        api.move(tenant, wf, to)
    for role in Role:
        if role in tenant.agents:
            assert api.move(tenant, wf, "DEPLOYMENT", key=tenant.agents[role], expect=403).code == "forbidden"
    api.move(tenant, wf, "IMPLEMENTATION", key=tenant.owner)  # changes requested: not a retry
    got = api.get(f"{WF}/{wf['id']}", tenant.owner).body
    assert got["retry_count"] == 0


def test_owner_cancels_and_final_workflows_stay_final(api, tenant):
    wf = api.create(tenant)
    r = api.move(tenant, wf, "CANCELLED", key=tenant.owner, reason="changed my mind")
    assert r.body["workflow"]["final"] is True and r.body["workflow"]["allowed_transitions"] == []
    assert api.move(tenant, wf, "DISCOVERY", key=tenant.owner, expect=409).code == "invalid_transition"
    r = api.post(f"{WF}/{wf['id']}/rollback", {"to_version": 1, "reason": "undo"}, tenant.owner)
    assert r.status == 409 and r.code == "invalid_transition"


def test_retry_limit(api, tenant):
    wf = api.create(tenant, max_retries=1)
    for to in ["PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING", "IMPLEMENTATION", "TESTING"]:
        api.move(tenant, wf, to)
    got = api.get(f"{WF}/{wf['id']}", tenant.agents[Role.TESTER]).body
    assert got["retry_count"] == 1
    assert {t["to"] for t in got["allowed_transitions"]} == {"VERIFICATION", "FAILED"}
    before = snapshot_all(api.store)
    r = api.move(tenant, wf, "IMPLEMENTATION", expect=409)
    assert r.code == "retry_limit_exceeded" and set(r.body["allowed_transitions"]) == {"VERIFICATION", "FAILED"}
    assert snapshot_all(api.store) == before
    api.move(tenant, wf, "FAILED")
    assert_event_log(api.store, tenant.account_id, wf["id"])


def test_expected_version(api, tenant):
    wf = api.create(tenant)
    api.move(tenant, wf, "PLANNING", expected_version=1)
    before = snapshot_all(api.store)
    r = api.move(tenant, wf, "DESIGN", expected_version=1, expect=409)
    assert r.code == "version_conflict" and r.body["current_version"] == 2
    assert snapshot_all(api.store) == before


# ---- rollback ----------------------------------------------------------------------------------------------------


def test_rollback_resumes_a_failed_workflow(api, tenant):
    wf = api.create(tenant, max_retries=1)
    for to in ["PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING", "IMPLEMENTATION", "TESTING", "FAILED"]:
        api.move(tenant, wf, to)
    # version 4 is the event that entered IMPLEMENTATION
    r = api.post(f"{WF}/{wf['id']}/rollback", {"to_version": 4, "reason": "new approach"}, tenant.owner)
    assert r.status == 200
    assert (r.body["workflow"]["state"], r.body["workflow"]["retry_count"], r.body["workflow"]["version"]) == (
        "IMPLEMENTATION", 1, 9)
    ev = r.body["event"]
    assert (ev["type"], ev["from_state"], ev["to_state"], ev["retries_reset"]) == (
        "ROLLED_BACK", "FAILED", "IMPLEMENTATION", False)
    assert_event_log(api.store, tenant.account_id, wf["id"])
    r = api.post(f"{WF}/{wf['id']}/rollback", {"to_version": 2, "reason": "replan", "reset_retries": True},
                 tenant.owner)
    assert (r.body["workflow"]["state"], r.body["workflow"]["retry_count"]) == ("PLANNING", 0)
    assert_event_log(api.store, tenant.account_id, wf["id"])


def test_rollback_refusals_write_nothing(api, tenant):
    wf = api.create(tenant)
    for to in ["PLANNING", "FAILED"]:
        api.move(tenant, wf, to)
    url = f"{WF}/{wf['id']}/rollback"
    before = snapshot_all(api.store)
    r = api.post(url, {"to_version": 1, "reason": "x"}, tenant.agents[Role.Q_ASSISTANT])
    assert r.status == 403 and r.code == "forbidden"
    for to_version in (3, 4, 99):
        r = api.post(url, {"to_version": to_version, "reason": "x"}, tenant.owner)
        assert r.status == 422 and r.body["errors"][0]["field"] == "to_version"
    r = api.post(url, {"to_version": 1}, tenant.owner)
    assert r.status == 422 and r.body["errors"][0]["field"] == "reason"
    r = api.post(url, {"to_version": 0, "reason": "x"}, tenant.owner)
    assert r.status == 422
    assert snapshot_all(api.store) == before


# ---- idempotency -------------------------------------------------------------------------------------------------


def test_idempotent_create_and_transition(api, tenant):
    h = {"Idempotency-Key": "create-1"}
    first = api.post(WF, {"title": "Shop"}, tenant.owner, headers=h)
    again = api.post(WF, {"title": "Shop"}, tenant.owner, headers=h)
    assert (again.status, again.body) == (first.status, first.body)
    assert again.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
    assert len(api.get(WF, tenant.owner).body["workflows"]) == 1
    before = snapshot_all(api.store)
    r = api.post(WF, {"title": "Other"}, tenant.owner, headers=h)
    assert r.status == 422 and r.code == "idempotency_key_reused"
    assert snapshot_all(api.store) == before

    wid = first.body["id"]
    key = tenant.agents[Role.Q_ASSISTANT]
    h2 = {"Idempotency-Key": "move-1"}
    one = api.post(f"{WF}/{wid}/transitions", {"to": "PLANNING"}, key, headers=h2)
    two = api.post(f"{WF}/{wid}/transitions", {"to": "PLANNING"}, key, headers=h2)
    assert one.status == two.status == 200 and one.body == two.body
    wf = assert_event_log(api.store, tenant.account_id, wid)
    assert wf.version == 2
    r = api.post(f"{WF}/{wid}/rollback", {"to_version": 1, "reason": "x"}, tenant.owner, headers=h2)
    assert r.status == 422 and r.code == "idempotency_key_reused"


def test_idempotency_keys_are_scoped_to_the_account(api, tenant, other_tenant):
    h = {"Idempotency-Key": "same"}
    a = api.post(WF, {"title": "Shop"}, tenant.owner, headers=h)
    b = api.post(WF, {"title": "Shop"}, other_tenant.owner, headers=h)
    assert a.status == b.status == 201 and a.body["id"] != b.body["id"]
    assert "Idempotent-Replayed" not in b.headers


@pytest.mark.parametrize("value", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_bad_idempotency_keys(api, tenant, value):
    r = api.post(WF, {"title": "t"}, tenant.owner, headers={"Idempotency-Key": value})
    assert r.status == 422 and r.body["errors"][0]["field"] == "header:Idempotency-Key"


# ---- the rest ----------------------------------------------------------------------------------------------------


def test_method_not_allowed(api, tenant):
    r = api.request("DELETE", WF, key=tenant.owner)
    assert r.status == 405 and r.code == "method_not_allowed" and r.headers["Allow"] == "GET, POST"
    r = api.request("PUT", f"{WF}/wf_1/transitions", key=tenant.owner)
    assert r.status == 405 and r.headers["Allow"] == "POST"
    assert api.get("/v1/nothing-here").status == 404


def test_state_machine_endpoint_needs_no_key(api):
    r = api.get("/v1/state-machine")
    assert r.status == 200
    assert len(r.body["states"]) == 11 and len(r.body["transitions"]) == 28
    retry = [t for t in r.body["transitions"] if t["counts_as_retry"]]
    assert len(retry) == 3
    assert r.body["mermaid"].startswith("stateDiagram-v2")


def test_one_json_log_line_per_request_with_trace(api, tenant, capsys):
    capsys.readouterr()
    api.request("GET", WF, key=tenant.owner, headers={"X-Cloud-Trace-Context": "abc123/1;o=1"})
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(lines) == 1
    line = lines[0]
    assert line["severity"] == "INFO" and line["httpRequest"]["status"] == 200
    assert line["logging.googleapis.com/trace"] == "projects/qorch-test/traces/abc123"
    assert line["account_id"] == tenant.account_id and "latency_ms" in line
