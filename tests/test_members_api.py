"""Sign-up, invitations and members over HTTP, against the emulator (people sign in with tokens the tests sign)."""

from __future__ import annotations

import threading

import pytest

from shared.domain import members as people
from shared.domain.state_machine import Role
from shared.services import members
from tests import billing_support, firebase_support
from tests.helpers import assert_refused, raw, ref, snapshot_all, together

firebase = firebase_support.firebase
billing_env = billing_support.billing_env
MEMBERS = "/v1/members"


def owner_of(api, firebase, tenant, uid: str = "olga") -> str:
    members.add_member(api.store, tenant.account_id, uid, f"{uid}@example.com", [Role.OWNER], by="test")
    return firebase.token(uid, f"{uid}@example.com")


# ---- sign-up -----------------------------------------------------------------------------------------------------


def test_sign_up_makes_an_account_its_owner_and_no_entitlement(api, firebase, billing_env):
    token = firebase.token("sam", "Sam@Example.com")
    r = api.post("/v1/accounts", {"name": "Sam's shop"}, token)
    assert r.status == 201, r.body
    assert r.headers["Location"] == "/v1/account"
    account = r.body
    assert (account["name"], account["plan"], account["entitlement"]["entitled"]) == ("Sam's shop", "dev", False)
    assert api.get("/v1/account", token).body == account
    listed = api.get(MEMBERS, token).body
    assert [(m["uid"], m["email"], m["roles"], m["invited_by"]) for m in listed["members"]] == [
        ("sam", "sam@example.com", ["OWNER"], None)]
    # not entitled until it pays, through today's billing flow
    before = snapshot_all(api.store)
    assert api.post("/v1/workflows", {"title": "t"}, token).code == "payment_required"
    assert snapshot_all(api.store) == before
    assert api.post("/v1/billing/checkout-session", {"plan": "starter"}, token).status == 200
    assert api.get("/v1/me", token).body["accounts"] == [
        {"account_id": account["id"], "account_name": "Sam's shop", "roles": ["OWNER"]}]


def test_sign_up_is_for_people_with_a_verified_email_and_no_account(api, tenant, firebase):
    unverified = firebase.token("uma", "uma@example.com", verified=False)
    assert_refused(api, lambda: api.post("/v1/accounts", {"name": "x"}, unverified), 403, "email_not_verified")
    no_email = firebase.token("nemo")
    assert_refused(api, lambda: api.post("/v1/accounts", {"name": "x"}, no_email), 403, "email_not_verified")
    member = owner_of(api, firebase, tenant)
    r = assert_refused(api, lambda: api.post("/v1/accounts", {"name": "x"}, member), 409, "already_member")
    assert r.body["accounts"] == [tenant.account_id]
    assert_refused(api, lambda: api.post("/v1/accounts", {"name": ""}, member), 422, "validation_error")


def test_sign_up_twice_at_once_makes_one_account(api, firebase):
    token = firebase.token("twin", "twin@example.com")
    results = together(4, lambda i: api.post("/v1/accounts", {"name": f"try {i}"}, token))
    assert sorted(r.status for r in results) == [201, 409, 409, 409]
    assert len(list(api.store.client.collection("accounts").stream())) == 1


def test_sign_up_with_an_idempotency_key_replays(api, firebase):
    token = firebase.token("ida", "ida@example.com")
    first = api.post("/v1/accounts", {"name": "Ida"}, token, headers={"Idempotency-Key": "signup-1"})
    again = api.post("/v1/accounts", {"name": "Ida"}, token, headers={"Idempotency-Key": "signup-1"})
    assert first.status == again.status == 201 and first.body == again.body
    assert again.headers["Idempotent-Replayed"] == "true"
    # the record is the person's: another person with the same key is not replayed someone else's account
    other = api.post("/v1/accounts", {"name": "Ida"}, firebase.token("ivo", "ivo@example.com"),
                     headers={"Idempotency-Key": "signup-1"})
    assert other.status == 201 and other.body["id"] != first.body["id"]


# ---- invitations -------------------------------------------------------------------------------------------------


