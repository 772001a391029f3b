"""Account and API key administration (the admin command's use cases), and the account as the API shows it."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from shared.adapters.firestore import Store, Writes
from shared.domain import billing
from shared.domain import members as people
from shared.domain.errors import NotFound, ValidationFailed
from shared.domain.models import Account, AccountUsage, AccountView, ApiKey, PlanLimits
from shared.domain.plans import catalog
from shared.domain.state_machine import Role
from shared.runtime.config import config
from shared.services import keys
from shared.services.auth import hash_key, new_key


def _now() -> datetime:
    return datetime.now(UTC)


def _check_plan(plan: str) -> None:
    if catalog().find(plan) is None:
        raise ValueError(f"no plan {plan!r}; the plans are {', '.join(catalog().plans)} (shared/domain/plans.json)")


def create_account(store: Store, name: str, *, plan: str = "dev", entitled: bool = False,
                   account_id: str | None = None) -> Account:
    _check_plan(plan)
    account = Account(id=account_id or "acct_" + secrets.token_hex(8), name=name, plan=plan, entitled=entitled,
                      created_at=_now())
    writes = Writes()
    writes.create(store.account(account.id), account.model_dump(mode="python"))
    store.commit(writes)
    return account


def get_account(store: Store, account_id: str) -> Account:
    snap = store.get(store.account(account_id))
    if not snap.exists:
        raise NotFound(f"No account {account_id}.")
    return Account.model_validate(snap.to_dict())


def set_account(store: Store, account_id: str, *, plan: str | None = None, entitled: bool | None = None) -> Account:
    if plan is not None:
        _check_plan(plan)
    snap = store.get(store.account(account_id))
    if not snap.exists:
        raise NotFound(f"No account {account_id}.")
    changes = {k: v for k, v in {"plan": plan, "entitled": entitled}.items() if v is not None}
    writes = Writes()
    writes.update(store.account(account_id), changes, if_updated_at=snap.update_time)
    store.commit(writes)
    return get_account(store, account_id)


def account_view(account: Account, at: datetime) -> dict:
    """GET /v1/account's answer: plan, entitlement (and why), the plan's limits and current usage."""
    standing = billing.standing(account, catalog(), at, timedelta(days=config().billing_grace_days))
    view = AccountView(
        id=account.id, name=account.name, plan=standing.plan_name, entitlement=standing.entitlement,
        limits=PlanLimits(**standing.plan.limits()) if standing.plan else None,
        usage=AccountUsage(active_workflows=account.active_workflows))
    return view.model_dump(mode="json")


def validate_roles(roles: list[str]) -> list[Role]:
    """The admin command's --roles: the same rule as the API's (OWNER and/or agent roles, or VIEWER alone)."""
    try:
        return people.check_roles([Role(r.strip().upper()) for r in roles if r.strip()])
    except (ValueError, ValidationFailed) as exc:
        raise ValueError(f"roles must be OWNER and/or agent roles, or VIEWER alone; got {roles}: {exc}") from exc


def create_key(store: Store, account_id: str, roles: list[Role], *, name: str = "", env: str = "dev",
               secret: str | None = None) -> tuple[str, ApiKey]:
    """Make a key (or register `secret` as one) and return the secret, shown this once, with its record."""
    get_account(store, account_id)
    secret = secret or new_key(env)
    record = ApiKey(key_id="key_" + secrets.token_hex(8), account_id=account_id, roles=roles, name=name,
                    prefix=secret[:12], created_at=_now())
    writes = Writes()
    writes.create(store.api_key(hash_key(secret)), record.model_dump(mode="python"))
    store.commit(writes)
    return secret, record


def find_key(store: Store, secret: str) -> ApiKey | None:
    snap = store.get(store.api_key(hash_key(secret)))
    return ApiKey.model_validate(snap.to_dict()) if snap.exists else None


def list_keys(store: Store, account_id: str) -> list[ApiKey]:
    snaps = store.query(store.api_keys(), filters=[("account_id", "==", account_id)])
    return sorted((ApiKey.model_validate(s.to_dict()) for s in snaps), key=lambda k: k.created_at)


def revoke_key(store: Store, key_id: str) -> ApiKey:
    return keys.revoke_key(store, key_id)
