"""Index coverage. Firestore's rules as `tools.firestore_indexes` applies them; a scenario that runs every query path
of the product (so the check does not depend on which other tests ran) and finds each served by
`infra/firestore.indexes.json`; and proof that the check notices when an index is removed from the file."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from shared.adapters.firestore import QueryShape
from shared.domain.state_machine import Role
from shared.services import accounts, auth, cleanup, members
from tests import index_coverage
from tests.agents import Agent
from tests.helpers import ref
from tools.firestore_indexes import INDEXES_FILE, IndexFile, covered, need, uncovered

EMPTY = IndexFile([], [])


def shape(collection: str = "c", filters=(), order=(), group: bool = False) -> QueryShape:
    return QueryShape(collection, group, tuple(filters), tuple(order))


def composite(collection: str, *fields: tuple[str, str], scope: str = "COLLECTION") -> dict:
    return {"collectionGroup": collection, "queryScope": scope,
            "fields": [{"fieldPath": f, "arrayConfig": "CONTAINS"} if d == "CONTAINS" else {"fieldPath": f, "order": d}
                       for f, d in fields]}


# ---- the rules -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", [
    shape(),  # a whole collection
    shape(filters=[("a", "==")]),
    shape(filters=[("a", "=="), ("b", "=="), ("tags", "array_contains")]),  # equalities: single-field indexes merge
    shape(order=[("a", "DESCENDING")]),
    shape(filters=[("a", "<")], order=[("a", "ASCENDING")]),
    shape(filters=[("a", ">=")]),
    shape(order=[("a", "DESCENDING"), ("__name__", "DESCENDING")]),  # the tie-break in the same direction is implicit
    shape(order=[("__name__", "DESCENDING")]),
])
def test_served_by_the_automatic_single_field_indexes(query):
    assert covered(query, EMPTY)


@pytest.mark.parametrize("query, index", [
    (shape(filters=[("a", "==")], order=[("b", "DESCENDING")]),
     composite("c", ("a", "ASCENDING"), ("b", "DESCENDING"))),
    (shape(filters=[("a", "=="), ("b", "<")]), composite("c", ("a", "DESCENDING"), ("b", "ASCENDING"))),  # range orders
    (shape(filters=[("t", "array_contains")], order=[("u", "DESCENDING"), ("__name__", "DESCENDING")]),
     composite("c", ("t", "CONTAINS"), ("u", "DESCENDING"))),
    (shape(filters=[("b", "=="), ("a", "in")], order=[("u", "ASCENDING")]),  # equality fields in any order
     composite("c", ("a", "ASCENDING"), ("b", "ASCENDING"), ("u", "ASCENDING"))),
    (shape(order=[("a", "ASCENDING"), ("b", "DESCENDING")]), composite("c", ("a", "ASCENDING"), ("b", "DESCENDING"))),
    (shape(order=[("a", "DESCENDING"), ("__name__", "ASCENDING")]),  # a tie-break against the last direction
     composite("c", ("a", "DESCENDING"), ("__name__", "ASCENDING"))),
    (shape(filters=[("a", "=="), ("b", "<")], group=True),
     composite("c", ("a", "ASCENDING"), ("b", "ASCENDING"), scope="COLLECTION_GROUP")),
])
def test_needs_its_composite_index(query, index):
    assert need(query).kind == "composite"
    assert not covered(query, EMPTY)
    assert covered(query, IndexFile([index], []))
    assert covered(query, IndexFile.parse(need(query).suggestion())), "the suggested index serves it"


def test_a_composite_index_must_match_directions_scope_and_collection():
    query = shape(filters=[("a", "==")], order=[("b", "DESCENDING")])
    for wrong in (composite("c", ("a", "ASCENDING"), ("b", "ASCENDING")),
                  composite("c", ("a", "ASCENDING"), ("b", "DESCENDING"), scope="COLLECTION_GROUP"),
                  composite("other", ("a", "ASCENDING"), ("b", "DESCENDING")),
                  composite("c", ("b", "DESCENDING"), ("a", "ASCENDING")),
                  composite("c", ("a", "CONTAINS"), ("b", "DESCENDING"))):
        assert not covered(query, IndexFile([wrong], [])), wrong


def test_collection_group_queries_need_collection_group_scoped_indexes():
    query = shape("idempotency", filters=[("expires_at", "<")], order=[("expires_at", "ASCENDING")], group=True)
    assert need(query).kind == "single" and not covered(query, EMPTY)
    override = {"collectionGroup": "idempotency", "fieldPath": "expires_at",
                "indexes": [{"order": "ASCENDING", "queryScope": "COLLECTION_GROUP"}]}
    assert covered(query, IndexFile([], [override]))
    descending = {**override, "indexes": [{"order": "DESCENDING", "queryScope": "COLLECTION_GROUP"}]}
    assert not covered(query, IndexFile([], [descending]))
    assert need(query).suggestion() == {"fieldOverrides": [override]}
    assert covered(shape("idempotency", group=True), EMPTY)  # no filter, no order: the built-in name index


def test_an_exemption_removes_the_automatic_indexes_of_its_field():
    query = shape("workflows", filters=[("description", "==")])
    assert covered(query, EMPTY)
    exempt = IndexFile([], [{"collectionGroup": "workflows", "fieldPath": "description", "indexes": []}])
    assert not covered(query, exempt)


def test_the_session_check_fails_the_session_when_a_query_has_no_index(monkeypatch):
    monkeypatch.setattr(index_coverage, "RECORDED", {shape("nowhere", filters=[("a", "==")],
                                                           order=[("b", "ASCENDING")])})
    session = SimpleNamespace(exitstatus=0, config=SimpleNamespace(
        pluginmanager=SimpleNamespace(get_plugin=lambda name: None)))
    index_coverage.pytest_sessionfinish(session, 0)
    assert session.exitstatus == pytest.ExitCode.TESTS_FAILED


# ---- every query path of the product -------------------------------------------------------------------------------


def run_every_query_path(api, tenant) -> set[QueryShape]:
    """Issue each query the product can issue (every filter combination of every listing, the work queue, the
    admin command, every cleanup task) and return the shapes the store recorded."""
    store = api.store
    wf = api.create(tenant, labels={"team": "web"})
    api.move(tenant, wf, "PLANNING")
    for state in (None, "PLANNING"):
        for role in (None, "Q_ASSISTANT"):
            for label in (None, "team:web"):
                query = {k: v for k, v in {"state": state, "role": role, "label": label}.items() if v}
                first = api.get("/v1/workflows", tenant.owner, query={**query, "limit": 1})
                assert first.status == 200, first.body
                if first.body["next_page_token"]:
                    assert api.get("/v1/workflows", tenant.owner, query={
                        **query, "limit": 1, "page_token": first.body["next_page_token"]}).status == 200
    api.create(tenant)
    events = api.get(f"/v1/workflows/{wf['id']}/events", tenant.owner, query={"limit": 1})
    assert api.get(f"/v1/workflows/{wf['id']}/events", tenant.owner,
                   query={"limit": 1, "page_token": events.body["next_page_token"]}).status == 200
    agent = Agent(api, tenant.agents[Role.Q_ASSISTANT], "agent-1")
    claimed = agent.claim(expect=200, lease_seconds=30).body["handoff"]
    assert api.get(f"/v1/workflows/{claimed['workflow_id']}/handoffs", tenant.owner, query={"limit": 1}).status == 200
    assert api.get(f"/v1/workflows/{wf['id']}/artifacts", tenant.owner).status == 200
    key = accounts.list_keys(store, tenant.account_id)[-1]
    accounts.revoke_key(store, key.key_id)
    # people: the team's listings, and a person's invitations across accounts (GET /v1/me)
    assert api.post("/v1/members", {"email": "rita@example.com", "roles": ["VIEWER"]}, tenant.owner).status == 201
    assert api.get("/v1/members", tenant.owner).status == 200
    assert api.get("/v1/keys", tenant.owner).status == 200
    rita = auth.Person(uid="rita", email="rita@example.com", email_verified=True, expires_at=datetime.now(UTC))
    assert len(members.get_me(store, rita)["invitations"]) == 1
    # cleanup: something due for every task, so that every query (and every query inside a deletion) runs
    done = api.create(tenant)
    api.move(tenant, done, "CANCELLED", key=tenant.owner)
    ref(store, store.workflow(tenant.account_id, done["id"])).update(
        {"updated_at": datetime.now(UTC) - timedelta(days=400)})
    ref(store, store.workflow(tenant.account_id, wf["id"])).update(
        {"updated_at": datetime.now(UTC) - timedelta(days=400)})
    ref(store, store.stripe_event("evt_1")).set(
        {"type": "invoice.paid", "expires_at": datetime.now(UTC) - timedelta(days=1)})
    report = cleanup.run(store, now=datetime.now(UTC) + timedelta(hours=25))
    assert all(report.tasks[t].done for t in cleanup.TASKS), report.log_line()
    return set(store.queries)


def test_every_query_path_is_served_by_an_index_and_every_index_is_needed(api, tenant):
    shapes = run_every_query_path(api, tenant)
    assert len(shapes) >= 15
    assert uncovered(shapes) == []

    # Remove any one composite index, or any collection-group scope, from a copy of the file: the check fails.
    data = json.loads(INDEXES_FILE.read_text())
    for i, index in enumerate(data["indexes"]):
        without = copy.deepcopy(data)
        del without["indexes"][i]
        assert uncovered(shapes, IndexFile.parse(without)), f"nothing needs {index}"
    for i, override in enumerate(data["fieldOverrides"]):
        if any(x.get("queryScope") == "COLLECTION_GROUP" for x in override["indexes"]):
            without = copy.deepcopy(data)
            del without["fieldOverrides"][i]
            assert uncovered(shapes, IndexFile.parse(without)), f"nothing needs {override}"
    # And an exemption on a field a query needs is caught too.
    exempting = copy.deepcopy(data)
    exempting["fieldOverrides"].append({"collectionGroup": "api_keys", "fieldPath": "account_id", "indexes": []})
    assert uncovered(shapes, IndexFile.parse(exempting))
