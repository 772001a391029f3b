"""What the AI work costs: the usage an agent reports (one model call, or a list of them), the price table
(`prices.json` beside this module: USD per million tokens for input, output and cache reads), and the pure cost
function that fills `cost_usd` when the agent did not send it. A model the table does not know keeps `cost_usd: null`
and is counted as unpriced, never guessed. Pure: the table's text is read by the runtime layer and handed in.

Token meanings (providers count differently; the agent maps its SDK's usage onto these):
- `input_tokens`: input billed at the full input rate. Anthropic: `input_tokens + cache_creation_input_tokens` (cache
  writes cost 1.25x input there: counting them as input understates them by a quarter). OpenAI: `prompt_tokens -
  prompt_tokens_details.cached_tokens` (Chat Completions) or `input_tokens - input_tokens_details.cached_tokens`
  (Responses).
- `output_tokens`: output, reasoning included.
- `cache_read_tokens`: cache hits (Anthropic `cache_read_input_tokens`, OpenAI `cached_tokens`).
Send one entry per model call: a tier that depends on the prompt's length (`long_prompt`) is decided per entry.

Money is computed in `Decimal` and rounded to the nano-dollar (1e-9 USD), so sums of many small costs do not drift.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints

NANO = Decimal("1e-9")
MAX_TOKENS = 10**12  # per call; far beyond any model, and within Firestore's int64 once summed
_DATED = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")  # claude-...-20250929, gpt-...-2026-04-01
_PROVIDER = re.compile(r"^[a-z0-9_-]+/")  # openai/gpt-6-sol, anthropic/claude-...


# ---- what an agent reports -------------------------------------------------------------------------------------


class ModelCall(BaseModel):
    """One model call's usage, as an agent reports it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: Annotated[str, StringConstraints(pattern=r"^[\x21-\x7E]{1,200}$")] = Field(
        description="The model id the provider was called with, e.g. claude-opus-5-5 or gpt-6-sol")
    input_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)] = Field(
        description="Input billed at the full input rate (cache writes included, cache reads not)")
    output_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)]
    cache_read_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)] | None = Field(
        default=None, description="Input served from the provider's prompt cache")
    cost_usd: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)] | None = Field(
        default=None, description="What the call cost; null: computed from the price table when the model is in it")


class Usage(RootModel[ModelCall | Annotated[list[ModelCall], Field(max_length=1000)]]):
    """`usage` on a transition or heartbeat: one model call, or a list of them."""

    def calls(self) -> list[ModelCall]:
        return list(self.root) if isinstance(self.root, list) else [self.root]


# ---- the price table -------------------------------------------------------------------------------------------

Rate = Annotated[Decimal, Field(ge=0, le=100_000)]


class _Rates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Rate
    output: Rate
    cache_read: Rate


class _LongPrompt(_Rates):
    above_tokens: Annotated[int, Field(ge=1)]


class ModelPrice(_Rates):
    """One model's USD per million tokens, and where the figures come from."""

    source: Annotated[str, StringConstraints(min_length=1)]
    checked: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    long_prompt: _LongPrompt | None = None

    def rates_for(self, prompt_tokens: int) -> _Rates:
        if self.long_prompt and prompt_tokens > self.long_prompt.above_tokens:
            return self.long_prompt
        return self


