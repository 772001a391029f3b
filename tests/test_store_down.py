"""The store goes away: every endpoint that needs it answers 503 `unavailable` with Retry-After, never a 500 and never
a hang past the client's timeout; once it is back, nothing partial is visible.

The product's Firestore client talks to the real emulator through a TCP proxy (tests/live.py) that the test cuts
(connections refused), black-holes (accepted, never answered: the deadline path) or makes deaf (requests delivered,
replies lost: the ambiguous commit). The cut can be timed to land just before any one of a request's store RPCs,
found by counting them, so every read and every commit of each endpoint is cut in turn. Outcomes are asserted, not
durations: the client gives each request CLIENT_TIMEOUT seconds, and running out of it fails the test.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from shared.adapters.firestore import Store, use_store
from shared.domain import members as people
from shared.domain.state_machine import Role
from shared.http.routes import ROUTES
from shared.services import members
from tests import firebase_support
from tests.helpers import Response, Tenant, assert_event_log, snapshot_all
from tests.live import LiveServer, TcpProxy, firestore_client_via

firebase = firebase_support.firebase  # fixture
STORE_TIMEOUT = 1.0  # the product's store deadline in these tests (QORCH_STORE_TIMEOUT_SECONDS-style)
CLIENT_TIMEOUT = 15.0  # the HTTP client's: a request that outlives it is a hang
MEMBER = "mia"  # an OWNER member of the tenant, made by the `people_of` fixture
INVITED = "ivan"  # invited to the tenant by email, not yet a member
DEVELOPER = "max"  # a DEVELOPER member of the tenant, whom the owner changes and removes


class Tripwire(Counter):
    """A drop-in for `Store.rpcs` that calls `action` just before the store's RPC number `at` (1-based, counted
    from arming) goes out. The store counts every RPC before making it, so no RPC can slip past."""

    def __init__(self) -> None:
        super().__init__()
        self.at: int | None = None
        self.action: Callable[[], None] | None = None
        self.seen = 0
        self.fired = False

    def arm(self, at: int, action: Callable[[], None]) -> None:
        self.at, self.action, self.seen, self.fired = at, action, 0, False

    def disarm(self) -> None:
        self.at = self.action = None

    def __setitem__(self, key: str, value: int) -> None:
        if self.at is not None:
            self.seen += 1
            if self.seen == self.at and self.action is not None:
                self.fired = True
                self.action()
        super().__setitem__(key, value)


@dataclass
class Outage:
    proxy: TcpProxy
    store: Store  # the product's store, through the proxy
    direct: Store  # the same project, straight to the emulator: what is really stored
    tripwire: Tripwire

    def back(self) -> None:
        """Restore the proxy and wait until the product's client is connected again: a read with a generous budget
        (gRPC reconnects with backoff after a failure)."""
        self.tripwire.disarm()
        self.proxy.restore()
        Store(self.store.client, timeout_seconds=30).get(self.store.account("warm-up"))


@pytest.fixture
def outage(emulator, project_id, store, monkeypatch) -> Iterator[Outage]:
    # Every call reads its key here (no per-instance key cache), so the key's read is one of the RPCs cut in turn.
    from shared.runtime.config import config

    monkeypatch.setenv("QORCH_KEY_CACHE_SECONDS", "0")
    config.cache_clear()
    proxy = TcpProxy(emulator.address)
    with firestore_client_via(proxy.address, project_id) as client:
        proxied = Store(client, timeout_seconds=STORE_TIMEOUT)
        proxied.rpcs = tripwire = Tripwire()
        proxied.get(proxied.account("warm-up"))  # connect while the store is up
        use_store(proxied)
        try:
            yield Outage(proxy, proxied, store, tripwire)
        finally:
            use_store(store)
            proxy.close()
            config.cache_clear()


def assert_unavailable(r: Response) -> None:
    assert (r.status, r.code) == (503, "unavailable"), (r.status, r.body)
    assert int(r.headers["Retry-After"]) > 0


def concrete(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "x1"), path)


# ---- every endpoint, with the store gone --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["cut", "blackhole"])
def test_every_endpoint_answers_503_while_the_store_is_down(api, tenant, live, outage, mode):
    wf = api.create(tenant)
    api.move(tenant, wf, "PLANNING")
    before = snapshot_all(outage.direct)
    getattr(outage.proxy, mode)()

    def call(route: Any) -> tuple[Any, Response]:
        path = concrete(route.path, {"workflow_id": wf["id"]})
        body = {} if route.writes else None
        return route, live.request(route.method, path, key=tenant.owner, body=body, timeout=CLIENT_TIMEOUT)

    with ThreadPoolExecutor(max_workers=len(ROUTES)) as pool:  # all at once: a hang anywhere shows
        answers = list(pool.map(call, ROUTES))

    for route, r in answers:
        if route.person_only:  # an API key is refused there before any store read
            assert (r.status, r.code) == (403, "forbidden"), (route.function, r.body)
        elif route.authenticated:
            assert_unavailable(r)
        else:  # the static documents need no store; the webhook refuses or asks Stripe to come back
            assert r.status != 500, (route.function, r.body)
            assert r.status < 500 or r.code in ("unavailable", "billing_not_configured"), (route.function, r.body)
    outage.back()
    assert snapshot_all(outage.direct) == before
    assert_event_log(outage.direct, tenant.account_id, wf["id"])
    assert live.request("GET", f"/v1/workflows/{wf['id']}", key=tenant.owner).status == 200, "served again"


# ---- every store RPC of each endpoint, cut in turn ----------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any = None
    headers: dict[str, str] | None = None
    ok: int = 200
    rpcs: int | None = None  # when not auth + one read (+ one commit for a POST)
    person: str | None = None  # a person's uid (who calls with their ID token) instead of the owner's key


def _calls(wf: str) -> dict[str, Call]:
    """A request per endpoint that succeeds when the store is up (each request is made last with no cut, which
    proves it). `wf` is at PLANNING, version 2."""
    return {
        "create_workflow": Call("POST", "/v1/workflows", {"title": "during an outage"}, ok=201),
        "create_workflow+idempotency": Call("POST", "/v1/workflows", {"title": "again"}, {"Idempotency-Key": "c1"},
                                            ok=201),
        "list_workflows": Call("GET", "/v1/workflows?state=PLANNING&limit=5"),
        "get_workflow": Call("GET", f"/v1/workflows/{wf}"),
        "transition_workflow": Call("POST", f"/v1/workflows/{wf}/transitions", {"to": "DESIGN", "note": "go"}),
        "transition_workflow+idempotency": Call("POST", f"/v1/workflows/{wf}/transitions",
                                                {"to": "DESIGN", "expected_version": 2}, {"Idempotency-Key": "t1"}),
        "transition_workflow+usage": Call("POST", f"/v1/workflows/{wf}/transitions",
                                          {"to": "DESIGN", "usage": [{"model": "claude-opus-5-5", "input_tokens": 10,
                                                                      "output_tokens": 20}]}),
        "rollback_workflow": Call("POST", f"/v1/workflows/{wf}/rollback", {"to_version": 1, "reason": "redo"}),
        "update_workflow": Call("PATCH", f"/v1/workflows/{wf}", {"title": "renamed", "max_cost_usd": 5}),
        "list_workflow_events": Call("GET", f"/v1/workflows/{wf}/events?limit=1"),
        "get_account": Call("GET", "/v1/account"),
        # people, members and keys: a key's call is auth + its read(s) + its commit; a person's token is verified
        # without the store (certificates from their URL), then their memberships are the auth read
        "create_key": Call("POST", "/v1/keys", {"name": "ci", "roles": ["TESTER"]}, ok=201),
        "list_keys": Call("GET", "/v1/keys"),
        "invite_member": Call("POST", "/v1/members", {"email": "ivy@example.com", "roles": ["VIEWER"]}, ok=201),
        "list_members": Call("GET", "/v1/members", rpcs=3),  # the members, then the invitations
        "update_member": Call("PATCH", f"/v1/members/{people.member_id(DEVELOPER)}", {"roles": ["VIEWER"]},
                              rpcs=3),
        "remove_member": Call("DELETE", f"/v1/members/{people.member_id(DEVELOPER)}", ok=204, rpcs=3),
        "get_me": Call("GET", "/v1/me", person=MEMBER, rpcs=3),  # person, their accounts' names, invitations
        "create_account": Call("POST", "/v1/accounts", {"name": "signed up"}, ok=201, person="newcomer", rpcs=2),
        "accept_invitation": Call("POST", "/v1/members/accept", {"account_id": ""}, person=INVITED, rpcs=2),
        "transition_workflow+member": Call("POST", f"/v1/workflows/{wf}/transitions", {"to": "DESIGN"},
                                           person=MEMBER),
    }


SCENARIOS = list(_calls("-"))


@pytest.fixture
def people_of(api, firebase) -> Callable[[Tenant], Callable[[str], str]]:
    """The tenant's people (MEMBER, an owner; DEVELOPER; INVITED, invited as a VIEWER), made with the store up;
    returns a token maker for a uid."""

    def make(tenant: Tenant) -> Callable[[str], str]:
        for uid, role in ((MEMBER, Role.OWNER), (DEVELOPER, Role.DEVELOPER)):
            members.add_member(api.store, tenant.account_id, uid, f"{uid}@example.com", [role], by="test")
        invited = api.post("/v1/members", {"email": f"{INVITED}@example.com", "roles": ["VIEWER"]}, tenant.owner)
        assert invited.status == 201, invited.body
        return lambda uid: firebase.token(uid, f"{uid}@example.com")

    return make


def cut_at_every_rpc(tenant: Tenant, live: LiveServer, outage: Outage, call: Call, fault: Callable[[], None],
                     watched: str, token: Callable[[str], str] | None = None) -> int:
    """Cut before RPC 1 of `call`, then before RPC 2, ... until the call makes no more RPCs than the cut point: then
    it ran whole and must succeed. Each cut answer is 503 and leaves the store exactly as it was. Returns the
    number of RPCs the call makes."""
    for at in range(1, 10):
        before = snapshot_all(outage.direct)
        outage.tripwire.arm(at, fault)
        credential = token(call.person) if call.person and token else tenant.owner
        body = {"account_id": tenant.account_id} if call.body == {"account_id": ""} else call.body
        r = live.request(call.method, call.path, key=credential, body=body, headers=call.headers,
                         timeout=CLIENT_TIMEOUT)
        fired = outage.tripwire.fired
        outage.back()
        if not fired:
            assert r.status == call.ok, (r.status, r.body)
            return at - 1
        assert_unavailable(r)
        assert snapshot_all(outage.direct) == before, f"RPC {at} cut: something was written"
        assert_event_log(outage.direct, tenant.account_id, watched)
    raise AssertionError(f"{call} kept making store RPCs")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_cut_before_any_rpc_writes_nothing(api, tenant, live, outage, people_of, scenario):
    wf = api.create(tenant)
    api.move(tenant, wf, "PLANNING")
    token = people_of(tenant)
    call = _calls(wf["id"])[scenario]
    rpcs = cut_at_every_rpc(tenant, live, outage, call, outage.proxy.cut, wf["id"], token)
    writes = call.method in ("POST", "PATCH")
    # Auth, then one read; a change adds its one commit. (Each of them was cut above.)
    assert rpcs == (call.rpcs or (3 if writes else 2)), rpcs
    assert_event_log(outage.direct, tenant.account_id, wf["id"])


@pytest.mark.parametrize("scenario", ["transition_workflow", "create_workflow"])
def test_a_store_that_stops_answering_hits_the_deadline_and_writes_nothing(api, tenant, live, outage, scenario):
    """Black-holed before each RPC: the read or the commit waits out the store deadline, then 503."""
    wf = api.create(tenant)
    api.move(tenant, wf, "PLANNING")
    call = _calls(wf["id"])[scenario]
    assert cut_at_every_rpc(tenant, live, outage, call, outage.proxy.blackhole, wf["id"]) == 3


def test_a_commit_whose_reply_is_lost_is_recovered_with_the_idempotency_key(api, tenant, live, outage):
    """The ambiguous case: the commit reaches the store and lands, the reply never comes back. The client hears 503
    (commits are not retried blind); retrying with the same Idempotency-Key returns the first answer, and the change
    is there once. Without the key, `expected_version` makes the retry a clean 409."""
    wf = api.create(tenant)
    api.move(tenant, wf, "PLANNING")
    path = f"/v1/workflows/{wf['id']}/transitions"
    body = {"to": "DESIGN", "expected_version": 2}
    headers = {"Idempotency-Key": "lost-reply"}

    outage.tripwire.arm(3, outage.proxy.deaf)  # auth, batched read, then the commit goes out to a deaf proxy
    r = live.request("POST", path, key=tenant.owner, body=body, headers=headers, timeout=CLIENT_TIMEOUT)
    assert outage.tripwire.fired
    assert_unavailable(r)
    outage.back()
    landed = assert_event_log(outage.direct, tenant.account_id, wf["id"])
    assert (landed.state, landed.version) == ("DESIGN", 3), "the commit landed although its reply was lost"

    again = live.request("POST", path, key=tenant.owner, body=body, headers=headers)
    assert again.status == 200 and again.headers.get("Idempotent-Replayed") == "true", again.body
    assert again.body["event"]["seq"] == 3
    blind = live.request("POST", path, key=tenant.owner, body=body)
    assert (blind.status, blind.code) == (409, "version_conflict")
    assert assert_event_log(outage.direct, tenant.account_id, wf["id"]).version == 3
