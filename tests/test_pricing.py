"""The price table and the cost function: every entry says where its figures come from; a known model's cost is
filled to the nano-dollar (exact decimals, the long-prompt tier by the call's own prompt), an agent's own figure is
kept, an unknown model stays unpriced (null) and is counted; `usage` is one call or a list; totals add exactly."""

from __future__ import annotations

import json
from decimal import Decimal

import pydantic
import pytest

from shared.domain import pricing
from shared.domain.pricing import ModelCall, Usage, UsageTotals
from shared.runtime.config import PRICES_FILE, config


@pytest.fixture(scope="module")
def table() -> pricing.PriceTable:
    return pricing.parse_prices(PRICES_FILE.read_text())


def call(model: str = "claude-opus-5-5", i: int = 0, o: int = 0, c: int | None = None, cost=None) -> ModelCall:
    return ModelCall(model=model, input_tokens=i, output_tokens=o, cache_read_tokens=c, cost_usd=cost)


def test_the_table_has_current_anthropic_and_openai_models_each_with_its_source(table):
    assert any(m.startswith("claude-") for m in table.models) and any(m.startswith("gpt-") for m in table.models)
    for name, price in table.models.items():
        assert price.source.startswith("https://"), name
        assert price.output >= price.input >= price.cache_read, name  # a sanity check against swapped columns
        if price.long_prompt:
            assert price.long_prompt.input >= price.input and price.long_prompt.output >= price.output, name
    assert config().prices.models.keys() == table.models.keys()


def test_cost_is_tokens_times_price_per_million_to_the_nano_dollar(table):
    # claude-opus-5-5: 4 in, 20 out, 0.20 cache read per million
    assert pricing.cost_usd(call(i=1_000, o=2_000, c=10_000), table) == Decimal("0.046000000")
    assert pricing.cost_usd(call(i=1, o=0), table) == Decimal("0.000004000")
    assert pricing.cost_usd(call("gpt-6-luna", i=7, o=3, c=11), table) == Decimal("0.000002310")
    assert pricing.cost_usd(call(i=0, o=0), table) == 0


def test_the_long_prompt_tier_applies_to_the_whole_call_above_its_threshold(table):
    # gpt-6-sol: 2 / 10 / 0.20, and 4 / 15 / 0.40 once input + cache reads exceed 272,000
    at = call("gpt-6-sol", i=200_000, o=1_000, c=72_000)
    above = call("gpt-6-sol", i=200_000, o=1_000, c=72_001)
    assert pricing.cost_usd(at, table) == Decimal("0.4244")  # 0.4 + 0.01 + 0.0144
    assert pricing.cost_usd(above, table) == Decimal("0.8438004")  # 0.8 + 0.015 + 0.0288004


def test_model_names_match_exactly_or_without_a_date_suffix_or_provider_prefix(table):
    opus = table.models["claude-opus-5-5"]
    assert table.find("claude-opus-5-5") is opus
    assert table.find("claude-opus-5-5-20260922") is opus
    assert table.find("anthropic/claude-opus-5-5") is opus
    assert table.find("gpt-6-sol-2026-09-22") is table.models["gpt-6-sol"]
    for unknown in ("claude-opus", "claude-opus-5-5-fast", "gpt-6", "CLAUDE-OPUS-5-5", "my-local-llama"):
        assert table.find(unknown) is None, unknown


def test_the_agents_own_figure_is_kept_and_an_unknown_model_stays_unpriced(table):
    assert pricing.priced(call(i=1_000_000, cost=0.5), table).cost_usd == 0.5
    assert pricing.priced(call(i=1_000_000), table).cost_usd == 4.0
    assert pricing.priced(call("my-local-llama", i=10, o=10), table).cost_usd is None
    assert pricing.priced(call("my-local-llama", i=10, o=10, cost=0.01), table).cost_usd == 0.01


def test_usage_is_one_call_or_a_list():
    one = Usage.model_validate_json('{"model": "gpt-6-sol", "input_tokens": 5, "output_tokens": 7}')
    assert [c.input_tokens for c in one.calls()] == [5]
    many = Usage.model_validate_json('[{"model": "a", "input_tokens": 1, "output_tokens": 2, "cost_usd": 0},'
                                     ' {"model": "b", "input_tokens": 3, "output_tokens": 4, '
                                     '"cache_read_tokens": 9, "cost_usd": 1.25}]')
    assert [(c.model, c.cache_read_tokens, c.cost_usd) for c in many.calls()] == [("a", None, 0.0), ("b", 9, 1.25)]
    assert Usage.model_validate_json("[]").calls() == []


@pytest.mark.parametrize("body", [
    {"model": "a", "input_tokens": -1, "output_tokens": 0},
    {"model": "a", "input_tokens": "5", "output_tokens": 0},  # strict: no coercion
    {"model": "a", "input_tokens": 1.5, "output_tokens": 0},
    {"model": "a", "input_tokens": 10**13, "output_tokens": 0},
    {"model": "a", "input_tokens": 1, "output_tokens": 0, "cost_usd": -0.01},
    {"model": "a", "input_tokens": 1, "output_tokens": 0, "cost_usd": "0.5"},
    {"model": "a", "input_tokens": 1, "output_tokens": 0, "cache_write_tokens": 3},  # unknown field
    {"model": "", "input_tokens": 1, "output_tokens": 0},
    {"model": "has space", "input_tokens": 1, "output_tokens": 0},
    {"input_tokens": 1, "output_tokens": 0},
    [{"model": "a", "input_tokens": 1}],
    "gpt-6-sol",
])
def test_bad_usage_is_refused(body):
    with pytest.raises(pydantic.ValidationError):
        Usage.model_validate_json(json.dumps(body))


def test_nan_and_infinite_costs_are_refused():
    for text in ("NaN", "Infinity"):
        with pytest.raises(pydantic.ValidationError):
            Usage.model_validate_json(f'{{"model": "a", "input_tokens": 1, "output_tokens": 0, "cost_usd": {text}}}')


def test_totals_add_exactly_and_count_the_unpriced_calls(table):
    calls = pricing.price_usage(Usage.model_validate([
        {"model": "claude-haiku-5-5", "input_tokens": 123, "output_tokens": 45, "cache_read_tokens": 6},
        {"model": "my-local-llama", "input_tokens": 10, "output_tokens": 20},
    ]), table)
    totals = UsageTotals()
    for _ in range(1000):
        totals = pricing.add(totals, calls)
    one = pricing.cost_usd(calls[0], table)
    assert totals.cost_usd == float(one * 1000)  # no float drift over a thousand additions
    assert (totals.input_tokens, totals.output_tokens, totals.cache_read_tokens, totals.unpriced_calls) == (
        133_000, 65_000, 6_000, 1000)
    assert pricing.price_usage(None, table) == []


@pytest.mark.parametrize("change", [
    lambda d: d["models"]["gpt-6-sol"].pop("source"),
    lambda d: d["models"]["gpt-6-sol"].update(input=-1),
    lambda d: d["models"]["gpt-6-sol"].update(cache_write=1),
    lambda d: d.update(currency="EUR"),
    lambda d: d.update(per_tokens=1000),
    lambda d: d["models"].update({"Bad Name": d["models"]["gpt-6-sol"]}),
])
def test_a_broken_price_file_is_refused(change):
    data = json.loads(PRICES_FILE.read_text())
    change(data)
    with pytest.raises(pydantic.ValidationError):
        pricing.parse_prices(json.dumps(data))
