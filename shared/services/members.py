"""People's use cases: sign-up, /v1/me, invitations and members (rules in `shared.domain.members`).

Three documents say who belongs where, and every change writes all it touches in one commit:
- `accounts/{account}/members/mem_{sha256(uid)}`: the membership (listing an account's members is one collection);
- `people/{sha256(uid)}`: the accounts a person belongs to, with their roles (authenticating a person is one read);
- `accounts/{account}.owners`: the owner members. A change that adds or drops an owner updates it under the
  account's update-time precondition, so two owners removing each other at once cannot leave the account with none.

Every change is one batched read and one precondition commit through `commit_change`. A person's own requests
(sign-up, accepting) keep their Idempotency-Key records under the person (`people/{id}/idempotency`).
"""

from __future__ import annotations

import secrets
from datetime import datetime

from shared.adapters.firestore import DocRef, Snapshot, Store, Writes
from shared.domain import members as people
from shared.domain import plans
from shared.domain.errors import AlreadyMember, EmailNotVerified, NotFound
from shared.domain.models import (
    AcceptInvitationRequest,
    Account,
    CreateAccountRequest,
    Invitation,
    InvitationView,
    InviteMemberRequest,
    Me,
    Member,
    MemberList,
    Membership,
    MemberView,
    Person,
    UpdateMemberRequest,
)
from shared.domain.state_machine import Role
from shared.services import accounts, auth
from shared.services.commits import commit_change
from shared.services.idempotency import IdempotencyRequest, Outcome
from shared.services.keys import require_owner, require_reader

MAX_ATTEMPTS = 10


def _member_view(member: Member) -> dict:
    return MemberView(**member.model_dump(exclude={"account_id"})).model_dump(mode="json")


def _invitation_view(invitation: Invitation) -> InvitationView:
    return InvitationView(**invitation.model_dump())


def _person(snap: Snapshot | None, uid: str) -> Person | None:
    if snap is None or not snap.exists:
        return None
    record = Person.model_validate(snap.to_dict())
    return record if record.uid == uid else None


def _with_account(seen: Snapshot, uid: str, email: str | None, account_id: str, roles: list[Role] | None,
                  at: datetime) -> dict:
    """The person's document once `account_id` has `roles` for them (None: they left it)."""
    record = _person(seen, uid)
    memberships = dict(record.accounts) if record else {}
    if roles is None:
        memberships.pop(account_id, None)
    else:
        memberships[account_id] = roles
    return Person(uid=uid, email=email or (record.email if record else None), accounts=memberships,
                  updated_at=at).model_dump(mode="python")


def _require_verified(person: auth.Person) -> str:
    if not person.email or not person.email_verified:
        raise EmailNotVerified("Verify your email address first (Firebase sends the link): members are people "
                               "with a verified email.")
    return people.normalize_email(person.email)


def _person_idem(store: Store, person: auth.Person, idem: IdempotencyRequest | None) -> DocRef | None:
    return store.person_idempotency(person.id, idem.key_hash) if idem else None


# ---- the person --------------------------------------------------------------------------------------------------


def get_me(store: Store, person: auth.Person) -> dict:
    """Their accounts (one read, plus one batched read of the accounts' names) and the invitations waiting for their
    verified email (one query)."""
    record = _person(store.get(store.person(person.id)), person.uid)
    memberships = record.accounts if record else {}
    names: dict[str, str] = {}
    if memberships:
        refs = {a: store.account(a) for a in memberships}
        snaps = store.get_many(list(refs.values()))
        names = {a: snaps[ref.path].get("name") for a, ref in refs.items() if snaps[ref.path].exists}
    invitations: list[InvitationView] = []
    if person.email and person.email_verified:
        found = store.query("invitations", filters=[("email", "==", people.normalize_email(person.email))])
        invitations = sorted((_invitation_view(Invitation.model_validate(s.to_dict())) for s in found),
                             key=lambda i: (i.created_at, i.id))
    me = Me(uid=person.uid, email=person.email, email_verified=person.email_verified,
            accounts=[Membership(account_id=a, account_name=names.get(a), roles=r)
                      for a, r in sorted(memberships.items())],
            invitations=invitations)
    return me.model_dump(mode="json")


