"""People as callers, over HTTP against the emulator: Firebase ID tokens (signed with the tests' key, verified by the
product's real code against certificates served on a local URL), memberships, the tenancy matrix for people, the
VIEWER role, and what a person's calls record."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from shared.domain import members as people
from shared.domain.state_machine import Role
from shared.http.routes import ROUTES
from shared.services import members
from tests import firebase_support
from tests.firebase_support import Firebase, SigningKey, b64
from tests.helpers import Api, assert_refused, cold_instance, snapshot_all

firebase = firebase_support.firebase
WF = "/v1/workflows"


def join(api: Api, firebase: Firebase, account_id: str, roles: list[Role], *, uid: str | None = None,
         email: str | None = None) -> str:
    """A person made a member of `account_id` with `roles`; their ID token."""
    uid = uid or f"uid-{uuid.uuid4().hex[:10]}"
    email = email or f"{uid}@example.com"
    members.add_member(api.store, account_id, uid, email, roles, by="test")
    return firebase.token(uid, email)


# ---- a token, verified completely --------------------------------------------------------------------------------


def test_a_member_signs_in_with_a_firebase_id_token(api, tenant, firebase):
    token = join(api, firebase, tenant.account_id, [Role.OWNER], uid="ann", email="ann@example.com")
    r = api.post(WF, {"title": "Shop"}, token)
    assert r.status == 201, r.body
    assert r.body["created_by"] == "user:ann"
    events = api.get(f"{WF}/{r.body['id']}/events", token).body["events"]
    assert (events[0]["actor"], events[0]["actor_email"]) == ("user:ann", "ann@example.com")
    moved = api.post(f"{WF}/{r.body['id']}/transitions", {"to": "PLANNING"}, token).body["event"]
    assert (moved["actor"], moved["actor_email"]) == ("user:ann", "ann@example.com")
    key_event = api.post(f"{WF}/{r.body['id']}/transitions", {"to": "DESIGN"}, tenant.owner).body["event"]
    assert key_event["actor"].startswith("key_") and key_event["actor_email"] is None


def test_the_certificates_are_fetched_once_and_kept_as_long_as_cache_control_allows(api, tenant, firebase, clock):
    token = join(api, firebase, tenant.account_id, [Role.VIEWER])
    firebase.server.max_age = 600
    for _ in range(4):
        assert api.get(WF, token).status == 200
    assert firebase.server.fetches == 1
    clock.advance(590)
    assert api.get(WF, token).status == 200
    assert firebase.server.fetches == 1
    clock.advance(20)  # past max-age: fetched again
    assert api.get(WF, token).status == 200
    assert firebase.server.fetches == 2


def test_a_rotated_key_is_accepted_once_the_certificates_are_fetched_again(api, tenant, firebase, clock):
    token = join(api, firebase, tenant.account_id, [Role.VIEWER], uid="rot")
    assert api.get(WF, token).status == 200
    new_key = SigningKey()
    firebase.server.publish(firebase.key, new_key)
    rotated = firebase.token("rot", "rot@example.com", key=new_key)
    assert api.get(WF, rotated).code == "unauthenticated"  # the kept certificates do not know it yet
    clock.advance(3601)
    assert api.get(WF, rotated).status == 200


def test_no_certificates_is_503_not_401(api, tenant, firebase):
    token = join(api, firebase, tenant.account_id, [Role.VIEWER])
    firebase.server.fail = True
    r = api.get(WF, token)
    assert (r.status, r.code) == (503, "unavailable") and r.headers["Retry-After"]


def _bad_tokens(firebase: Firebase) -> dict[str, str]:
    other = SigningKey(kid=firebase.key.kid)  # another key claiming Firebase's key id
    stranger = SigningKey()  # a key id nobody published
    good = firebase.token("mallory", "mallory@example.com")
    header, payload, signature = good.split(".")
    forged = firebase.token("root", "root@example.com")
    unsigned_payload = forged.split(".")[1]
    return {
        "expired": firebase.token("mallory", "mallory@example.com", iat=0, auth_time=0, exp=1000),
        "expired beyond the skew": firebase.token("mallory", "mallory@example.com",
                                                  exp=firebase.claims("m")["iat"] - 60),
        "wrong audience": firebase.token("mallory", "mallory@example.com", aud="another-project"),
        "wrong issuer": firebase.token("mallory", "mallory@example.com",
                                       iss="https://securetoken.google.com/another-project"),
        "google, not firebase, issuer": firebase.token("mallory", "mallory@example.com",
                                                       iss="https://accounts.google.com"),
        "signed by another key": firebase.token("mallory", "mallory@example.com", key=other),
        "signed by an unpublished key": firebase.token("mallory", "mallory@example.com", key=stranger),
        "no key id": firebase.token("mallory", "mallory@example.com", with_kid=False),
        "empty sub": firebase.token("", "mallory@example.com"),
        "sub too long": firebase.token("x" * 129, "mallory@example.com"),
        "no sub": firebase.token("mallory", "mallory@example.com", sub=None),
        "issued in the future": firebase.token("mallory", "mallory@example.com",
                                               iat=firebase.claims("m")["iat"] + 3600),
        "authenticated in the future": firebase.token("mallory", "mallory@example.com",
                                                      auth_time=firebase.claims("m")["iat"] + 3600),
        "no auth_time": firebase.token("mallory", "mallory@example.com", auth_time=None),
        "tampered payload": f"{header}.{unsigned_payload}.{signature}",
        "unsigned (alg none), as the Auth emulator's": b64({"alg": "none", "typ": "JWT"}) + f".{payload}.",
        "HS256 keyed with the certificate": b64({"alg": "HS256", "kid": firebase.key.kid, "typ": "JWT"})
                                            + f".{payload}." + "A" * 43,
        "ES256": b64({"alg": "ES256", "kid": firebase.key.kid, "typ": "JWT"}) + f".{payload}.{signature}",
        "garbage in a JWT's shape": "abcd.efgh.ijkl",
        "bad base64": "eyJh!!!.e30.e30",
    }


def test_a_token_that_fails_any_check_is_401_exactly_like_a_bad_key(api, tenant, firebase):
    join(api, firebase, tenant.account_id, [Role.OWNER], uid="mallory", email="mallory@example.com")
    join(api, firebase, tenant.account_id, [Role.OWNER], uid="root", email="root@example.com")
    bad_key = api.post(WF, {"title": "t"}, "qo_dev_" + "a" * 40)
    assert bad_key.status == 401
    before = snapshot_all(api.store)
    for name, token in _bad_tokens(firebase).items():
        for r in (api.post(WF, {"title": "t"}, token), api.get(WF, token), api.get("/v1/me", token)):
            assert (r.status, r.body) == (401, {**bad_key.body, "instance": r.body["instance"]}), name
            assert r.headers["WWW-Authenticate"] == bad_key.headers["WWW-Authenticate"], name
    assert snapshot_all(api.store) == before


def test_a_token_within_the_clock_skew_is_accepted(api, tenant, firebase):
    now = firebase.claims("m")["iat"] + 5
    token = join(api, firebase, tenant.account_id, [Role.VIEWER], uid="skew")
    assert api.get(WF, token).status == 200
    ahead = firebase.token("skew", "skew@example.com", iat=now + 8, auth_time=now + 8)
    assert api.get(WF, ahead).status == 200


def test_why_a_token_was_refused_is_logged_not_told(api, tenant, firebase, capsys):
    capsys.readouterr()
    r = api.get(WF, firebase.token("x", "x@example.com", aud="elsewhere"))
    assert r.status == 401 and "aud" not in r.body["detail"]
    line = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if '"unauthenticated"' in ln][-1]
    assert "wrong audience elsewhere" in line["auth_failure"]


# ---- memberships: which account, which roles ---------------------------------------------------------------------


def test_a_person_in_one_account_needs_no_header(api, tenant, firebase):
    token = join(api, firebase, tenant.account_id, [Role.OWNER])
    assert api.get("/v1/account", token).body["id"] == tenant.account_id


def test_a_person_in_several_accounts_picks_one_per_request(api, tenant, other_tenant, firebase):
    uid = "both"
    token = join(api, firebase, tenant.account_id, [Role.OWNER], uid=uid)
    join(api, firebase, other_tenant.account_id, [Role.VIEWER], uid=uid)
    r = api.get("/v1/account", token)
    assert (r.status, r.code) == (422, "validation_error")
    assert r.body["errors"][0]["field"] == "header:X-Qorch-Account"
    assert api.get("/v1/account", token, account=tenant.account_id).body["id"] == tenant.account_id
    assert api.get("/v1/account", token, account=other_tenant.account_id).body["id"] == other_tenant.account_id
    # the roles are the ones of the account chosen: OWNER here, VIEWER there
    assert api.post(WF, {"title": "t"}, token, account=tenant.account_id).status == 201
    assert api.post(WF, {"title": "t"}, token, account=other_tenant.account_id).code == "forbidden"
    me = api.get("/v1/me", token).body
    assert {(a["account_id"], a["account_name"], tuple(a["roles"])) for a in me["accounts"]} == {
        (tenant.account_id, "Acme", ("OWNER",)), (other_tenant.account_id, "Globex", ("VIEWER",))}


def test_an_account_the_person_is_not_in_is_403_and_an_api_key_ignores_the_header(api, tenant, other_tenant,
                                                                                   firebase):
    token = join(api, firebase, tenant.account_id, [Role.OWNER])
    for account in (other_tenant.account_id, "acct_nope", "not/an/id", "x" * 200):
        r = assert_refused(api, lambda a=account: api.post(WF, {"title": "t"}, token, account=a), 403, "forbidden")
        assert "not a member" in r.body["detail"]
    assert api.get("/v1/account", tenant.owner, account=other_tenant.account_id).body["id"] == tenant.account_id


def test_a_person_with_no_account_is_refused_until_they_join(api, firebase):
    token = firebase.token("lonely", "lonely@example.com")
    r = assert_refused(api, lambda: api.get(WF, token), 403, "forbidden")
    assert "POST /v1/accounts" in r.body["detail"]
    assert api.get("/v1/me", token).body == {"uid": "lonely", "email": "lonely@example.com", "email_verified": True,
                                             "accounts": [], "invitations": []}


def test_person_only_endpoints_refuse_api_keys(api, tenant):
    for call in (lambda: api.get("/v1/me", tenant.owner),
                 lambda: api.post("/v1/accounts", {"name": "x"}, tenant.owner),
                 lambda: api.post("/v1/members/accept", {"account_id": tenant.account_id}, tenant.owner)):
        assert_refused(api, call, 403, "forbidden")
    assert api.get("/v1/me").status == 401


# ---- the tenancy matrix for people --------------------------------------------------------------------------------


def test_a_member_of_one_account_gets_404_for_anothers_resources(api, tenant, other_tenant, firebase, s3):
    wf = api.create(other_tenant)
    handoff = wf["current_handoff"]["id"]
    owner_b = join(api, firebase, other_tenant.account_id, [Role.OWNER])
    member_b = api.get("/v1/members", owner_b).body["members"][0]["id"]
    key_b = api.get("/v1/keys", other_tenant.owner).body["keys"][0]["id"]
    token = join(api, firebase, tenant.account_id, [Role.OWNER])
    wid = wf["id"]
    before = snapshot_all(api.store)
    for method, path, body in [
        ("GET", f"{WF}/{wid}", None), ("GET", f"{WF}/{wid}/events", None), ("GET", f"{WF}/{wid}/handoffs", None),
        ("GET", f"{WF}/{wid}/artifacts", None), ("GET", f"{WF}/{wid}/artifacts/art_{'0' * 32}", None),
        ("POST", f"{WF}/{wid}/transitions", {"to": "PLANNING"}),
        ("POST", f"{WF}/{wid}/rollback", {"to_version": 1, "reason": "x"}),
        ("POST", f"{WF}/{wid}/handoffs/{handoff}/heartbeat", {"agent_id": "a"}),
        ("POST", f"{WF}/{wid}/handoffs/{handoff}/release", {"agent_id": "a"}),
        ("POST", f"{WF}/{wid}/artifacts", {"name": "a", "size_bytes": 1, "sha256": "0" * 64}),
        ("PATCH", f"/v1/members/{member_b}", {"roles": ["VIEWER"]}), ("DELETE", f"/v1/members/{member_b}", None),
        ("DELETE", f"/v1/keys/{key_b}", None),
    ]:
        r = api.request(method, path, key=token, body=body)
        assert (r.status, r.code) == (404, "not_found"), (method, path, r.body)
    assert api.get(WF, token).body["workflows"] == []
    assert snapshot_all(api.store) == before


def _fill(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path


ACCOUNT_ROUTES = [r for r in ROUTES if r.authenticated and not r.person_only]
WRITES = [r for r in ACCOUNT_ROUTES if r.method != "GET"]
READS = [r for r in ACCOUNT_ROUTES if r.method == "GET"]


@pytest.fixture
def viewer_world(api, tenant, firebase, s3):
    wf = api.create(tenant)
    data = b"spec"
    artifact = api.post(f"{WF}/{wf['id']}/artifacts", {"name": "spec.md", "size_bytes": len(data),
                                                        "sha256": hashlib.sha256(data).hexdigest()}, tenant.owner)
    assert artifact.status == 201, artifact.body
    token = join(api, firebase, tenant.account_id, [Role.VIEWER], uid="vera")
    owner = join(api, firebase, tenant.account_id, [Role.OWNER], uid="olga")
    ids = {"workflow_id": wf["id"], "handoff_id": wf["current_handoff"]["id"],
           "artifact_id": artifact.body["artifact"]["id"], "member_id": people.member_id("olga"),
           "key_id": api.get("/v1/keys", owner).body["keys"][0]["id"]}
    return token, ids


@pytest.mark.parametrize("route", WRITES, ids=lambda r: r.function)
def test_a_viewer_gets_403_on_every_write_and_nothing_is_written(api, viewer_world, route):
    token, ids = viewer_world
    r = assert_refused(api, lambda: api.request(route.method, _fill(route.path, ids), key=token,
                                                body={} if route.body else None), 403, "forbidden")
    assert "VIEWER" in r.body["detail"]


@pytest.mark.parametrize("route", READS, ids=lambda r: r.function)
def test_a_viewer_reads_everything_of_the_account(api, viewer_world, route):
    token, ids = viewer_world
    r = api.get(_fill(route.path, ids), token)
    assert r.status == 200, r.body


def test_the_viewer_matrix_covers_every_account_route():
    assert {r.function for r in WRITES} | {r.function for r in READS} == {r.function for r in ACCOUNT_ROUTES}
    assert len(WRITES) >= 15 and len(READS) >= 9


def test_a_viewer_api_key_is_read_only_too(api, tenant):
    secret = api.post("/v1/keys", {"name": "dashboard", "roles": ["VIEWER"]}, tenant.owner).body["api_key"]
    assert api.get(WF, secret).status == 200
    assert_refused(api, lambda: api.post(WF, {"title": "t"}, secret), 403, "forbidden")


# ---- a person's roles and removal take effect ---------------------------------------------------------------------


def test_a_person_with_an_agent_role_acts_in_that_role_only(api, tenant, firebase):
    wf = api.create(tenant)
    q = join(api, firebase, tenant.account_id, [Role.Q_ASSISTANT], uid="quinn")
    dev = join(api, firebase, tenant.account_id, [Role.DEVELOPER], uid="devi")
    assert_refused(api, lambda: api.post(f"{WF}/{wf['id']}/transitions", {"to": "PLANNING"}, dev), 403, "forbidden")
    r = api.post(f"{WF}/{wf['id']}/transitions", {"to": "PLANNING"}, q)
    assert r.status == 200 and r.body["event"]["actor"] == "user:quinn"
    # claims hold the person as the lease holder
    claimed = api.post("/v1/handoffs/claim", {"agent_id": "quinn-laptop"}, q)
    assert claimed.status == 200 and claimed.body["handoff"]["claimed_by"] == "user:quinn"


def test_a_removed_members_next_call_is_refused(api, tenant, firebase):
    owner = join(api, firebase, tenant.account_id, [Role.OWNER], uid="olga")
    token = join(api, firebase, tenant.account_id, [Role.OWNER], uid="gone")
    assert api.get(WF, token).status == 200  # cached now
    r = api.delete(f"/v1/members/{people.member_id('gone')}", owner)
    assert r.status == 204
    assert_refused(api, lambda: api.get(WF, token), 403, "forbidden")
    assert_refused(api, lambda: api.get(WF, token), 403, "forbidden")  # and stays so, cold or warm
    cold_instance()
    assert_refused(api, lambda: api.get(WF, token), 403, "forbidden")


def test_changed_roles_apply_on_the_next_call(api, tenant, firebase):
    owner = join(api, firebase, tenant.account_id, [Role.OWNER], uid="olga")
    token = join(api, firebase, tenant.account_id, [Role.OWNER], uid="demoted")
    assert api.post(WF, {"title": "t"}, token).status == 201
    r = api.patch(f"/v1/members/{people.member_id('demoted')}", {"roles": ["VIEWER"]}, owner)
    assert r.status == 200 and r.body["roles"] == ["VIEWER"]
    assert_refused(api, lambda: api.post(WF, {"title": "t"}, token), 403, "forbidden")
