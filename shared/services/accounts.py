"""Account and API key administration (the admin command's use cases), and the account as the API shows it."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.firestore import Doc, Store, Writes
from shared.domain import billing
from shared.domain import members as people
from shared.domain.errors import NotFound, ValidationFailed
from shared.domain.models import Account, AccountUsage, AccountView, ApiKey, MonthUsage, PlanLimits
from shared.domain.pricing import Tally
from shared.domain.state_machine import Role
from shared.runtime import clock
from shared.runtime.config import config
from shared.services import commits, keys
from shared.services.auth import hash_key, new_key


def _check_plan(plan: str) -> None:
    catalog = config().plans
    if catalog.find(plan) is None:
        raise ValueError(f"no plan {plan!r}; the plans are {', '.join(catalog.plans)} (shared/domain/plans.json)")


def _create(store: Store, writes: Writes, what: str) -> None:
    if not commits.write_once(store, writes):
        raise ValueError(f"{what} already exists")


def create_account(store: Store, name: str, *, plan: str = "dev", entitled: bool = False,
                   account_id: str | None = None) -> Account:
    _check_plan(plan)
    account = Account(id=account_id or "acct_" + secrets.token_hex(8), name=name, plan=plan, entitled=entitled,
                      created_at=clock.now())
    writes = Writes()
    writes.create(store.account(account.id), account.model_dump(mode="python"))
    _create(store, writes, f"account {account.id}")
    return account


def _load_account(doc: Doc) -> Account:
    if not doc.exists:
        raise NotFound(f"No account {doc.id}.")
    return Account.model_validate(doc.data)


def get_account(store: Store, account_id: str) -> Account:
    return _load_account(store.get(store.account(account_id)))


def set_account(store: Store, account_id: str, *, plan: str | None = None, entitled: bool | None = None) -> Account:
    if plan is not None:
        _check_plan(plan)
    key = store.account(account_id)
    changes = {k: v for k, v in {"plan": plan, "entitled": entitled}.items() if v is not None}

    def attempt(number: int) -> tuple[Account, Writes]:
        doc = store.get(key)
        account = _load_account(doc).model_copy(update=changes)
        writes = Writes()
        if changes:
            writes.update(key, changes, if_updated_at=doc.update_time)
        return account, writes

    return commits.run(store, attempt, busy=f"Account {account_id} is changing too fast; retry.")


def account_view(account: Account, at: datetime, used: Mapping[str, Any] | None = None) -> dict:
    """GET /v1/account's answer: plan, entitlement (and why), the plan's limits and usage: active workflows, and this
    month's totals as the workflows' commits keep them (`used`: the month's usage document, None when there is
    none yet)."""
    settings = config()
    used = used or {}
    this_month = Tally(**{name: used.get(name, 0) for name in Tally.model_fields}).view()
    standing = billing.standing(account, settings.plans, at, timedelta(days=settings.billing_grace_days))
    view = AccountView(
        id=account.id, name=account.name, plan=standing.plan_name, entitlement=standing.entitlement,
        limits=PlanLimits(**standing.plan.limits()) if standing.plan else None,
        usage=AccountUsage(active_workflows=account.active_workflows,
                           this_month=MonthUsage(month=at.strftime("%Y-%m"), **this_month.model_dump())))
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
                    prefix=secret[:12], created_at=clock.now())
    writes = Writes()
    writes.create(store.api_key(hash_key(secret)), record.model_dump(mode="python"))
    _create(store, writes, "this key")
    return secret, record


def find_key(store: Store, secret: str) -> ApiKey | None:
    doc = store.get(store.api_key(hash_key(secret)))
    return ApiKey.model_validate(doc.data) if doc.exists else None


def list_keys(store: Store, account_id: str) -> list[ApiKey]:
    docs = store.query(store.api_keys(), filters=[("account_id", "==", account_id)])
    return sorted((ApiKey.model_validate(d.data) for d in docs), key=lambda k: k.created_at)


def revoke_key(store: Store, key_id: str) -> ApiKey:
    return keys.revoke_key(store, key_id)
