"""The one auth check: `Authorization: Bearer qo_<env>_<secret>` → a `Principal`, in one document read.

Keys are stored only as their SHA-256 (the document id), so a leaked database does not leak keys. Every way a key
can be wrong (missing, malformed, unknown, revoked) gives the same 401, so a caller learns nothing from which.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass

from shared.adapters.firestore import Store
from shared.domain.errors import Unauthenticated
from shared.domain.models import ApiKey
from shared.domain.state_machine import Role

KEY_PATTERN = re.compile(r"^qo_[a-z0-9]{1,16}_[A-Za-z0-9]{32,128}$")
_BASE62 = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    key_id: str
    roles: frozenset[Role]

    @property
    def is_owner(self) -> bool:
        return Role.OWNER in self.roles


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(env: str) -> str:
    return f"qo_{env}_" + "".join(secrets.choice(_BASE62) for _ in range(40))


def authenticate(store: Store, authorization: str | None) -> Principal:
    scheme, _, key = (authorization or "").strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not KEY_PATTERN.match(key):
        raise Unauthenticated("Send Authorization: Bearer <api key>.")
    doc = store.get(store.api_key(hash_key(key)))
    if doc.data is None:
        raise Unauthenticated("Send Authorization: Bearer <api key>.")
    record = ApiKey.model_validate(doc.data)
    if record.revoked:
        raise Unauthenticated("Send Authorization: Bearer <api key>.")
    return Principal(account_id=record.account_id, key_id=record.key_id, roles=frozenset(record.roles))
