"""What the tests share: an HTTP client with keys, tenants, and the event-log invariants."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.adapters.firestore import Collection, Key, Store
from shared.domain import workflow as domain
from shared.domain.models import Event, EventType, Handoff, Workflow
from shared.domain.pricing import Tally
from shared.domain.state_machine import AGENT_ROLES, Role, role_of
from shared.runtime.config import config
from shared.services import accounts, auth


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


@dataclass
class Tenant:
    account_id: str
    owner: str
    agents: dict[Role, str] = field(default_factory=dict)

    def key_for(self, role: Role | None) -> str:
        return self.owner if role in (None, Role.CUSTOMER, Role.OWNER) else self.agents[role]


class Api:
    def __init__(self, client: Any, store: Store) -> None:
        self.client = client
        self.store = store

    def tenant(self, name: str, *, entitled: bool = True, plan: str = "dev") -> Tenant:
        account = accounts.create_account(self.store, name, plan=plan, entitled=entitled)
        owner, _ = accounts.create_key(self.store, account.id, [Role.OWNER], name="owner")
        agents = {role: accounts.create_key(self.store, account.id, [role], name=role.value)[0]
                  for role in AGENT_ROLES}
        return Tenant(account.id, owner, agents)

    def request(self, method: str, path: str, *, key: str | None = None, body: Any = None,
                data: bytes | str | None = None, headers: dict[str, str] | None = None,
                query: dict[str, Any] | None = None, account: str | None = None) -> Response:
        """`key`: an API key or a person's ID token; `account`: the X-Qorch-Account header."""
        hdrs = dict(headers or {})
        if key:
            hdrs["Authorization"] = f"Bearer {key}"
        if account:
            hdrs["X-Qorch-Account"] = account
        if body is not None:
            data = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        r = self.client.open(path, method=method, data=data, headers=hdrs, query_string=query)
        text = r.get_data(as_text=True)
        parsed = json.loads(text) if text and r.mimetype in ("application/json", "application/problem+json") \
            else text
        if r.status_code >= 400:
            assert r.mimetype == "application/problem+json", (r.status_code, text)
            assert parsed["status"] == r.status_code and parsed["code"], parsed
        return Response(r.status_code, dict(r.headers), parsed)

    def get(self, path: str, key: str | None = None, **kw: Any) -> Response:
        return self.request("GET", path, key=key, **kw)

    def post(self, path: str, body: Any = None, key: str | None = None, **kw: Any) -> Response:
        return self.request("POST", path, key=key, body=body, **kw)

    def patch(self, path: str, body: Any = None, key: str | None = None, **kw: Any) -> Response:
        return self.request("PATCH", path, key=key, body=body, **kw)

    def delete(self, path: str, key: str | None = None, **kw: Any) -> Response:
        return self.request("DELETE", path, key=key, **kw)

    # ---- workflow shortcuts -------------------------------------------------------------------------------

    def create(self, tenant: Tenant, **fields: Any) -> dict:
        r = self.post("/v1/workflows", {"title": "Build a shop", **fields}, tenant.owner)
        assert r.status == 201, r.body
        return r.body

    def move(self, tenant: Tenant, workflow: dict | str, to: str, *, key: str | None = None,
             expect: int = 200, **fields: Any) -> Response:
        wid = workflow if isinstance(workflow, str) else workflow["id"]
        if key is None:
            current = self.get(f"/v1/workflows/{wid}", tenant.owner).body
            key = tenant.key_for(Role(current["role"]) if current["role"] else None)
        r = self.post(f"/v1/workflows/{wid}/transitions", {"to": to, **fields}, key)
        assert r.status == expect, r.body
        return r


def cold_instance() -> None:
    """As if the next call reached a fresh instance: its key (or person) is read again, not taken from the cache."""
    auth.forget_all()


def used(api: Api, key: str) -> None:
    """One call with `key`, so that its last-used time (written at most once an hour) is already written and later
    RPC counts are exact."""
    assert api.get("/v1/account", key).status == 200


def ref(store: Store, key: Key) -> Any:
    """The Firestore document behind a store key, for tests that arrange or inspect data behind the product's back
    (no RPC is counted on the store)."""
    return store.client.document(key.path)


def raw(store: Store, collection: Collection) -> Any:
    """The Firestore collection behind a store collection (as `ref`)."""
    return store.client.collection(collection.path)


