"""What a model call costs, in US dollars, from the registry's prices.

Token counts follow OpenAI's usage convention, which :class:`~somaagent.types.Usage` mirrors:

* ``usage.prompt_tokens`` counts every prompt token, *including* those served from the
  provider's prompt cache (``cached_prompt_tokens`` is a part of it). Anthropic reports cache
  reads apart from ``input_tokens``; its adapter adds them in.
* ``usage.completion_tokens`` counts every generated token, *including* hidden reasoning
  (``reasoning_tokens`` is a part of it), because providers bill reasoning as output. An adapter
  whose provider reports reasoning apart (Gemini's thoughts) adds it in.

The maths is done in :class:`decimal.Decimal` on the prices as written, and the result is
rounded to 10 decimal places, so ``1,000`` prompt and ``500`` completion tokens at $3 / $15 per
million cost exactly ``0.0105``, never ``0.010499999999999999``. A call without cached or
reasoning tokens at prices of at most four decimals (all of the registry's) takes a faster
integer path to the same float (see :func:`cost_usd`); the gateway's lean chat route needs it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from somaagent.llm.specs import ModelSpec
from somaagent.types import Usage

__all__ = ["CostBreakdown", "cost_breakdown", "cost_usd", "estimate_cost", "format_usd"]

_MILLION = Decimal(1_000_000)
_QUANTUM = Decimal("1e-10")


def _dec(price: float) -> Decimal:
    # repr(float) is the shortest string that round-trips, so 0.15 becomes Decimal("0.15"),
    # not the binary 0.1499999999999999944488848768742172978818416595458984375.
    return Decimal(repr(price))


def _usd(amount: Decimal) -> float:
    return float(amount.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN))


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """The cost of one call, in USD, split by what was billed.

    ``reasoning`` is the part of ``output`` spent on hidden reasoning; ``total`` is
    ``input + cached_input + output``.
    """

    input: float
    cached_input: float
    output: float
    reasoning: float
    total: float


def cost_breakdown(
    spec: ModelSpec,
    usage: Usage,
    *,
    cached_prompt_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> CostBreakdown:
    """The cost of a call, split into uncached input, cached input, output and reasoning.

    Args:
        spec: the model that answered.
        usage: the provider's token counts (see the module docstring for what they include).
        cached_prompt_tokens: how many of ``usage.prompt_tokens`` the provider served from its
            prompt cache; priced at ``spec.cached_input_cost_per_mtok``, or at the input price
            where the model has no cached price.
        reasoning_tokens: how many of ``usage.completion_tokens`` were hidden reasoning; billed
            at the output price, like the rest of the completion.

    Raises:
        ValueError: a count is negative, or a part is larger than the whole it belongs to.
    """
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    for name, value in (
        ("usage.prompt_tokens", prompt),
        ("usage.completion_tokens", completion),
        ("cached_prompt_tokens", cached_prompt_tokens),
        ("reasoning_tokens", reasoning_tokens),
    ):
        _check_count(name, value)
    if cached_prompt_tokens > prompt:
        raise ValueError(
            f"cached_prompt_tokens ({cached_prompt_tokens}) is part of usage.prompt_tokens "
            f"({prompt}) and cannot exceed it"
        )
    if reasoning_tokens > completion:
        raise ValueError(
            f"reasoning_tokens ({reasoning_tokens}) is part of usage.completion_tokens "
            f"({completion}) and cannot exceed it; add separately reported reasoning tokens "
            "to completion_tokens"
        )
    input_price = _dec(spec.input_cost_per_mtok)
    cached_price = (
        _dec(spec.cached_input_cost_per_mtok)
        if spec.cached_input_cost_per_mtok is not None
        else input_price
    )
    output_price = _dec(spec.output_cost_per_mtok)

    uncached = input_price * (prompt - cached_prompt_tokens) / _MILLION
    cached = cached_price * cached_prompt_tokens / _MILLION
    output = output_price * completion / _MILLION
    reasoning = output_price * reasoning_tokens / _MILLION
    return CostBreakdown(
        input=_usd(uncached),
        cached_input=_usd(cached),
        output=_usd(output),
        reasoning=_usd(reasoning),
        total=_usd(uncached + cached + output),
    )


# Prices with at most four decimals are whole numbers of 1e-4 USD per million tokens, so a
# call's cost is a whole number N of 1e-10 USD: exact, with nothing to round. N / 1e10 as
# int / int is the float nearest to it (Python's true division rounds correctly), as float()
# of the quantized Decimal is, so both paths give the same float.
_PRICE_SCALE = 10_000
_COST_UNITS_PER_USD = 10**10


@functools.lru_cache(maxsize=1024)
def _scaled_prices(input_price: float, output_price: float) -> tuple[int, int] | None:
    """Both prices in 1e-4 USD per million tokens, or None if one is not a whole number."""
    scaled: list[int] = []
    for price in (input_price, output_price):
        exact = _dec(price) * _PRICE_SCALE
        if not exact.is_finite() or exact < 0 or exact != exact.to_integral_value():
            return None
        scaled.append(int(exact))
    return scaled[0], scaled[1]


def cost_usd(
    spec: ModelSpec,
    usage: Usage,
    *,
    cached_prompt_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> float:
    """The cost of a call in USD, rounded to 10 decimal places.

    Args:
        spec: the model that answered.
        usage: the provider's token counts.
        cached_prompt_tokens: how many prompt tokens came from the provider's prompt cache
            (part of ``usage.prompt_tokens``), priced at the cached-input price where the model
            has one.
        reasoning_tokens: how many completion tokens were hidden reasoning (part of
            ``usage.completion_tokens``), billed as output.

    Raises:
        ValueError: a count is negative, or a part is larger than its whole.

    Example:
        1,000 prompt and 500 completion tokens at $3 / $15 per million::

            >>> cost_usd(spec, Usage(prompt_tokens=1000, completion_tokens=500))
            0.0105
    """
    if not cached_prompt_tokens and not reasoning_tokens:
        # The fast path: whole numbers only (a bad count falls through and is named below).
        prompt, completion = usage.prompt_tokens, usage.completion_tokens
        scaled = _scaled_prices(spec.input_cost_per_mtok, spec.output_cost_per_mtok)
        if (
            scaled is not None
            and type(prompt) is int
            and type(completion) is int
            and prompt >= 0
            and completion >= 0
        ):
            return (scaled[0] * prompt + scaled[1] * completion) / _COST_UNITS_PER_USD
    return cost_breakdown(
        spec, usage, cached_prompt_tokens=cached_prompt_tokens, reasoning_tokens=reasoning_tokens
    ).total


def estimate_cost(spec: ModelSpec, prompt_tokens: int, expected_output_tokens: int) -> float:
    """The expected cost of a call before making it, in USD (no prompt-cache discount).

    Args:
        spec: the model to call.
        prompt_tokens: the prompt's size (see :mod:`somaagent.llm.tokens`).
        expected_output_tokens: how long the answer is expected to be.

    Raises:
        ValueError: a count is negative.
    """
    _check_count("prompt_tokens", prompt_tokens)
    _check_count("expected_output_tokens", expected_output_tokens)
    usage = Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=expected_output_tokens,
        total_tokens=prompt_tokens + expected_output_tokens,
    )
    return cost_usd(spec, usage)


def format_usd(value: float) -> str:
    """A cost as the ``x-soma-cost-usd`` header and the CLI show it: up to 10 decimals, no
    trailing zeros (``0.0105``, ``0``)."""
    return f"{value:.10f}".rstrip("0").rstrip(".") or "0"
