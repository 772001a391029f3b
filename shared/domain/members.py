"""People and their memberships: the rules, with no I/O.

A person is a Firebase Authentication user (uid, verified email). They belong to accounts as members with roles:
OWNER, agent roles (people who review or test), or VIEWER alone (reads everything, changes nothing). The same rules
hold for the roles of API keys.

Ids are derived, never stored in a lookup table:
- a person's document is `people/{person_id}`, `person_id` = first 32 hex of SHA-256(uid): a uid may hold characters
  a document id may not, and the same person always lands on the same document;
- their membership of an account is `accounts/{account}/members/mem_{person_id}`: one per person and account;
- an invitation is `accounts/{account}/invitations/inv_{first 32 hex of SHA-256(email)}`: one pending invitation per
  email and account (inviting again replaces it).
"""

from __future__ import annotations

import hashlib
import re

from shared.domain.errors import LastOwner, ValidationFailed
from shared.domain.state_machine import AGENT_ROLES, Role

# What a key or a member may hold: OWNER and/or agent roles, or VIEWER alone. (CUSTOMER is the workflow role an
# OWNER plays, never granted.)
GRANTABLE: frozenset[Role] = AGENT_ROLES | {Role.OWNER, Role.VIEWER}
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def person_id(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:32]


def member_id(uid: str) -> str:
    return "mem_" + person_id(uid)


def invitation_id(email: str) -> str:
    return "inv_" + hashlib.sha256(normalize_email(email).encode()).hexdigest()[:32]


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_email(email: str, field: str = "email") -> str:
    normalized = normalize_email(email)
    if len(normalized) > 254 or not _EMAIL.match(normalized):
        raise ValidationFailed([{"field": field, "message": "must be an email address"}])
    return normalized


def check_roles(roles: list[Role], field: str = "roles") -> list[Role]:
    """The roles a key or a member may be given, in a stable order; refused (422) otherwise."""
    unique = sorted(set(roles), key=list(Role).index)
    if not unique:
        raise ValidationFailed([{"field": field, "message": "give at least one role"}])
    if bad := [r.value for r in unique if r not in GRANTABLE]:
        raise ValidationFailed([{"field": field, "message": f"{', '.join(bad)} cannot be granted; the roles are "
                                                             f"{', '.join(sorted(GRANTABLE))}"}])
    if Role.VIEWER in unique and len(unique) > 1:
        raise ValidationFailed([{"field": field, "message": "VIEWER is read-only and stands alone"}])
    return unique


def owners_after(owners: list[str], member: str, roles: list[Role] | None) -> list[str]:
    """The account's owner members once `member` has `roles` (None: removed). Refuses to leave an account that had
    owners with none."""
    after = [m for m in owners if m != member]
    if roles is not None and Role.OWNER in roles:
        after.append(member)
    if owners and not after:
        raise LastOwner("This is the account's last owner: make another member an OWNER first.")
    return sorted(after)