def create_account(store: Store, person: auth.Person, request: CreateAccountRequest,
                   idem: IdempotencyRequest | None) -> Outcome:
    """Sign-up: a person with a verified email and no account creates one and becomes its OWNER. It starts on the
    dev plan, not entitled: it pays through the billing endpoints like any account. The person's document is the
    precondition, so two sign-ups at once make one account."""
    email = _require_verified(person)
    person_ref = store.person(person.id)
    account_id = "acct_" + secrets.token_hex(8)
    member = people.member_id(person.uid)

    def decide(snaps: dict[str, Snapshot], at: datetime) -> tuple[dict, Writes]:
        seen = snaps[person_ref.path]
        if (record := _person(seen, person.uid)) is not None and record.accounts:
            raise AlreadyMember("You are already a member of an account (GET /v1/me): sign-up is for people with "
                                "none.", accounts=sorted(record.accounts))
        account = Account(id=account_id, name=request.name, plan=plans.DEV, entitled=False, created_at=at,
                          owners=[member])
        writes = Writes()
        writes.create(store.account(account_id), account.model_dump(mode="python"))
        writes.create(store.member(account_id, member),
                      Member(id=member, account_id=account_id, uid=person.uid, email=email, roles=[Role.OWNER],
                             joined_at=at).model_dump(mode="python"))
        writes.replace(person_ref, _with_account(seen, person.uid, email, account_id, [Role.OWNER], at), seen)
        return accounts.account_view(account, at), writes

    return commit_change(store, account_id, idem, [person_ref], decide, attempts=MAX_ATTEMPTS,
                         exhausted="Your sign-up raced another change; retry.",
                         idem_ref=_person_idem(store, person, idem))


def accept_invitation(store: Store, person: auth.Person, request: AcceptInvitationRequest,
                      idem: IdempotencyRequest | None) -> Outcome:
    """Join `account_id` with the roles of the invitation made to the person's verified email. An unverified email
    is 403 `email_not_verified`; no invitation for this email (another email was invited, or none) is 404."""
    email = _require_verified(person)
    account_id = request.account_id
    invitation_ref = store.invitation(account_id, people.invitation_id(email))
    account_ref = store.account(account_id)

    def decide(snaps: dict[str, Snapshot], at: datetime) -> tuple[dict, Writes]:
        found = snaps[invitation_ref.path]
        invitation = Invitation.model_validate(found.to_dict()) if found.exists else None
        if invitation is None or invitation.email != email or not snaps[account_ref.path].exists:
            raise NotFound("No invitation for your email to that account.")
        writes = Writes()
        writes.delete(invitation_ref, if_updated_at=found.update_time)
        member = _stage_join(store, writes, snaps, account_id, person.uid, email, invitation.roles,
                             invitation.invited_by, at)
        return _member_view(member), writes

    outcome = commit_change(store, account_id, idem, [invitation_ref, *_join_refs(store, account_id, person.uid)],
                            decide, attempts=MAX_ATTEMPTS, exhausted="The account is changing too fast; retry.",
                            idem_ref=_person_idem(store, person, idem))
    auth.forget_person(person.uid)
    return outcome


def add_member(store: Store, account_id: str, uid: str, email: str, roles: list[Role], *, by: str) -> Member:
    """An operator's shortcut past the invitation (e.g. `make run`'s dev person): `uid` joins `account_id`."""
    roles = people.check_roles(roles)
    joined: list[Member] = []

    def decide(snaps: dict[str, Snapshot], at: datetime) -> tuple[dict, Writes]:
        if not snaps[store.account(account_id).path].exists:
            raise NotFound(f"No account {account_id}.")
        writes = Writes()
        joined[:] = [_stage_join(store, writes, snaps, account_id, uid, people.normalize_email(email), roles, by,
                                 at)]
        return {}, writes

    commit_change(store, account_id, None, _join_refs(store, account_id, uid), decide, attempts=MAX_ATTEMPTS,
                  exhausted="The account is changing too fast; retry.")
    auth.forget_person(uid)
    return joined[0]


