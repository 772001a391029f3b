"""People's use cases: sign-up, /v1/me, invitations and members (rules in `shared.domain.members`).

Three documents say who belongs where, and every change writes all it touches in one commit:
- the member (`Store.member`: one per person and account, `mem_<person id>`; listing an account's members is one
  collection);
- the person (`Store.person`): the accounts they belong to, with their roles (authenticating a person is one read);
- the account's `owners`: its owner members. A change that adds or drops an owner updates it under the account's
  update-time precondition, so two owners removing each other at once cannot leave the account with none.

Every change is one batched read and one precondition commit through `commits.change`. A person's own requests
(sign-up, accepting) keep their Idempotency-Key records with the person (`Store.person_idempotency`), since they
belong to no account yet."""

from __future__ import annotations

import secrets
from datetime import datetime

from shared.adapters.firestore import Doc, Key, Store, Writes
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
from shared.services import accounts, auth, commits
from shared.services.idempotency import IdempotencyRequest, Outcome
from shared.services.keys import require_owner, require_reader


def _member_view(member: Member) -> dict:
    return MemberView(**member.model_dump(exclude={"account_id"})).model_dump(mode="json")


def _invitation_view(invitation: Invitation) -> InvitationView:
    return InvitationView(**invitation.model_dump())


def _person(doc: Doc, uid: str) -> Person | None:
    if doc.data is None:
        return None
    record = Person.model_validate(doc.data)
    return record if record.uid == uid else None


