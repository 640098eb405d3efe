"""What one registry model is: :class:`ModelSpec` with its :class:`Quality` and :class:`Latency`.

The shapes and checks of a model entry, shared by the file reader (:mod:`.models_file`) and the
registry (:mod:`.registry`); neither reading files nor looking names up happens here.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from somaagent.types import ModelInfo

__all__ = [
    "CAPABILITIES",
    "FREE_PROVIDERS",
    "KNOWN_PROVIDERS",
    "PRICE_FIELDS",
    "RESERVED_NAMES",
    "TASK_CATEGORIES",
    "Capability",
    "Latency",
    "ModelSpec",
    "Quality",
    "TaskCategory",
]

Capability = Literal["tools", "json_mode", "vision", "streaming", "reasoning"]
"""What a model can do: tool calls, a native JSON mode, image input, streaming, hidden reasoning."""

CAPABILITIES: frozenset[str] = frozenset(get_args(Capability))

TaskCategory = Literal["coding", "math", "reasoning", "writing", "extraction", "chat"]
"""The task categories that carry their own quality score."""

TASK_CATEGORIES: tuple[str, ...] = get_args(TaskCategory)

KNOWN_PROVIDERS: tuple[str, ...] = ("openai", "anthropic", "openai_compatible", "local")
"""The built-in providers. ``openai_compatible`` is an open model behind an OpenAI-compatible
server (vLLM, Ollama, llama.cpp server, Together, Groq); plugins may add other ids."""

FREE_PROVIDERS: frozenset[str] = frozenset({"local"})
"""Providers whose models may be priced at 0 (they run in this process)."""

RESERVED_NAMES: frozenset[str] = frozenset({"auto"})
"""Names a model may not take: ``auto`` asks the router to choose."""

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"
_PACKAGED_SOURCE = "packaged models.yaml"
PRICE_FIELDS = ("input_cost_per_mtok", "output_cost_per_mtok", "cached_input_cost_per_mtok")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Quality(_Frozen):
    """Quality scores in [0, 1]; comparable across models within a category, not across them.

    ``models.yaml`` says where each figure comes from (a benchmark and its date); a figure with
    no source is left out. A category without a score falls back to ``overall``, and a model
    without ``overall`` to the mean of the scores it has (at least one is required).
    """

    overall: float | None = Field(default=None, ge=0.0, le=1.0)
    coding: float | None = Field(default=None, ge=0.0, le=1.0)
    math: float | None = Field(default=None, ge=0.0, le=1.0)
    reasoning: float | None = Field(default=None, ge=0.0, le=1.0)
    writing: float | None = Field(default=None, ge=0.0, le=1.0)
    extraction: float | None = Field(default=None, ge=0.0, le=1.0)
    chat: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _some_score(self) -> Quality:
        if not self._known():
            raise ValueError("give at least one quality score (overall or a task category)")
        return self

    def _known(self) -> list[float]:
        scores = (self.overall, self.coding, self.math, self.reasoning, self.writing)
        return [s for s in (*scores, self.extraction, self.chat) if s is not None]

    def for_task(self, category: TaskCategory | None = None) -> float:
        """The score for a task category; else ``overall``; else the mean of the known scores."""
        score: float | None = getattr(self, category) if category is not None else None
        if score is not None:
            return score
        if self.overall is not None:
            return self.overall
        known = self._known()
        return sum(known) / len(known)


class Latency(_Frozen):
    """A latency prior, used until live measurements of the model exist."""

    ttft_ms: float = Field(gt=0.0, allow_inf_nan=False, description="time to first token")
    tokens_per_s: float = Field(gt=0.0, allow_inf_nan=False, description="output tokens/second")

    def expected_ms(self, output_tokens: int) -> float:
        """Expected wall time of an answer ``output_tokens`` long, in milliseconds."""
        return self.ttft_ms + 1000.0 * max(output_tokens, 0) / self.tokens_per_s


def _price(description: str) -> Any:
    # strict: a price written as a string ("3") or a bool is a typo, not a number.
    return Field(ge=0.0, allow_inf_nan=False, strict=True, description=description)


class ModelSpec(_Frozen):
    """One model of the registry. Prices are USD per million tokens.

    Attributes:
        name: the registry name (``claude-3-sonnet``); what callers and the router use.
        provider: ``openai``, ``anthropic``, ``openai_compatible``, ``local``, or a plugin's id.
        provider_model_id: the id sent to the provider.
        aliases: other names that resolve to this model (snapshot ids, vendor ids).
        input_cost_per_mtok: price of prompt tokens.
        output_cost_per_mtok: price of completion tokens (hidden reasoning tokens included).
        cached_input_cost_per_mtok: price of prompt tokens read from the provider's prompt
            cache; ``None`` where the provider has no such price.
        context_window: prompt plus completion, in tokens.
        max_output_tokens: the most the model will generate in one answer.
        capabilities: a subset of :data:`CAPABILITIES`.
        quality: quality scores, see :class:`Quality`.
        latency: the latency prior, see :class:`Latency`.
        enabled: ``False`` hides the model (set in a user file).
        base_url: where to send requests; ``None`` uses the provider adapter's default.
        retires_on: the provider's announced retirement date, after which calls fail.
        last_resort: ``True``: the router picks the model only when no other is eligible
            (the embedded local model); naming it explicitly always works.
    """

    name: str = Field(pattern=_NAME_PATTERN, max_length=200)
    provider: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    provider_model_id: str = Field(min_length=1, max_length=200)
    aliases: tuple[str, ...] = ()
    input_cost_per_mtok: float = _price("USD per million prompt tokens")
    output_cost_per_mtok: float = _price("USD per million completion tokens")
    cached_input_cost_per_mtok: float | None = Field(
        default=None,
        ge=0.0,
        allow_inf_nan=False,
        strict=True,
        description="USD per million prompt tokens served from the provider's cache",
    )
    context_window: int = Field(gt=0, strict=True)
    max_output_tokens: int = Field(gt=0, strict=True)
    capabilities: frozenset[Capability] = frozenset()
    quality: Quality
    latency: Latency
    enabled: bool = True
    base_url: str | None = None
    retires_on: date | None = None
    last_resort: bool = False

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.name.casefold() in RESERVED_NAMES:
            raise ValueError(f"{self.name!r} is reserved (it asks the router to choose)")
        if self.provider not in FREE_PROVIDERS:
            free = [f for f in PRICE_FIELDS if getattr(self, f) == 0]
            if free:
                raise ValueError(
                    f"{', '.join(free)} is 0, allowed only for provider 'local'; "
                    "give the real price in USD per million tokens"
                )
        if (
            self.cached_input_cost_per_mtok is not None
            and self.cached_input_cost_per_mtok > self.input_cost_per_mtok
        ):
            raise ValueError("cached_input_cost_per_mtok is above input_cost_per_mtok")
        if self.max_output_tokens > self.context_window:
            raise ValueError("max_output_tokens is larger than context_window")
        for alias in self.aliases:
            if not alias or alias != alias.strip():
                raise ValueError(f"alias {alias!r} is empty or has surrounding spaces")
        return self

    def supports(self, *capabilities: Capability) -> bool:
        """Whether the model has every one of ``capabilities``."""
        return all(c in self.capabilities for c in capabilities)

    def quality_for(self, category: TaskCategory | None = None) -> float:
        """The quality score for a task category (``overall`` when it has none)."""
        return self.quality.for_task(category)

    def retired(self, today: date | None = None) -> bool:
        """Whether the provider's announced retirement date has passed."""
        return self.retires_on is not None and (today or date.today()) >= self.retires_on

    def to_info(self) -> ModelInfo:
        """The public description served by ``GET /v1/models``."""
        return ModelInfo(
            id=self.name,
            provider=self.provider,
            provider_model_id=self.provider_model_id,
            context_window=self.context_window,
            max_output_tokens=self.max_output_tokens,
            input_cost_per_mtok=self.input_cost_per_mtok,
            output_cost_per_mtok=self.output_cost_per_mtok,
        )