def stored_workflow(store: Store, account_id: str, workflow_id: str) -> Workflow:
    return Workflow.model_validate(store.get(store.workflow(account_id, workflow_id)).data)


def stored_events(store: Store, account_id: str, workflow_id: str) -> list[Event]:
    snaps = raw(store, store.events(account_id, workflow_id)).order_by("seq").stream()
    return [Event.model_validate(s.to_dict()) for s in snaps]


def assert_event_log(store: Store, account_id: str, workflow_id: str) -> Workflow:
    """The three invariants: events == version, seq is 1..version without gaps, replay reproduces the workflow.
    And what the log says of the rest: each field an UPDATED event changed has the value its last change left, each
    change starting from the one before; the usage of the events plus what the open hand-off holds for its next
    event is the workflow's totals, overall and per role; a playbook version is that of the role acted in."""
    workflow = stored_workflow(store, account_id, workflow_id)
    events = stored_events(store, account_id, workflow_id)
    assert len(events) == workflow.version
    assert [e.seq for e in events] == list(range(1, workflow.version + 1))
    assert domain.replay(events) == (workflow.state, workflow.role, workflow.retry_count)

    last: dict[str, Any] = {}
    used, by_role = Tally(), {}
    for event in events:
        if event.type is EventType.UPDATED:
            assert event.from_state == event.to_state and event.changes, event
            for name, change in event.changes.items():
                assert change.before != change.after and last.get(name, change.before) == change.before, event
                last[name] = change.after
        else:
            assert event.changes is None, event
        if event.usage is not None:
            assert event.usage.role is role_of(event.from_state), event
            tally = Tally.of_view(event.usage.total)
            assert tally == Tally.of(event.usage.calls) + Tally.of_view(event.usage.heartbeats), event
            used, by_role[event.usage.role.value] = used + tally, by_role.get(event.usage.role.value, Tally()) + tally
        if event.playbook_version is not None:
            assert event.playbook_version == config().playbooks.for_role(role_of(event.from_state)).version, event
    assert {name: getattr(workflow, name) for name in last} == last
    current = workflow.current_handoff
    if current is not None and current.usage is not None:
        handoff = Handoff.model_validate(ref(store, store.handoff(account_id, current.id)).get().to_dict())
        assert handoff.usage == current.usage and workflow.role is handoff.to_role
        pending = Tally.of_view(current.usage)
        used, by_role[handoff.to_role.value] = used + pending, by_role.get(handoff.to_role.value, Tally()) + pending
    assert workflow.usage.total == used
    assert {r: t for r, t in workflow.usage.by_role.items() if t} == {r: t for r, t in by_role.items() if t}
    return workflow


def count_documents(store: Store) -> int:
    """Every document in the test's project, all collections deep: the 'nothing was written' check."""
    def walk(collections: Any) -> int:
        total = 0
        for col in collections:
            for doc in col.list_documents():
                snap = doc.get()
                total += 1 if snap.exists else 0
                total += walk(doc.collections())
        return total

    return walk(store.client.collections())


def snapshot_all(store: Store) -> dict[str, dict]:
    """Path → data of every document in the project. Except an API key's `last_used_at`: bookkeeping of the calls
    themselves, written after a successful call at most once an hour (that a refused call does not write it is
    tests/test_keys_api.py's business)."""
    out: dict[str, dict] = {}

    def walk(collections: Any) -> None:
        for col in collections:
            for doc in col.list_documents():
                snap = doc.get()
                if snap.exists:
                    data = snap.to_dict()
                    if col.id == "api_keys":
                        data.pop("last_used_at", None)
                    out[doc.path] = data
                walk(doc.collections())

    walk(store.client.collections())
    return out


def assert_refused(api: Api, call: Any, status: int, code: str) -> Response:
    """`call()` is refused with `status`/`code`, and nothing in the store changed."""
    before = snapshot_all(api.store)
    r = call()
    assert (r.status, r.code) == (status, code), r.body
    assert snapshot_all(api.store) == before
    return r


def together(count: int, work: Callable[[int], Any], *, timeout: float = 300) -> list[Any]:
    """Run `work(0) .. work(count-1)` in `count` threads released at once (a barrier); their results, by index.
    A thread's exception fails the calling test (it would otherwise vanish with its thread)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a racing thread never finished"
    if errors:
        raise errors[0]
    return results
