"""The one auth check. `Authorization: Bearer <credential>` names one of two kinds of caller, told apart by shape:

- an API key, `qo_<env>_<secret>` (a program): its document, named by the SHA-256 of the secret (`Store.api_key`);
- a Firebase ID token, a JWT (three dot-separated base64url parts: a person): verified completely by
  `shared.adapters.firebase_auth` (signature against Google's certificates, audience, issuer, times, subject), which
  is imported only when a token arrives; then the person's document (`Store.person`, named by the SHA-256 of their
  uid), which lists the accounts they belong to with their roles. A person in several accounts picks one with the
  `X-Qorch-Account` header.

Either is one document read, and none on a warm instance: lookups that found a valid key or membership are cached
per instance for `QORCH_KEY_CACHE_SECONDS` (a person's never beyond their token's expiry), keyed by the key's hash or
the person's uid, never by a secret. A missing, unknown or revoked key is never cached, so a new key works at once
and a guessed one costs a read each time. Revoking a key (or changing a member) here drops it from this instance's
cache at once; other instances notice within the TTL.

Keys are stored only as their SHA-256, so a leaked database does not leak keys. Every way a credential can be wrong
(missing, malformed, unknown, revoked, a token that fails any check) gives the same 401.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from shared.adapters.firestore import Store, Writes
from shared.domain import members as people
from shared.domain.errors import Forbidden, Unauthenticated, Unavailable, ValidationFailed
from shared.domain.models import ApiKey
from shared.domain.models import Person as PersonRecord
from shared.domain.state_machine import Role
from shared.runtime import clock
from shared.runtime.cache import TtlLru
from shared.runtime.config import config
from shared.services import commits

KEY_PATTERN = re.compile(r"^qo_[a-z0-9]{1,16}_[A-Za-z0-9]{32,128}$")
# A JWT: header.payload.signature, base64url (the Auth emulator's unsigned tokens have an empty signature).
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{4,2048}\.[A-Za-z0-9_-]{4,8192}\.[A-Za-z0-9_-]{0,2048}$")
ACCOUNT_HEADER = "X-Qorch-Account"
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_BASE62 = string.ascii_letters + string.digits
_ASK = "Send Authorization: Bearer <api key or Firebase ID token>."
CACHE_ENTRIES = 4096  # per cache, per instance; least recently used first out
LAST_USED_EVERY = timedelta(hours=1)  # a key's `last_used_at` is written at most this often


@dataclass(frozen=True, slots=True)
class Person:
    """A signed-in person, from a verified Firebase ID token."""

    uid: str
    email: str | None
    email_verified: bool
    expires_at: datetime  # the token's `exp`

    @property
    def id(self) -> str:
        return people.person_id(self.uid)

    @property
    def actor(self) -> str:
        return f"user:{self.uid}"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, in which account, with which roles: an API key (`key_id`) or a member (`person`)."""

    account_id: str
    key_id: str | None
    roles: frozenset[Role]
    person: Person | None = None
    key_hash: str | None = None  # the key's document id
    last_used_at: datetime | None = None  # the key's, as last read

    @property
    def actor(self) -> str:
        """What events, `created_by` and hand-off leases record: `key_<id>`, or `user:<uid>` for a person."""
        return self.person.actor if self.person is not None else str(self.key_id)

    @property
    def actor_email(self) -> str | None:
        return self.person.email if self.person is not None else None

    @property
    def is_owner(self) -> bool:
        return Role.OWNER in self.roles

    @property
    def read_only(self) -> bool:
        return self.roles <= {Role.VIEWER}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(env: str) -> str:
    return f"qo_{env}_" + "".join(secrets.choice(_BASE62) for _ in range(40))


# ---- the check ---------------------------------------------------------------------------------------------------


def authenticate(store: Store, authorization: str | None, account: str | None = None, *,
                 write: bool = False) -> Principal:
    """The caller of an account-scoped call. `account`: the X-Qorch-Account header (a person's choice; ignored for
    a key, which belongs to one account). `write`: the call changes something, which a VIEWER may not."""
    kind, credential = _credential(authorization)
    if kind == "key":
        principal = _by_key(store, credential)
    else:
        principal = _by_membership(store, verify_token(credential), account)
    if write and principal.read_only:
        raise Forbidden("A VIEWER may read everything of its account and change nothing.")
    return principal


def identify(authorization: str | None) -> Person:
    """The caller of a person-level call (sign-up, accepting an invitation, /v1/me): a signed-in person, whatever
    accounts they have. No store read. API keys are refused: these are for people."""
    kind, credential = _credential(authorization)
    if kind == "key":
        raise Forbidden("This is for a person signed in with Firebase Authentication, not for an API key.")
    return verify_token(credential)


