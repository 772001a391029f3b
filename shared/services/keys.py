"""API keys through the API: an owner creates them (the secret is shown once), lists them (never a secret; when each
was last used) and revokes them. Revoking drops the key from this instance's cache at once; other instances stop
accepting it within the key cache's TTL (`QORCH_KEY_CACHE_SECONDS`). The admin command revokes through here too."""

from __future__ import annotations

import secrets
from datetime import datetime

from shared.adapters.firestore import Doc, Key, Store, Writes
from shared.domain import members as people
from shared.domain.errors import Forbidden, NotFound
from shared.domain.models import ApiKey, ApiKeyCreated, ApiKeyView, CreateKeyRequest, KeyList
from shared.domain.state_machine import Role
from shared.runtime.config import config
from shared.services import auth, commits
from shared.services.idempotency import IdempotencyRequest, Outcome


def view(record: ApiKey) -> ApiKeyView:
    return ApiKeyView(id=record.key_id, **record.model_dump(
        include={"name", "roles", "prefix", "created_at", "created_by", "revoked", "revoked_at", "last_used_at"}))


def require_owner(principal: auth.Principal, what: str) -> None:
    if not principal.is_owner:
        raise Forbidden(f"Only an OWNER may {what}.")


def require_reader(principal: auth.Principal) -> None:
    """The team (members, keys) is shown to owners and viewers; agents are programs and see their work only."""
    if not (principal.is_owner or Role.VIEWER in principal.roles):
        raise Forbidden("Only an OWNER or a VIEWER may see the account's members and keys.")


def create_key(store: Store, principal: auth.Principal, request: CreateKeyRequest,
               idem: IdempotencyRequest | None) -> Outcome:
    """One batched read and one commit. The secret is in this answer only: the Idempotency-Key record keeps the
    answer without it (nothing stores a secret), so a replay shows the key with `api_key: null`."""
    require_owner(principal, "create API keys")
    roles = people.check_roles(request.roles)
    secret = auth.new_key(config().key_env)
    key = store.api_key(auth.hash_key(secret))
    key_id = "key_" + secrets.token_hex(8)

    def decide(_: dict[Key, Doc], at: datetime) -> tuple[dict, Writes]:
        record = ApiKey(key_id=key_id, account_id=principal.account_id, roles=roles, name=request.name,
                        prefix=secret[:12], created_at=at, created_by=principal.actor)
        writes = Writes()
        writes.create(key, record.model_dump(mode="python"))
        return ApiKeyCreated(**view(record).model_dump(), api_key=None).model_dump(mode="json"), writes

    outcome = commits.change(store, principal.account_id, idem, [key], decide,
                             busy="The key could not be created; retry.")
    if outcome.replayed:
        return outcome
    return Outcome(body={**outcome.body, "api_key": secret})


def list_keys(store: Store, principal: auth.Principal) -> dict:
    require_reader(principal)
    docs = store.query(store.api_keys(), filters=[("account_id", "==", principal.account_id)])
    records = sorted((ApiKey.model_validate(d.data) for d in docs), key=lambda k: (k.created_at, k.key_id))
    return KeyList(keys=[view(r) for r in records]).model_dump(mode="json")


def revoke(store: Store, principal: auth.Principal, key_id: str) -> dict:
    require_owner(principal, "revoke API keys")
    return view(revoke_key(store, key_id, account_id=principal.account_id)).model_dump(mode="json")


def revoke_key(store: Store, key_id: str, *, account_id: str | None = None) -> ApiKey:
    """Revoke at once (a no-op for a revoked key). `account_id`: only a key of that account (None: an operator's
    command, any account). A key of another account is not found, like a missing one."""
    found = store.query(store.api_keys(), filters=[("key_id", "==", key_id)], limit=1)
    if not found or (account_id is not None and found[0].get("account_id") != account_id):
        raise NotFound("No API key with that id in this account.")
    seen = found[0]
    record = ApiKey.model_validate(seen.data)
    if not record.revoked:

        def decide(docs: dict[Key, Doc], at: datetime) -> tuple[dict, Writes]:
            doc = docs[seen.key]
            if doc.data is None:  # deleted meanwhile (an operator): nothing left to revoke
                raise NotFound("No API key with that id in this account.")
            current = ApiKey.model_validate(doc.data)
            writes = Writes()
            if not current.revoked:  # revoked meanwhile: keep the first revocation's time
                current = current.model_copy(update={"revoked": True, "revoked_at": at})
                writes.update(seen.key, {"revoked": True, "revoked_at": at}, if_updated_at=doc.update_time)
            return current.model_dump(mode="json"), writes

        outcome = commits.change(store, record.account_id, None, [seen.key], decide,
                                 busy="The key is changing too fast; retry.", first_read={seen.key: seen})
        record = ApiKey.model_validate(outcome.body)
    auth.forget_key(seen.id)
    return record
