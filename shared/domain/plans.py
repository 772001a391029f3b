"""The plans: each plan's limits come from `plans.json` beside this module (in the repo, reviewed like code) and
each sold plan's Stripe price id from the environment variable the file names (so test and live mode use different
prices without a code change). Pure: `parse` checks the file's text and resolves the prices from the mapping it is
given. The configuration (`shared.runtime.config`) reads the file and the environment once per instance, at start,
so a bad plans file stops the instance instead of failing a customer's request.

The limits are read by workflow creation (`max_active_workflows`), artifacts (`max_artifact_bytes`) and the
scheduled cleanup (`retention_days`, `stale_after_days`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

DEV = "dev"

PlanName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,127}$")]


class PlanSpec(BaseModel):
    """One plan as written in the plans file."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    price_env: EnvName | None = Field(
        description="The environment variable that holds this plan's Stripe price id; null: never sold.")
    max_active_workflows: Annotated[int, Field(ge=1)]
    retention_days: Annotated[int, Field(ge=1)]
    max_artifact_bytes: Annotated[int, Field(ge=1)]
    stale_after_days: Annotated[int, Field(ge=1)] = 30


class PlansFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    comment: str = Field(default="", alias="_comment")
    plans: dict[PlanName, PlanSpec]

    @model_validator(mode="after")
    def _rules(self) -> PlansFile:
        if DEV not in self.plans:
            raise ValueError("a `dev` plan is required (accounts made by the admin command and `make run` use it)")
        if self.plans[DEV].price_env is not None:
            raise ValueError("the `dev` plan is never sold: its price_env must be null")
        envs = [p.price_env for p in self.plans.values() if p.price_env]
        if dupes := sorted({e for e in envs if envs.count(e) > 1}):
            raise ValueError(f"price_env named by more than one plan: {dupes}")
        return self


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    price_env: str | None
    price_id: str | None  # None: never sold (dev), or sold but its price variable is not set on this instance
    max_active_workflows: int
    retention_days: int
    max_artifact_bytes: int
    stale_after_days: int

    @property
    def for_sale(self) -> bool:
        return self.price_env is not None

    def limits(self) -> dict[str, int]:
        return {"max_active_workflows": self.max_active_workflows, "retention_days": self.retention_days,
                "max_artifact_bytes": self.max_artifact_bytes, "stale_after_days": self.stale_after_days}


class UnknownPlan(LookupError):
    pass


@dataclass(frozen=True)
class Catalog:
    plans: dict[str, Plan]

    def get(self, name: str) -> Plan:
        try:
            return self.plans[name]
        except KeyError:
            raise UnknownPlan(f"no plan {name!r}; plans: {', '.join(self.plans)}") from None

    def find(self, name: str | None) -> Plan | None:
        return self.plans.get(name) if name else None

    def for_price(self, price_id: str | None) -> Plan | None:
        """The plan sold at this Stripe price, if any."""
        if not price_id:
            return None
        return next((p for p in self.plans.values() if p.price_id == price_id), None)

    def for_sale(self) -> list[Plan]:
        return [p for p in self.plans.values() if p.for_sale]

    def price_variables(self) -> list[str]:
        """The environment variables that hold the sold plans' price ids."""
        return sorted(p.price_env for p in self.plans.values() if p.price_env)


def parse(text: bytes | str, environ: Mapping[str, str]) -> Catalog:
    """Check a plans file's text; resolve each sold plan's price id from `environ`. Raises on any mistake
    (pydantic.ValidationError for the file, ValueError for two plans at one price)."""
    spec = PlansFile.model_validate_json(text)
    plans = {
        name: Plan(name=name, price_env=p.price_env,
                   price_id=(environ.get(p.price_env) or "").strip() or None if p.price_env else None,
                   max_active_workflows=p.max_active_workflows, retention_days=p.retention_days,
                   max_artifact_bytes=p.max_artifact_bytes, stale_after_days=p.stale_after_days)
        for name, p in spec.plans.items()
    }
    prices = [p.price_id for p in plans.values() if p.price_id]
    if dupes := sorted({x for x in prices if prices.count(x) > 1}):
        raise ValueError(f"two plans are configured with the same Stripe price id: {dupes}")
    return Catalog(plans)