def test_an_invited_person_joins_by_accepting_with_their_verified_email(api, tenant, firebase):
    owner = owner_of(api, firebase, tenant)
    r = api.post(MEMBERS, {"email": " Rita@Example.COM ", "roles": ["TESTER", "DEVELOPER"]}, owner)
    assert r.status == 201, r.body
    invitation = r.body
    assert (invitation["email"], invitation["roles"], invitation["invited_by"], invitation["account_id"]) == (
        "rita@example.com", ["DEVELOPER", "TESTER"], "user:olga", tenant.account_id)
    assert invitation["id"] == people.invitation_id("rita@example.com")
    rita = firebase.token("rita", "rita@example.com")
    me = api.get("/v1/me", rita).body
    assert me["accounts"] == [] and [i["id"] for i in me["invitations"]] == [invitation["id"]]
    assert api.get(MEMBERS, owner).body["invitations"] == [invitation]

    r = api.post("/v1/members/accept", {"account_id": tenant.account_id}, rita)
    assert r.status == 200, r.body
    assert (r.body["id"], r.body["uid"], r.body["email"], r.body["roles"], r.body["invited_by"]) == (
        people.member_id("rita"), "rita", "rita@example.com", ["DEVELOPER", "TESTER"], "user:olga")
    listed = api.get(MEMBERS, owner).body
    assert listed["invitations"] == [] and {m["uid"] for m in listed["members"]} == {"olga", "rita"}
    assert api.get("/v1/workflows", rita).status == 200  # a member now
    assert api.get("/v1/me", rita).body["invitations"] == []
    # the invitation is spent
    assert_refused(api, lambda: api.post("/v1/members/accept", {"account_id": tenant.account_id}, rita),
                   404, "not_found")


def test_an_invitation_is_refused_to_an_unverified_or_different_email(api, tenant, firebase):
    owner = owner_of(api, firebase, tenant)
    api.post(MEMBERS, {"email": "rita@example.com", "roles": ["VIEWER"]}, owner)
    body = {"account_id": tenant.account_id}
    unverified = firebase.token("rita", "rita@example.com", verified=False)
    assert_refused(api, lambda: api.post("/v1/members/accept", body, unverified), 403, "email_not_verified")
    other = firebase.token("eve", "eve@example.com")
    assert_refused(api, lambda: api.post("/v1/members/accept", body, other), 404, "not_found")
    assert_refused(api, lambda: api.post("/v1/members/accept", {"account_id": "acct_nope"},
                                         firebase.token("rita", "rita@example.com")), 404, "not_found")
    assert api.get("/v1/workflows", other).code == "forbidden"


def test_accepting_when_already_a_member_is_409(api, tenant, firebase):
    owner = owner_of(api, firebase, tenant)
    api.post(MEMBERS, {"email": "olga@example.com", "roles": ["VIEWER"]}, owner)
    assert_refused(api, lambda: api.post("/v1/members/accept", {"account_id": tenant.account_id}, owner),
                   409, "already_member")


def test_inviting_again_replaces_and_an_invitation_can_be_withdrawn(api, tenant, firebase):
    owner = owner_of(api, firebase, tenant)
    first = api.post(MEMBERS, {"email": "rita@example.com", "roles": ["VIEWER"]}, owner).body
    second = api.post(MEMBERS, {"email": "RITA@example.com", "roles": ["TESTER"]}, owner).body
    assert first["id"] == second["id"] and second["roles"] == ["TESTER"]
    assert len(api.get(MEMBERS, owner).body["invitations"]) == 1
    assert api.delete(f"{MEMBERS}/{first['id']}", owner).status == 204
    assert api.get(MEMBERS, owner).body["invitations"] == []
    assert_refused(api, lambda: api.delete(f"{MEMBERS}/{first['id']}", owner), 404, "not_found")


@pytest.mark.parametrize("body, field", [
    ({"email": "not-an-email", "roles": ["VIEWER"]}, "email"),
    ({"email": "a@b.c", "roles": []}, "roles"),
    ({"email": "a@b.c", "roles": ["CUSTOMER"]}, "roles"),
    ({"email": "a@b.c", "roles": ["VIEWER", "OWNER"]}, "roles"),
    ({"email": "a@b.c", "roles": ["KING"]}, "roles.0"),
    ({"email": "a@b.c"}, "roles"),
    ({"email": "a@b.c", "roles": ["VIEWER"], "extra": 1}, "extra"),
])
def test_invitations_are_validated_and_refusals_write_nothing(api, tenant, firebase, body, field):
    owner = owner_of(api, firebase, tenant)
    r = assert_refused(api, lambda: api.post(MEMBERS, body, owner), 422, "validation_error")
    assert field in [e["field"] for e in r.body["errors"]]


