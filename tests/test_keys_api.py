"""API keys through the API over HTTP, against the emulator: created by an owner (the secret shown once and kept
nowhere), listed without secrets and with when each was last used, revoked at once."""

from __future__ import annotations

import json

import pytest

from shared.domain.state_machine import Role
from shared.services import members
from shared.services.auth import hash_key
from tests import firebase_support
from tests.helpers import assert_refused, cold_instance, ref, snapshot_all

firebase = firebase_support.firebase
KEYS = "/v1/keys"


def test_an_owner_creates_a_key_and_sees_its_secret_once(api, tenant):
    r = api.post(KEYS, {"name": "ci", "roles": ["TESTER", "DEVELOPER"]}, tenant.owner)
    assert r.status == 201, r.body
    created = r.body
    secret = created["api_key"]
    assert secret.startswith("qo_dev_") and created["prefix"] == secret[:12]
    assert (created["name"], created["roles"], created["revoked"], created["last_used_at"]) == (
        "ci", ["DEVELOPER", "TESTER"], False, None)
    assert created["created_by"].startswith("key_")
    assert api.get("/v1/workflows", secret).status == 200  # works at once
    # nothing anywhere holds the secret: the key's document is named by its hash
    everything = json.dumps(snapshot_all(api.store), default=str)
    assert secret not in everything and hash_key(secret) in everything
    listed = api.get(KEYS, tenant.owner).body["keys"]
    mine = [k for k in listed if k["id"] == created["id"]]
    assert mine and "api_key" not in mine[0] and all(set(k) == set(mine[0]) for k in listed)
    assert len(listed) == 1 + len(tenant.agents) + 1


def test_a_replayed_creation_shows_the_key_but_not_its_secret(api, tenant):
    h = {"Idempotency-Key": "key-1"}
    first = api.post(KEYS, {"name": "ci", "roles": ["TESTER"]}, tenant.owner, headers=h)
    again = api.post(KEYS, {"name": "ci", "roles": ["TESTER"]}, tenant.owner, headers=h)
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.body == {**first.body, "api_key": None}
    assert first.body["api_key"] not in json.dumps(snapshot_all(api.store), default=str)


def test_revoking_is_immediate_on_this_instance(api, tenant):
    secret = api.post(KEYS, {"name": "tmp", "roles": ["OWNER"]}, tenant.owner).body
    assert api.get("/v1/workflows", secret["api_key"]).status == 200  # cached now
    r = api.delete(f"{KEYS}/{secret['id']}", tenant.owner)
    assert r.status == 200 and r.body["revoked"] is True and r.body["revoked_at"]
    assert api.get("/v1/workflows", secret["api_key"]).code == "unauthenticated"
    again = api.delete(f"{KEYS}/{secret['id']}", tenant.owner)  # revoking again changes nothing
    assert again.body == r.body
    assert [k["revoked"] for k in api.get(KEYS, tenant.owner).body["keys"] if k["id"] == secret["id"]] == [True]


def test_a_key_may_revoke_itself(api, tenant):
    secret = api.post(KEYS, {"name": "self", "roles": ["OWNER"]}, tenant.owner).body
    assert api.delete(f"{KEYS}/{secret['id']}", secret["api_key"]).status == 200
    assert api.get(KEYS, secret["api_key"]).status == 401


def test_keys_are_the_owners_business_and_other_accounts_keys_are_404(api, tenant, other_tenant, firebase):
    other_key = api.get(KEYS, other_tenant.owner).body["keys"][0]["id"]
    own_key = api.get(KEYS, tenant.owner).body["keys"][0]["id"]
    assert_refused(api, lambda: api.delete(f"{KEYS}/{other_key}", tenant.owner), 404, "not_found")
    assert_refused(api, lambda: api.delete(f"{KEYS}/key_nope", tenant.owner), 404, "not_found")
    agent = tenant.agents[Role.DEVOPS]
    assert_refused(api, lambda: api.post(KEYS, {"roles": ["OWNER"]}, agent), 403, "forbidden")
    assert_refused(api, lambda: api.delete(f"{KEYS}/{own_key}", agent), 403, "forbidden")
    assert_refused(api, lambda: api.get(KEYS, agent), 403, "forbidden")
    # a person who owns the account manages keys; the key remembers who made it
    members.add_member(api.store, tenant.account_id, "olga", "olga@example.com", [Role.OWNER], by="test")
    olga = firebase.token("olga", "olga@example.com")
    made = api.post(KEYS, {"name": "from the dashboard", "roles": ["VERIFIER"]}, olga)
    assert made.status == 201 and made.body["created_by"] == "user:olga"


@pytest.mark.parametrize("roles", [[], ["CUSTOMER"], ["VIEWER", "TESTER"], ["NOBODY"], "OWNER"])
def test_key_roles_are_validated_and_refusals_write_nothing(api, tenant, roles):
    assert_refused(api, lambda: api.post(KEYS, {"roles": roles}, tenant.owner), 422, "validation_error")


# ---- last used ---------------------------------------------------------------------------------------------------


def test_last_used_is_written_at_most_once_an_hour_per_key(api, tenant, clock):
    secret = api.post(KEYS, {"name": "busy", "roles": ["OWNER"]}, tenant.owner).body
    key, key_id = secret["api_key"], secret["id"]

    def last_used() -> str | None:
        return next(k["last_used_at"] for k in api.get(KEYS, tenant.owner).body["keys"] if k["id"] == key_id)

    assert last_used() is None
    api.store.rpcs.clear()
    api.get("/v1/workflows", key)
    assert api.store.rpcs["commit"] == 1  # the first use is written...
    first = last_used()
    assert first is not None
    api.store.rpcs.clear()
    for _ in range(3):
        api.get("/v1/workflows", key)
        clock.advance(600)
    cold_instance()
    api.get("/v1/workflows", key)  # ...and not again within the hour, warm or cold
    assert api.store.rpcs["commit"] == 0 and last_used() == first
    clock.advance(1800)  # an hour and more since the first use
    api.get("/v1/workflows", key)
    assert last_used() > first


def test_a_refused_call_does_not_count_as_a_use(api, tenant):
    secret = api.post(KEYS, {"name": "refused", "roles": ["TESTER"]}, tenant.owner).body
    api.store.rpcs.clear()
    r = api.post("/v1/workflows", {"title": "t"}, secret["api_key"])
    assert r.code == "forbidden" and api.store.rpcs["commit"] == 0
    stored = ref(api.store, api.store.api_key(hash_key(secret["api_key"]))).get().to_dict()
    assert stored["last_used_at"] is None