def verify_token(token: str) -> Person:
    # Imported here, not at the top: an instance whose callers use only API keys never loads the verifier.
    from shared.adapters import firebase_auth

    claims = firebase_auth.verify_id_token(token)
    email = claims.get("email")
    return Person(uid=claims["sub"], email=email if isinstance(email, str) else None,
                  email_verified=claims.get("email_verified") is True,
                  expires_at=datetime.fromtimestamp(claims["exp"], UTC))


def _credential(authorization: str | None) -> tuple[str, str]:
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        if KEY_PATTERN.match(value):
            return "key", value
        if TOKEN_PATTERN.match(value):
            return "token", value
    raise Unauthenticated(_ASK)


# ---- keys --------------------------------------------------------------------------------------------------------

_keys: TtlLru[str, Principal] = TtlLru(CACHE_ENTRIES)  # key hash → the key's principal


def _ttl() -> float:
    return config().key_cache_seconds


def _by_key(store: Store, key: str) -> Principal:
    key_hash = hash_key(key)
    if _ttl() and (cached := _keys.get(key_hash)) is not None:
        return cached
    doc = store.get(store.api_key(key_hash))
    if doc.data is None:
        raise Unauthenticated(_ASK)
    record = ApiKey.model_validate(doc.data)
    if record.revoked:
        raise Unauthenticated(_ASK)
    principal = Principal(account_id=record.account_id, key_id=record.key_id, roles=frozenset(record.roles),
                          key_hash=key_hash, last_used_at=record.last_used_at)
    if ttl := _ttl():
        _keys.put(key_hash, principal, clock.now() + timedelta(seconds=ttl))
    return principal


def note_use(store: Store, principal: Principal) -> None:
    """After a call a key made: record `last_used_at` when the one on record is an hour old or more. That is one
    extra write for one call per key and hour, so the calls in between keep their round trips. Best effort: a store
    that cannot take it now does not fail the call that was answered."""
    if principal.key_hash is None:
        return
    at = clock.now()
    if principal.last_used_at is not None and at - principal.last_used_at < LAST_USED_EVERY:
        return
    writes = Writes()
    writes.update(store.api_key(principal.key_hash), {"last_used_at": at}, if_updated_at=None)
    try:
        if not commits.write_once(store, writes):  # the key was deleted meanwhile: nothing to note
            return
    except Unavailable:
        return
    _keys.replace(principal.key_hash, lambda p: replace(p, last_used_at=at))


def forget_key(key_hash: str) -> None:
    """Drop a key from this instance's cache (it was revoked or changed here)."""
    _keys.evict(lambda k: k == key_hash)


# ---- people ------------------------------------------------------------------------------------------------------

# (uid, X-Qorch-Account or None) → (account id, roles)
_memberships: TtlLru[tuple[str, str | None], tuple[str, frozenset[Role]]] = TtlLru(CACHE_ENTRIES)


def _by_membership(store: Store, person: Person, account: str | None) -> Principal:
    if account is not None and not _ACCOUNT_ID.match(account):
        raise Forbidden("You are not a member of that account.")
    cache_key = (person.uid, account)
    found = _memberships.get(cache_key) if _ttl() else None
    if found is None:
        found = _pick(memberships(store, person.uid), account)
        now = clock.now()
        expires_at = min(now + timedelta(seconds=_ttl()), person.expires_at)
        if _ttl() and expires_at > now:
            _memberships.put(cache_key, found, expires_at)
    account_id, roles = found
    return Principal(account_id=account_id, key_id=None, roles=roles, person=person)


def memberships(store: Store, uid: str) -> dict[str, list[Role]]:
    """The accounts a person belongs to, with their roles: one read of their person document."""
    doc = store.get(store.person(people.person_id(uid)))
    if doc.data is None:
        return {}
    record = PersonRecord.model_validate(doc.data)
    return record.accounts if record.uid == uid else {}


def _pick(accounts: dict[str, list[Role]], wanted: str | None) -> tuple[str, frozenset[Role]]:
    if wanted is not None:
        if wanted not in accounts:
            raise Forbidden("You are not a member of that account.")
        return wanted, frozenset(accounts[wanted])
    if not accounts:
        raise Forbidden("You are not a member of any account: create one (POST /v1/accounts) or accept an "
                        "invitation (POST /v1/members/accept).")
    if len(accounts) > 1:
        raise ValidationFailed([{"field": f"header:{ACCOUNT_HEADER}",
                                 "message": f"you are a member of {len(accounts)} accounts: say which one "
                                            "(GET /v1/me lists them)"}])
    ((account_id, roles),) = accounts.items()
    return account_id, frozenset(roles)


def forget_person(uid: str) -> None:
    """Drop a person's cached memberships on this instance (one of them changed here)."""
    _memberships.evict(lambda k: k[0] == uid)


def forget_all() -> None:
    _keys.clear()
    _memberships.clear()
