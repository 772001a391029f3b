"""The per-instance cache of API key (and membership) lookups, counted in RPCs, with time moved by the one clock
(the `clock` fixture), never slept."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from shared.domain.state_machine import Role
from shared.runtime import clock as product_clock
from shared.runtime.cache import TtlLru
from shared.runtime.config import config
from shared.services import accounts, auth, members
from shared.services.auth import hash_key
from tests import firebase_support
from tests.helpers import cold_instance, ref, used

firebase = firebase_support.firebase
TTL = 5.0  # the default


@pytest.fixture
def ttl(monkeypatch):
    """Set QORCH_KEY_CACHE_SECONDS for the test (its default, 5, when not called)."""
    def set_ttl(seconds: float) -> None:
        monkeypatch.setenv("QORCH_KEY_CACHE_SECONDS", str(seconds))
        config.cache_clear()

    yield set_ttl
    config.cache_clear()


def transition(api, key: str, wid: str, to: str):
    r = api.post(f"/v1/workflows/{wid}/transitions", {"to": to}, key)
    assert r.status == 200, r.body
    return r


def test_the_default_ttl_is_five_seconds():
    assert config().key_cache_seconds == TTL


def test_an_http_transition_is_three_rpcs_cold_and_two_warm(api, tenant, ttl, clock):
    ttl(60)  # a generous TTL: on a busy machine, two calls may be more than 5 s apart
    wf = api.create(tenant)
    cold_instance()
    api.store.rpcs.clear()
    transition(api, tenant.owner, wf["id"], "PLANNING")
    assert api.store.rpcs == Counter({"get": 1, "batch_get": 1, "commit": 1}), "cold: the key, then read + commit"
    for to in ("DISCOVERY", "PLANNING", "DISCOVERY"):
        api.store.rpcs.clear()
        transition(api, tenant.owner, wf["id"], to)
        assert api.store.rpcs == Counter({"batch_get": 1, "commit": 1}), "warm: one batched read, one commit"
    clock.advance(61)  # the entry expired: read once more, then warm again
    api.store.rpcs.clear()
    transition(api, tenant.owner, wf["id"], "PLANNING")
    transition(api, tenant.owner, wf["id"], "DISCOVERY")
    assert api.store.rpcs == Counter({"get": 1, "batch_get": 2, "commit": 2})


def test_with_the_cache_off_every_call_reads_its_key(api, tenant, ttl):
    ttl(0)
    wf = api.create(tenant)
    api.store.rpcs.clear()
    for to in ("PLANNING", "DISCOVERY", "PLANNING"):
        transition(api, tenant.owner, wf["id"], to)
    assert api.store.rpcs == Counter({"get": 3, "batch_get": 3, "commit": 3})
    assert len(auth._keys) == 0


def test_a_key_revoked_elsewhere_is_refused_once_the_ttl_has_passed(api, tenant, clock, ttl):
    ttl(60)  # so that "within the TTL" holds on a busy machine too
    key, _ = accounts.create_key(api.store, tenant.account_id, [Role.OWNER], name="leaked")
    assert api.get("/v1/workflows", key).status == 200  # cached on this instance
    # another instance (or the operator's command, in its own process) revokes it: this instance is not told
    ref(api.store, api.store.api_key(hash_key(key))).update({"revoked": True})
    clock.advance(30)
    assert api.get("/v1/workflows", key).status == 200, "within the TTL this instance still trusts its cache"
    clock.advance(31)
    r = api.get("/v1/workflows", key)
    assert (r.status, r.code) == (401, "unauthenticated")
    assert api.get("/v1/workflows", key).status == 401  # and a refused key is not cached: it stays refused


def test_a_key_whose_roles_change_is_seen_with_its_new_roles_within_the_ttl(api, tenant, clock):
    key, _ = accounts.create_key(api.store, tenant.account_id, [Role.TESTER], name="promoted")
    assert api.post("/v1/workflows", {"title": "t"}, key).code == "forbidden"
    ref(api.store, api.store.api_key(hash_key(key))).update({"roles": ["OWNER"]})
    clock.advance(TTL + 0.5)
    assert api.post("/v1/workflows", {"title": "t"}, key).status == 201
    ref(api.store, api.store.api_key(hash_key(key))).update({"roles": ["VIEWER"]})
    clock.advance(TTL + 0.5)
    assert api.post("/v1/workflows", {"title": "t"}, key).code == "forbidden"


def test_an_unknown_key_is_never_cached_so_a_new_key_works_at_once(api, tenant):
    secret = "qo_dev_" + "N" * 40
    api.store.rpcs.clear()
    for _ in range(3):
        assert api.get("/v1/workflows", secret).status == 401
    assert api.store.rpcs["get"] == 3, "every unknown key costs its read: nothing was cached"
    accounts.create_key(api.store, tenant.account_id, [Role.OWNER], secret=secret)
    assert api.get("/v1/workflows", secret).status == 200


def test_the_cache_is_keyed_by_the_hash_never_the_secret(api, tenant):
    used(api, tenant.owner)
    entries = list(auth._keys._entries.items())
    assert [k for k, _ in entries] == [hash_key(tenant.owner)]
    assert tenant.owner not in repr(entries)


def test_the_cache_is_bounded_least_recently_used_first_out(clock):
    cache: TtlLru[str, int] = TtlLru(max_entries=3)
    later = product_clock.now() + timedelta(seconds=60)
    for i, name in enumerate("abc"):
        cache.put(name, i, later)
    assert cache.get("a") == 0  # a is now the most recently used
    cache.put("d", 3, later)
    assert (cache.get("b"), len(cache)) == (None, 3)
    assert [cache.get(n) for n in "acd"] == [0, 2, 3]
    clock.advance(61)
    assert [cache.get(n) for n in "acd"] == [None, None, None] and len(cache) == 0


def test_the_auth_caches_are_a_few_thousand_entries():
    assert auth._keys.max_entries == auth._memberships.max_entries == auth.CACHE_ENTRIES
    assert 1000 <= auth.CACHE_ENTRIES <= 10_000


# ---- people: the membership lookup, within the token's own expiry ------------------------------------------------


def test_a_persons_membership_is_read_once_per_ttl(api, tenant, firebase, clock, ttl):
    ttl(60)
    members.add_member(api.store, tenant.account_id, "ann", "ann@example.com", [Role.OWNER], by="test")
    token = firebase.token("ann", "ann@example.com")
    wf = api.create(tenant)
    api.store.rpcs.clear()
    transition(api, token, wf["id"], "PLANNING")
    assert api.store.rpcs == Counter({"get": 1, "batch_get": 1, "commit": 1}), "cold: one read for the person"
    api.store.rpcs.clear()
    transition(api, token, wf["id"], "DISCOVERY")
    assert api.store.rpcs == Counter({"batch_get": 1, "commit": 1}), "warm: no read for the person"
    clock.advance(61)
    api.store.rpcs.clear()
    transition(api, token, wf["id"], "PLANNING")
    assert api.store.rpcs["get"] == 1


def test_a_membership_is_never_kept_beyond_its_tokens_expiry(api, tenant, firebase, ttl):
    ttl(3600)
    members.add_member(api.store, tenant.account_id, "ann", "ann@example.com", [Role.OWNER], by="test")
    token = firebase.token("ann", "ann@example.com", lifetime=60)
    assert api.get("/v1/workflows", token).status == 200
    [(_, expires_at)] = auth._memberships._entries.values()
    exp = firebase_support.jwt.decode(token, verify=False)["exp"]
    assert expires_at.timestamp() == exp


def test_a_membership_changed_elsewhere_is_seen_once_the_ttl_has_passed(api, tenant, firebase, clock, ttl):
    ttl(60)
    members.add_member(api.store, tenant.account_id, "ann", "ann@example.com", [Role.OWNER], by="test")
    token = firebase.token("ann", "ann@example.com")
    assert api.get("/v1/workflows", token).status == 200
    # removed by an owner whose call another instance served: this one is not told
    from shared.domain import members as people

    ref(api.store, api.store.person(people.person_id("ann"))).update({"accounts": {}})
    assert api.get("/v1/workflows", token).status == 200
    clock.advance(61)
    assert api.get("/v1/workflows", token).code == "forbidden"