class _PricesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", alias="_comment")
    currency: str = Field(pattern=r"^USD$")
    per_tokens: int = Field(ge=1_000_000, le=1_000_000)
    models: dict[Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$")], ModelPrice]


@dataclass(frozen=True, slots=True)
class PriceTable:
    models: dict[str, ModelPrice]

    def find(self, model: str) -> ModelPrice | None:
        """The price of `model`: its exact id, else without a provider prefix (`openai/`) and/or a date suffix
        (`-20250929`, `-2026-04-01`). Nothing else is guessed: an unknown model is unpriced."""
        name = model.strip()
        for candidate in (name, _PROVIDER.sub("", name)):
            for key in (candidate, _DATED.sub("", candidate)):
                if key in self.models:
                    return self.models[key]
        return None


def parse_prices(text: str) -> PriceTable:
    """The price table from the text of a prices file (numbers kept exact as Decimal). Raises ValueError."""
    spec = _PricesFile.model_validate(json.loads(text, parse_float=Decimal))
    return PriceTable(dict(spec.models))


# ---- cost --------------------------------------------------------------------------------------------------------


def cost_usd(call: ModelCall, table: PriceTable) -> Decimal | None:
    """What one call cost by the table, to the nano-dollar; None if the table does not know its model."""
    price = table.find(call.model)
    if price is None:
        return None
    cached = call.cache_read_tokens or 0
    rates = price.rates_for(call.input_tokens + cached)
    total = (call.input_tokens * rates.input + call.output_tokens * rates.output + cached * rates.cache_read)
    return (total / 1_000_000).quantize(NANO)


def priced(call: ModelCall, table: PriceTable) -> ModelCall:
    """The call with `cost_usd` filled from the table when the agent did not send one (an agent's own figure is
    kept: it may know of discounts the table does not). Unknown model and no figure: `cost_usd` stays null."""
    if call.cost_usd is not None:
        return call
    cost = cost_usd(call, table)
    return call if cost is None else call.model_copy(update={"cost_usd": float(cost)})


def price_usage(usage: Usage | None, table: PriceTable) -> list[ModelCall]:
    return [priced(call, table) for call in usage.calls()] if usage is not None else []


# ---- totals ------------------------------------------------------------------------------------------------------

NANOS_PER_USD = 10**9


def nanos(usd: float | Decimal) -> int:
    """USD as integer nano-dollars (a float through its shortest exact decimal text, `repr`), rounded half-even."""
    amount = usd if isinstance(usd, Decimal) else Decimal(repr(usd))
    return int(amount.quantize(NANO) * NANOS_PER_USD)


def usd(amount_nanos: int) -> float:
    return float(Decimal(amount_nanos).scaleb(-9))


class UsageTotals(BaseModel):
    """Token and cost totals over some calls, as the API shows them; `unpriced_calls` counts the calls whose cost is
    unknown (null), which `cost_usd` therefore leaves out."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0


class Tally(BaseModel):
    """Totals as they are stored and added: integers only (cost in nano-dollars), so sums are exact in any order and
    the store can add them server-side (Firestore's int64 holds 9.2 billion USD)."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cost_nanousd: int = 0
    unpriced_calls: int = 0

    @classmethod
    def of(cls, calls: list[ModelCall]) -> Tally:
        """The totals of `calls` (already priced: a call whose `cost_usd` is still null counts as unpriced)."""
        return cls(input_tokens=sum(c.input_tokens for c in calls), output_tokens=sum(c.output_tokens for c in calls),
                   cache_read_tokens=sum(c.cache_read_tokens or 0 for c in calls),
                   cost_nanousd=sum(nanos(c.cost_usd) for c in calls if c.cost_usd is not None),
                   unpriced_calls=sum(1 for c in calls if c.cost_usd is None))

    @classmethod
    def of_view(cls, totals: UsageTotals | None) -> Tally:
        if totals is None:
            return cls()
        return cls(input_tokens=totals.input_tokens, output_tokens=totals.output_tokens,
                   cache_read_tokens=totals.cache_read_tokens, cost_nanousd=nanos(totals.cost_usd),
                   unpriced_calls=totals.unpriced_calls)

    def __add__(self, other: Tally) -> Tally:
        return Tally(**{name: getattr(self, name) + getattr(other, name) for name in Tally.model_fields})

    def __sub__(self, other: Tally) -> Tally:
        return Tally(**{name: getattr(self, name) - getattr(other, name) for name in Tally.model_fields})

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in Tally.model_fields)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in Tally.model_fields}

    def view(self) -> UsageTotals:
        return UsageTotals(input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                           cache_read_tokens=self.cache_read_tokens, cost_usd=usd(self.cost_nanousd),
                           unpriced_calls=self.unpriced_calls)


def add(totals: UsageTotals, calls: list[ModelCall]) -> UsageTotals:
    """`totals` plus `calls` (already priced), exactly (added as integer nano-dollars)."""
    return (Tally.of_view(totals) + Tally.of(calls)).view()