def test_only_an_owner_invites_changes_or_removes(api, tenant, firebase):
    owner = owner_of(api, firebase, tenant)
    agent_person = firebase.token("ann", "ann@example.com")
    members.add_member(api.store, tenant.account_id, "ann", "ann@example.com", [Role.TESTER], by="test")
    olga = people.member_id("olga")
    for caller in (agent_person, tenant.agents[Role.TESTER]):
        assert_refused(api, lambda c=caller: api.post(MEMBERS, {"email": "x@y.z", "roles": ["VIEWER"]}, c),
                       403, "forbidden")
        assert_refused(api, lambda c=caller: api.patch(f"{MEMBERS}/{olga}", {"roles": ["VIEWER"]}, c),
                       403, "forbidden")
        assert_refused(api, lambda c=caller: api.delete(f"{MEMBERS}/{olga}", c), 403, "forbidden")
        assert_refused(api, lambda c=caller: api.get(MEMBERS, c), 403, "forbidden")
    # an owner API key manages people too
    assert api.post(MEMBERS, {"email": "x@y.z", "roles": ["VIEWER"]}, tenant.owner).body["invited_by"].startswith(
        "key_")
    assert api.get(MEMBERS, owner).status == 200


# ---- the last owner ----------------------------------------------------------------------------------------------


def test_the_last_owner_cannot_be_removed_or_demoted(api, tenant, firebase):
    owner = owner_of(api, firebase, tenant)
    me = people.member_id("olga")
    assert_refused(api, lambda: api.delete(f"{MEMBERS}/{me}", owner), 409, "last_owner")
    assert_refused(api, lambda: api.patch(f"{MEMBERS}/{me}", {"roles": ["VIEWER"]}, owner), 409, "last_owner")
    # with a second owner, either may go
    second = owner_of(api, firebase, tenant, "oscar")
    assert api.patch(f"{MEMBERS}/{me}", {"roles": ["VIEWER"]}, second).status == 200
    assert_refused(api, lambda: api.delete(f"{MEMBERS}/{people.member_id('oscar')}", second), 409, "last_owner")
    assert api.patch(f"{MEMBERS}/{me}", {"roles": ["OWNER"]}, second).body["roles"] == ["OWNER"]
    assert api.delete(f"{MEMBERS}/{people.member_id('oscar')}", owner).status == 204
    assert api.get(MEMBERS, owner).body["members"][0]["uid"] == "olga"


def test_two_owners_removing_each_other_at_once_leave_one(api, tenant, firebase, monkeypatch):
    olga, oscar = owner_of(api, firebase, tenant, "olga"), owner_of(api, firebase, tenant, "oscar")
    calls = [(olga, "oscar"), (oscar, "olga")]
    # Both read (after authenticating) before either commits: the race the account's precondition must settle. (Left
    # to the scheduler, one request could finish before the other authenticates: that one is then simply 403.)
    both_read, first = threading.Barrier(2), threading.local()
    get_many = api.store.get_many

    def read_then_wait(keys):
        found = get_many(keys)
        if not getattr(first, "done", False):
            first.done = True
            both_read.wait(timeout=60)
        return found

    monkeypatch.setattr(api.store, "get_many", read_then_wait)
    results = together(2, lambda i: api.delete(f"{MEMBERS}/{people.member_id(calls[i][1])}", calls[i][0]))
    assert sorted((r.status, r.code) for r in results) == [(204, None), (409, "last_owner")], [r.body for r in
                                                                                              results]
    left = ref(api.store, api.store.account(tenant.account_id)).get().to_dict()["owners"]
    assert len(left) == 1
    assert [m.id for m in raw(api.store, api.store.members(tenant.account_id)).stream()] == left


def test_member_ids_that_are_not_members_are_404(api, tenant, firebase):
    owner = owner_of(api, firebase, tenant)
    for member_id in ("mem_" + "0" * 32, "nobody", "inv_" + "0" * 32):
        assert_refused(api, lambda m=member_id: api.delete(f"{MEMBERS}/{m}", owner), 404, "not_found")
    assert_refused(api, lambda: api.patch(f"{MEMBERS}/inv_{'0' * 32}", {"roles": ["VIEWER"]}, owner),
                   404, "not_found")