def _join_refs(store: Store, account_id: str, uid: str) -> list[DocRef]:
    return [store.member(account_id, people.member_id(uid)), store.person(people.person_id(uid)),
            store.account(account_id)]


def _stage_join(store: Store, writes: Writes, snaps: dict[str, Snapshot], account_id: str, uid: str, email: str,
                roles: list[Role], invited_by: str | None, at: datetime) -> Member:
    """A person joins an account: their membership, their person document and (for an owner) the account's owners,
    all guarded by what was read. Refused (409) if they are a member already."""
    member_ref, person_ref, account_ref = _join_refs(store, account_id, uid)
    if snaps[member_ref.path].exists:
        raise AlreadyMember("You are already a member of that account.")
    account = Account.model_validate(snaps[account_ref.path].to_dict())
    member = Member(id=member_ref.id, account_id=account_id, uid=uid, email=email, roles=roles, joined_at=at,
                    invited_by=invited_by)
    writes.create(member_ref, member.model_dump(mode="python"))
    writes.replace(person_ref, _with_account(snaps[person_ref.path], uid, email, account_id, roles, at),
                   snaps[person_ref.path])
    _stage_owners(writes, account_ref, snaps[account_ref.path], account, member.id, roles)
    return member


def _stage_owners(writes: Writes, account_ref: DocRef, seen: Snapshot, account: Account, member: str,
                  roles: list[Role] | None) -> None:
    owners = people.owners_after(account.owners, member, roles)  # refuses to drop the last owner
    if owners != sorted(account.owners):
        writes.update(account_ref, {"owners": owners}, if_updated_at=seen.update_time)


# ---- the account's members ---------------------------------------------------------------------------------------


def list_members(store: Store, principal: auth.Principal) -> dict:
    """Two queries: the members and the pending invitations (an account has a handful of each)."""
    require_reader(principal)
    members = sorted((Member.model_validate(s.to_dict()) for s in store.query(store.members(principal.account_id))),
                     key=lambda m: (m.joined_at, m.id))
    invitations = sorted((Invitation.model_validate(s.to_dict())
                          for s in store.query(store.invitations(principal.account_id))),
                         key=lambda i: (i.created_at, i.id))
    return MemberList(members=[MemberView(**m.model_dump(exclude={"account_id"})) for m in members],
                      invitations=[_invitation_view(i) for i in invitations]).model_dump(mode="json")


def invite_member(store: Store, principal: auth.Principal, request: InviteMemberRequest,
                  idem: IdempotencyRequest | None) -> Outcome:
    """Invite `email` with `roles` (owner only). Inviting the same email again replaces the invitation."""
    require_owner(principal, "invite people")
    email = people.check_email(request.email)
    roles = people.check_roles(request.roles)
    ref = store.invitation(principal.account_id, people.invitation_id(email))

    def decide(snaps: dict[str, Snapshot], at: datetime) -> tuple[dict, Writes]:
        invitation = Invitation(id=ref.id, account_id=principal.account_id, email=email, roles=roles,
                                invited_by=principal.actor, created_at=at)
        writes = Writes()
        writes.replace(ref, invitation.model_dump(mode="python"), snaps[ref.path])
        return _invitation_view(invitation).model_dump(mode="json"), writes

    return commit_change(store, principal.account_id, idem, [ref], decide, attempts=MAX_ATTEMPTS,
                         exhausted="The invitation is changing too fast; retry.")


