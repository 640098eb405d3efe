"""Cost maths on hand-computed figures: prices are USD per million tokens."""

from __future__ import annotations

import random

import pytest

from somaagent.llm.cost import cost_breakdown, cost_usd, estimate_cost, format_usd
from somaagent.llm.registry import Latency, ModelRegistry, ModelSpec, Quality
from somaagent.types import Usage


def make_spec(
    input_price: float,
    output_price: float,
    cached_price: float | None = None,
    *,
    provider: str = "openai",
) -> ModelSpec:
    return ModelSpec(
        name="priced",
        provider=provider,
        provider_model_id="priced-1",
        input_cost_per_mtok=input_price,
        output_cost_per_mtok=output_price,
        cached_input_cost_per_mtok=cached_price,
        context_window=100_000,
        max_output_tokens=4096,
        quality=Quality(overall=0.5),
        latency=Latency(ttft_ms=100, tokens_per_s=50),
    )


def usage(prompt: int, completion: int) -> Usage:
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def test_known_figure() -> None:
    # 1,000 x $3/M + 500 x $15/M = 0.003 + 0.0075
    assert cost_usd(make_spec(3, 15), usage(1_000, 500)) == 0.0105


def test_no_float_noise() -> None:
    # 0.1 + 0.2 in binary floating point is 0.30000000000000004
    spec = make_spec(0.1, 0.2)
    assert cost_usd(spec, usage(1_000_000, 1_000_000)) == 0.3
    assert repr(cost_usd(spec, usage(1_000_000, 1_000_000))) == "0.3"
    # $0.15/M is not exact in binary; 7 tokens of it are exactly 0.00000105
    assert cost_usd(make_spec(0.15, 0.6), usage(7, 0)) == 1.05e-06


def test_rounded_to_ten_decimal_places() -> None:
    # 1 token at $0.075/M is 7.5e-8, representable at 1e-10
    assert cost_usd(make_spec(0.075, 0.3), usage(1, 0)) == 7.5e-08
    # 1 token at $0.00001/M would be 1e-11: below the precision, rounds to 0
    assert cost_usd(make_spec(0.00001, 0.00001), usage(1, 0)) == 0.0


def test_zero_usage_costs_nothing() -> None:
    assert cost_usd(make_spec(3, 15), Usage()) == 0.0


def test_cached_tokens_at_the_cached_price() -> None:
    spec = make_spec(2.5, 10, 1.25)
    # 600 uncached x 2.5 + 400 cached x 1.25 + 500 x 10, per million
    # = 0.0015 + 0.0005 + 0.005
    assert cost_usd(spec, usage(1_000, 500), cached_prompt_tokens=400) == 0.007
    parts = cost_breakdown(spec, usage(1_000, 500), cached_prompt_tokens=400)
    assert (parts.input, parts.cached_input, parts.output) == (0.0015, 0.0005, 0.005)
    assert parts.total == 0.007


def test_cached_tokens_at_full_price_without_a_cached_price() -> None:
    spec = make_spec(3, 15)
    assert cost_usd(spec, usage(1_000, 500), cached_prompt_tokens=400) == 0.0105


def test_reasoning_tokens_are_output_and_not_billed_twice() -> None:
    spec = make_spec(1.1, 4.4)
    # completion 2,000 of which 1,500 reasoning: all 2,000 at $4.40/M; 100 prompt at $1.10/M
    total = cost_usd(spec, usage(100, 2_000), reasoning_tokens=1_500)
    assert total == 0.00891
    assert total == cost_usd(spec, usage(100, 2_000))
    parts = cost_breakdown(spec, usage(100, 2_000), reasoning_tokens=1_500)
    assert parts.reasoning == 0.0066
    assert parts.output == 0.0088


def test_parts_cannot_exceed_their_whole() -> None:
    spec = make_spec(3, 15, 0.3)
    with pytest.raises(ValueError, match="cached_prompt_tokens"):
        cost_usd(spec, usage(10, 10), cached_prompt_tokens=11)
    with pytest.raises(ValueError, match="reasoning_tokens"):
        cost_usd(spec, usage(10, 10), reasoning_tokens=11)
    with pytest.raises(ValueError, match=">= 0"):
        cost_usd(spec, usage(-1, 10))
    with pytest.raises(ValueError, match=">= 0"):
        estimate_cost(spec, 10, -1)


def test_estimate_cost() -> None:
    assert estimate_cost(make_spec(3, 15), 1_000, 500) == 0.0105
    assert estimate_cost(make_spec(30, 60), 8_000, 192) == 0.25152
    assert estimate_cost(make_spec(0, 0, provider="local"), 10_000, 10_000) == 0.0


def test_packaged_prices() -> None:
    registry = ModelRegistry.load()
    # gpt-4o-mini: $0.15 / $0.60; 12,345 prompt + 678 completion
    # = 0.00185175 + 0.0004068
    mini = registry.get("gpt-4o-mini")
    assert cost_usd(mini, usage(12_345, 678)) == 0.00225855
    # claude-3-haiku with 10,000 of 12,000 prompt tokens from the cache at $0.03/M:
    # 2,000 x 0.25 + 10,000 x 0.03 + 1,000 x 1.25 = 500 + 300 + 1,250 = 2,050 per million
    haiku = registry.get("claude-3-haiku")
    assert cost_usd(haiku, usage(12_000, 1_000), cached_prompt_tokens=10_000) == 0.00205
    assert cost_usd(registry.get("smollm2-135m-local"), usage(5_000, 5_000)) == 0.0


def test_the_integer_path_gives_the_decimal_figure() -> None:
    """``cost_usd`` takes an integer path for whole 1e-4 prices; it must give exactly the float
    the Decimal maths gives (``cost_breakdown``), for every registry price and awkward ones."""
    rng = random.Random(7)
    prices = {(s.input_cost_per_mtok, s.output_cost_per_mtok) for s in ModelRegistry.load().all()}
    prices |= {(0.1, 0.3), (0.15, 0.6), (2.5, 10.0), (0.0001, 9999.9999), (0.0, 0.0)}
    prices |= {
        (rng.randrange(0, 10**6) / 10**4, rng.randrange(0, 10**6) / 10**4) for _ in range(200)
    }
    counts = [0, 1, 7, 999, 1_000, 123_457, 10**6, 3 * 10**9]
    for input_price, output_price in sorted(prices):
        free = input_price == output_price == 0
        spec = make_spec(input_price, output_price, provider="local" if free else "openai")
        for prompt in counts:
            completion = rng.choice(counts)
            call = usage(prompt, completion)
            assert cost_usd(spec, call) == cost_breakdown(spec, call).total, (spec, call)


def test_prices_finer_than_the_integer_path_still_cost_exactly() -> None:
    spec = make_spec(0.123456, 1.000001)  # six decimals: the Decimal path
    assert cost_usd(spec, usage(10**6, 10**6)) == 1.123457
    assert cost_usd(spec, usage(1, 0)) == 1.235e-07  # 1.23456e-07 rounded to 10 places


def test_format_usd_drops_trailing_zeros() -> None:
    assert format_usd(0.0105) == "0.0105"
    assert format_usd(0.0) == "0"
    assert format_usd(12.0) == "12"
    assert format_usd(1.23456789e-07) == "0.0000001235"