def _with_account(seen: Doc, uid: str, email: str | None, account_id: str, roles: list[Role] | None,
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


def _own_record(store: Store, person: auth.Person, idem: IdempotencyRequest | None) -> Key | None:
    """Where a person's own request keeps its Idempotency-Key record (it belongs to no account yet)."""
    return store.person_idempotency(person.id, idem.key_hash) if idem else None


# ---- the person --------------------------------------------------------------------------------------------------


def get_me(store: Store, person: auth.Person) -> dict:
    """Their accounts and the invitations waiting for their verified email: one read, one query, and one batched read
    of the accounts' names (so an invitation says which account it is to, not only its id)."""
    record = _person(store.get(store.person(person.id)), person.uid)
    memberships = record.accounts if record else {}
    waiting: list[Invitation] = []
    if person.email and person.email_verified:
        found_invitations = store.query(store.every_account("invitations"),
                                        filters=[("email", "==", people.normalize_email(person.email))])
        waiting = [Invitation.model_validate(d.data) for d in found_invitations]
    names: dict[str, str] = {}
    if memberships or waiting:
        accounts = {*memberships, *(i.account_id for i in waiting)}
        found = store.get_many(store.account(a) for a in sorted(accounts))
        names = {doc.id: doc.get("name") for doc in found.values() if doc.exists}
    invitations = sorted((InvitationView(**i.model_dump(), account_name=names.get(i.account_id)) for i in waiting),
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
    person_key = store.person(person.id)
    account_id = "acct_" + secrets.token_hex(8)
    member = people.member_id(person.uid)

    def decide(docs: dict[Key, Doc], at: datetime) -> tuple[dict, Writes]:
        seen = docs[person_key]
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
        writes.replace(person_key, _with_account(seen, person.uid, email, account_id, [Role.OWNER], at), seen)
        return accounts.account_view(account, at), writes

    return commits.change(store, account_id, idem, [person_key], decide,
                          busy="Your sign-up raced another change; retry.",
                          record_at=_own_record(store, person, idem))


def accept_invitation(store: Store, person: auth.Person, request: AcceptInvitationRequest,
                      idem: IdempotencyRequest | None) -> Outcome:
    """Join `account_id` with the roles of the invitation made to the person's verified email. An unverified email
    is 403 `email_not_verified`; no invitation for this email (another email was invited, or none) is 404."""
    email = _require_verified(person)
    account_id = request.account_id
    invitation_key = store.invitation(account_id, people.invitation_id(email))
    account_key = store.account(account_id)

    def decide(docs: dict[Key, Doc], at: datetime) -> tuple[dict, Writes]:
        found = docs[invitation_key]
        invitation = Invitation.model_validate(found.data) if found.data is not None else None
        if invitation is None or invitation.email != email or not docs[account_key].exists:
            raise NotFound("No invitation for your email to that account.")
        writes = Writes()
        writes.delete(invitation_key, if_updated_at=found.update_time)
        member = _stage_join(store, writes, docs, account_id, person.uid, email, invitation.roles,
                             invitation.invited_by, at)
        return _member_view(member), writes

    outcome = commits.change(store, account_id, idem, [invitation_key, *_join_keys(store, account_id, person.uid)],
                             decide, busy="The account is changing too fast; retry.",
                             record_at=_own_record(store, person, idem))
    auth.forget_person(person.uid)
    return outcome


def add_member(store: Store, account_id: str, uid: str, email: str, roles: list[Role], *, by: str) -> Member:
    """An operator's shortcut past the invitation (e.g. `make run`'s dev person): `uid` joins `account_id`."""
    roles = people.check_roles(roles)
    account_key = store.account(account_id)

    def decide(docs: dict[Key, Doc], at: datetime) -> tuple[dict, Writes]:
        if not docs[account_key].exists:
            raise NotFound(f"No account {account_id}.")
        writes = Writes()
        member = _stage_join(store, writes, docs, account_id, uid, people.normalize_email(email), roles, by, at)
        return member.model_dump(mode="json"), writes

    outcome = commits.change(store, account_id, None, _join_keys(store, account_id, uid), decide,
                             busy="The account is changing too fast; retry.")
    auth.forget_person(uid)
    return Member.model_validate(outcome.body)


def _join_keys(store: Store, account_id: str, uid: str) -> list[Key]:
    return [store.member(account_id, people.member_id(uid)), store.person(people.person_id(uid)),
            store.account(account_id)]


def _stage_join(store: Store, writes: Writes, docs: dict[Key, Doc], account_id: str, uid: str, email: str,
                roles: list[Role], invited_by: str | None, at: datetime) -> Member:
    """A person joins an account: their membership, their person document and (for an owner) the account's owners,
    all guarded by what was read. Refused (409) if they are a member already."""
    member_key, person_key, account_key = _join_keys(store, account_id, uid)
    if docs[member_key].exists:
        raise AlreadyMember("You are already a member of that account.")
    account = Account.model_validate(docs[account_key].data)
    member = Member(id=member_key.id, account_id=account_id, uid=uid, email=email, roles=roles, joined_at=at,
                    invited_by=invited_by)
    writes.create(member_key, member.model_dump(mode="python"))
    writes.replace(person_key, _with_account(docs[person_key], uid, email, account_id, roles, at), docs[person_key])
    _stage_owners(writes, docs[account_key], account, member.id, roles)
    return member


def _stage_owners(writes: Writes, seen: Doc, account: Account, member: str, roles: list[Role] | None) -> None:
    """The account's owners once `member` has `roles` (None: removed), under the account's update time: two owners
    demoting each other at once cannot both land."""
    owners = people.owners_after(account.owners, member, roles)  # refuses to drop the last owner
    if owners != sorted(account.owners):
        writes.update(seen.key, {"owners": owners}, if_updated_at=seen.update_time)


# ---- the account's members ---------------------------------------------------------------------------------------


def list_members(store: Store, principal: auth.Principal) -> dict:
    """Two queries: the members and the pending invitations (an account has a handful of each)."""
    require_reader(principal)
    members = sorted((Member.model_validate(d.data) for d in store.query(store.members(principal.account_id))),
                     key=lambda m: (m.joined_at, m.id))
    invitations = sorted((Invitation.model_validate(d.data)
                          for d in store.query(store.invitations(principal.account_id))),
                         key=lambda i: (i.created_at, i.id))
    return MemberList(members=[MemberView(**m.model_dump(exclude={"account_id"})) for m in members],
                      invitations=[_invitation_view(i) for i in invitations]).model_dump(mode="json")


def invite_member(store: Store, principal: auth.Principal, request: InviteMemberRequest,
                  idem: IdempotencyRequest | None) -> Outcome:
    """Invite `email` with `roles` (owner only). Inviting the same email again replaces the invitation."""
    require_owner(principal, "invite people")
    email = people.check_email(request.email)
    roles = people.check_roles(request.roles)
    key = store.invitation(principal.account_id, people.invitation_id(email))

    def decide(docs: dict[Key, Doc], at: datetime) -> tuple[dict, Writes]:
        invitation = Invitation(id=key.id, account_id=principal.account_id, email=email, roles=roles,
                                invited_by=principal.actor, created_at=at)
        writes = Writes()
        writes.replace(key, invitation.model_dump(mode="python"), docs[key])
        return _invitation_view(invitation).model_dump(mode="json"), writes

    return commits.change(store, principal.account_id, idem, [key], decide,
                          busy="The invitation is changing too fast; retry.")


def _member_keys(store: Store, account_id: str, member_id: str) -> tuple[Key, Key, Key]:
    """A member's document, their person document (mem_<person id>) and the account."""
    if not member_id.startswith("mem_"):
        raise NotFound("No member with that id in this account.")
    return (store.member(account_id, member_id), store.person(member_id.removeprefix("mem_")),
            store.account(account_id))


def update_member(store: Store, principal: auth.Principal, member_id: str, request: UpdateMemberRequest,
                  idem: IdempotencyRequest | None) -> Outcome:
    """New roles for a member (owner only); the last owner cannot stop being one (409 `last_owner`)."""
    require_owner(principal, "change members' roles")
    roles = people.check_roles(request.roles)
    member_key, person_key, account_key = _member_keys(store, principal.account_id, member_id)

    def decide(docs: dict[Key, Doc], at: datetime) -> tuple[dict, Writes]:
        member, account = _load_member(docs, member_key, account_key)
        moved = member.model_copy(update={"roles": roles})
        writes = Writes()
        writes.update(member_key, {"roles": roles}, if_updated_at=docs[member_key].update_time)
        writes.replace(person_key, _with_account(docs[person_key], member.uid, None, account.id, roles, at),
                       docs[person_key])
        _stage_owners(writes, docs[account_key], account, member.id, roles)
        return _member_view(moved), writes

    outcome = commits.change(store, principal.account_id, idem, [member_key, person_key, account_key], decide,
                             busy="The account is changing too fast; retry.")
    auth.forget_person(outcome.body["uid"])
    return outcome


def remove_member(store: Store, principal: auth.Principal, member_id: str) -> None:
    """Remove a member (owner only; never the last owner), or withdraw a pending invitation (an `inv_` id). The
    removed person's next call is refused: at once on this instance, within the cache's TTL on others."""
    require_owner(principal, "remove members")
    if member_id.startswith("inv_"):
        _withdraw(store, principal.account_id, member_id)
        return
    member_key, person_key, account_key = _member_keys(store, principal.account_id, member_id)

    def decide(docs: dict[Key, Doc], at: datetime) -> tuple[dict, Writes]:
        member, account = _load_member(docs, member_key, account_key)
        writes = Writes()
        writes.delete(member_key, if_updated_at=docs[member_key].update_time)
        writes.replace(person_key, _with_account(docs[person_key], member.uid, None, account.id, None, at),
                       docs[person_key])
        _stage_owners(writes, docs[account_key], account, member.id, None)
        return {"uid": member.uid}, writes

    outcome = commits.change(store, principal.account_id, None, [member_key, person_key, account_key], decide,
                             busy="The account is changing too fast; retry.")
    auth.forget_person(outcome.body["uid"])


def _load_member(docs: dict[Key, Doc], member_key: Key, account_key: Key) -> tuple[Member, Account]:
    found, account = docs[member_key], docs[account_key]
    if found.data is None or account.data is None:
        raise NotFound("No member with that id in this account.")
    return Member.model_validate(found.data), Account.model_validate(account.data)


def _withdraw(store: Store, account_id: str, invitation_id: str) -> None:
    key = store.invitation(account_id, invitation_id)

    def decide(docs: dict[Key, Doc], _: datetime) -> tuple[dict, Writes]:
        if not docs[key].exists:
            raise NotFound("No invitation with that id in this account.")
        writes = Writes()
        writes.delete(key, if_updated_at=docs[key].update_time)
        return {}, writes

    commits.change(store, account_id, None, [key], decide, busy="The invitation is changing too fast; retry.")