def _member_refs(store: Store, account_id: str, member_id: str) -> tuple[DocRef, DocRef, DocRef]:
    if not member_id.startswith("mem_"):
        raise NotFound("No member with that id in this account.")
    return (store.member(account_id, member_id), store.person(member_id.removeprefix("mem_")),
            store.account(account_id))


def update_member(store: Store, principal: auth.Principal, member_id: str, request: UpdateMemberRequest,
                  idem: IdempotencyRequest | None) -> Outcome:
    """New roles for a member (owner only); the last owner cannot stop being one (409 `last_owner`)."""
    require_owner(principal, "change members' roles")
    roles = people.check_roles(request.roles)
    member_ref, person_ref, account_ref = _member_refs(store, principal.account_id, member_id)
    changed: list[Member] = []

    def decide(snaps: dict[str, Snapshot], at: datetime) -> tuple[dict, Writes]:
        member, account = _load_member(snaps, member_ref, account_ref)
        moved = member.model_copy(update={"roles": roles})
        changed[:] = [moved]
        writes = Writes()
        writes.update(member_ref, {"roles": roles}, if_updated_at=snaps[member_ref.path].update_time)
        writes.replace(person_ref, _with_account(snaps[person_ref.path], member.uid, None, account.id, roles, at),
                       snaps[person_ref.path])
        _stage_owners(writes, account_ref, snaps[account_ref.path], account, member.id, roles)
        return _member_view(moved), writes

    outcome = commit_change(store, principal.account_id, idem, [member_ref, person_ref, account_ref], decide,
                            attempts=MAX_ATTEMPTS, exhausted="The account is changing too fast; retry.")
    if changed:
        auth.forget_person(changed[0].uid)
    return outcome


def remove_member(store: Store, principal: auth.Principal, member_id: str) -> None:
    """Remove a member (owner only; never the last owner), or withdraw a pending invitation (an `inv_` id). The
    removed person's next call is refused: at once on this instance, within the cache's TTL on others."""
    require_owner(principal, "remove members")
    if member_id.startswith("inv_"):
        _withdraw(store, principal.account_id, member_id)
        return
    member_ref, person_ref, account_ref = _member_refs(store, principal.account_id, member_id)
    removed: list[Member] = []

    def decide(snaps: dict[str, Snapshot], at: datetime) -> tuple[dict, Writes]:
        member, account = _load_member(snaps, member_ref, account_ref)
        removed[:] = [member]
        writes = Writes()
        writes.delete(member_ref, if_updated_at=snaps[member_ref.path].update_time)
        writes.replace(person_ref, _with_account(snaps[person_ref.path], member.uid, None, account.id, None, at),
                       snaps[person_ref.path])
        _stage_owners(writes, account_ref, snaps[account_ref.path], account, member.id, None)
        return {}, writes

    commit_change(store, principal.account_id, None, [member_ref, person_ref, account_ref], decide,
                  attempts=MAX_ATTEMPTS, exhausted="The account is changing too fast; retry.")
    if removed:
        auth.forget_person(removed[0].uid)


def _load_member(snaps: dict[str, Snapshot], member_ref: DocRef, account_ref: DocRef) -> tuple[Member, Account]:
    found = snaps[member_ref.path]
    if not found.exists or not snaps[account_ref.path].exists:
        raise NotFound("No member with that id in this account.")
    return Member.model_validate(found.to_dict()), Account.model_validate(snaps[account_ref.path].to_dict())


def _withdraw(store: Store, account_id: str, invitation_id: str) -> None:
    ref = store.invitation(account_id, invitation_id)

    def decide(snaps: dict[str, Snapshot], _: datetime) -> tuple[dict, Writes]:
        if not snaps[ref.path].exists:
            raise NotFound("No invitation with that id in this account.")
        writes = Writes()
        writes.delete(ref, if_updated_at=snaps[ref.path].update_time)
        return {}, writes

    commit_change(store, account_id, None, [ref], decide, attempts=MAX_ATTEMPTS,
                  exhausted="The invitation is changing too fast; retry.")
