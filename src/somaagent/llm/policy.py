"""What a caller asks of the router, and what the router answers.

:class:`RoutingPolicy` is the request side (a pydantic model that refuses unknown fields);
:class:`RoutingDecision` and its :class:`Candidate` entries are the answer, with
:meth:`RoutingDecision.as_dict` as the JSON that ``POST /v1/route`` serves. The router itself is
:mod:`somaagent.llm.router`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from somaagent.errors import PROBLEM_BASE, APIError, ServiceUnavailableError, ValidationError
from somaagent.llm.health import BreakerState
from somaagent.llm.learned.quality import PromptEstimate
from somaagent.llm.registry import Capability, ModelSpec, TaskCategory

__all__ = [
    "DEFAULT_MAX_QUALITY_DROP",
    "LOW_CONFIDENCE",
    "PROBLEM_IMPOSSIBLE_POLICY",
    "PROBLEM_PROMPT_TOO_LONG",
    "Candidate",
    "RoutingDecision",
    "RoutingPolicy",
    "parse_policy",
]

LOW_CONFIDENCE = 0.6
"""Below this, a decision is a close call: a ``min_quality`` policy then takes the safer model."""
DEFAULT_MAX_QUALITY_DROP = 0.05
"""Without ``min_quality``, how far below the best prediction the chosen model may be."""
PROBLEM_IMPOSSIBLE_POLICY = PROBLEM_BASE + "impossible-policy"
PROBLEM_PROMPT_TOO_LONG = PROBLEM_BASE + "prompt-too-long"


class RoutingPolicy(BaseModel):
    """What the caller asks of the router; every field is optional, unknown fields are errors.

    Attributes:
        min_quality: the predicted quality (0-1) the model must reach on this prompt; a prompt
            no model is predicted to reach it on is an error.
        max_quality_drop: how far below the best eligible model's prediction the choice may be
            (default 0.05 when ``min_quality`` is not set).
        max_cost_usd: the most the call may cost, estimated before it (prompt + expected answer).
        max_latency_ms: the most the call may take, estimated.
        capabilities: capabilities the model must have.
        providers: only models of these providers.
        models: only these models (registry names or aliases).
        task: the task category, instead of the guessed one.
        fallbacks: the fallback chain for this request, instead of the router's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_quality: float | None = Field(default=None, ge=0.0, le=1.0)
    max_quality_drop: float | None = Field(default=None, ge=0.0, le=1.0)
    max_cost_usd: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    max_latency_ms: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    capabilities: frozenset[Capability] = frozenset()
    providers: frozenset[str] | None = Field(default=None, min_length=1)
    models: tuple[str, ...] | None = Field(default=None, min_length=1, max_length=100)
    task: TaskCategory | None = None
    fallbacks: tuple[str, ...] | None = Field(default=None, max_length=10)


def parse_policy(
    raw: Mapping[str, Any], *, loc: Sequence[str | int] = ("body", "policy")
) -> RoutingPolicy:
    """Validate a policy from a request body.

    Raises:
        ValidationError: a field is unknown or invalid; ``errors`` gives each one's location.
    """
    try:
        return RoutingPolicy.model_validate(raw)
    except pydantic.ValidationError as exc:
        errors = [
            {"loc": [*loc, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()
        ]
        fields = ", ".join(".".join(str(p) for p in e["loc"][len(loc) :]) for e in errors)
        raise ValidationError(f"invalid routing policy: {fields}", errors=errors) from None


@dataclass(frozen=True, slots=True)
class Candidate:
    """One model as the router saw it for one request.

    Attributes:
        spec: the model.
        predicted_quality: its expected quality on this prompt (0-1).
        estimated_cost_usd: prompt tokens plus the expected answer at its prices.
        estimated_latency_ms: its latency prior, scaled by observed slowness and error rate.
        prompt_tokens: the prompt, counted with its tokenizer (or the stand-in one).
        expected_output_tokens: the answer length the estimates assume.
        error_rate: its recent error rate.
        breaker: its circuit breaker's state.
        excluded_by: the constraint that ruled it out (``None``: eligible).
        why: why it was chosen, excluded or passed over.
        chosen: whether it is the decision's model.
    """

    spec: ModelSpec
    predicted_quality: float
    estimated_cost_usd: float
    estimated_latency_ms: float
    prompt_tokens: int
    expected_output_tokens: int
    error_rate: float = 0.0
    breaker: BreakerState = "closed"
    excluded_by: str | None = None
    why: str = ""
    chosen: bool = False

    @property
    def eligible(self) -> bool:
        """Whether no hard constraint ruled the model out."""
        return self.excluded_by is None

    def excluded(self, field: str, why: str) -> Candidate:
        """This candidate, ruled out by ``field``."""
        return dataclasses.replace(self, excluded_by=field, why=why)

    def with_verdict(self, chosen: bool, why: str) -> Candidate:
        """This candidate with the final verdict."""
        return dataclasses.replace(self, chosen=chosen, why=why)

    def as_dict(self) -> dict[str, Any]:
        """The candidate as served by ``POST /v1/route``."""
        return {
            "model": self.spec.name,
            "provider": self.spec.provider,
            "eligible": self.eligible,
            "chosen": self.chosen,
            "predicted_quality": round(self.predicted_quality, 4),
            "estimated_cost_usd": self.estimated_cost_usd,
            "estimated_latency_ms": round(self.estimated_latency_ms, 1),
            "prompt_tokens": self.prompt_tokens,
            "expected_output_tokens": self.expected_output_tokens,
            "error_rate": round(self.error_rate, 4),
            "breaker": self.breaker,
            "excluded_by": self.excluded_by,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """The router's answer for one request.

    Attributes:
        spec: the chosen model.
        fallbacks: the models to try, in order, if it fails.
        candidates: every registry model with its estimates and verdict (empty for
            :meth:`Router.explicit`).
        reason: one sentence on why ``spec`` was chosen.
        policy: the policy applied.
        quality_bar: the predicted quality the choice had to reach.
        estimate: the prompt's complexity and the learned anchors' predictions.
        decision_ms: how long deciding took.
        confidence: how likely the choice is right about the quality bar, in [0.5, 1]
            (:func:`decision_confidence`); ``None`` for an explicit model.
    """

    spec: ModelSpec
    fallbacks: tuple[ModelSpec, ...]
    candidates: tuple[Candidate, ...]
    reason: str
    policy: RoutingPolicy
    quality_bar: float
    estimate: PromptEstimate
    decision_ms: float
    confidence: float | None = None

    @property
    def chain(self) -> tuple[ModelSpec, ...]:
        """The chosen model, then the fallbacks: what :mod:`~somaagent.llm.fallback` tries."""
        return (self.spec, *self.fallbacks)

    @property
    def chosen(self) -> Candidate | None:
        """The chosen model's candidate entry (``None`` for an explicit model)."""
        return next((c for c in self.candidates if c.chosen), None)

    @property
    def estimated_cost_usd(self) -> float | None:
        """The chosen model's estimated cost, before the call."""
        chosen = self.chosen
        return chosen.estimated_cost_usd if chosen is not None else None

    def as_dict(self) -> dict[str, Any]:
        """The decision as served by ``POST /v1/route`` (JSON-ready)."""
        chosen = self.chosen
        c = self.estimate.complexity
        prediction = self.estimate.prediction
        return {
            "model": self.spec.name,
            "provider": self.spec.provider,
            "provider_model_id": self.spec.provider_model_id,
            "reason": self.reason,
            "predicted_quality": round(chosen.predicted_quality, 4) if chosen else None,
            "quality_bar": round(self.quality_bar, 4),
            "estimated_cost_usd": chosen.estimated_cost_usd if chosen else None,
            "estimated_latency_ms": round(chosen.estimated_latency_ms, 1) if chosen else None,
            "fallbacks": [s.name for s in self.fallbacks],
            "complexity": {
                "difficulty": c.difficulty,
                "category": c.category,
                "expected_output_tokens": c.expected_output_tokens,
                "capabilities": sorted(c.capabilities),
                "features": c.features.as_dict(),
            },
            "evidence": self.estimate.evidence,
            "confidence": None if self.confidence is None else round(self.confidence, 3),
            "evidence_note": self.estimate.note,
            "learned": None
            if prediction is None
            else {
                "weak": round(prediction.weak, 4),
                "strong": round(prediction.strong, 4),
            },
            "policy": self.policy.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
            "candidates": [cand.as_dict() for cand in self.candidates],
            "decision_ms": round(self.decision_ms, 3),
        }


# -- explanations (used by the router) ----------------------------------------------------


def no_route_error(
    candidates: Sequence[Candidate], retry_in: Callable[[str], float | None]
) -> APIError:
    """The error for a decision that left no eligible model: a prompt too long for every
    context window (422), only open breakers left (503, with ``retry_after``), or a policy no
    model meets (422 naming each constraint that excluded models)."""
    by_field: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_field.setdefault(c.excluded_by or "", []).append(c)
    reachable = [
        c
        for c in candidates
        if c.excluded_by not in ("models", "providers", "available", "retired", "capabilities")
    ]
    if reachable and all(c.excluded_by == "context" for c in reachable):
        largest = max(reachable, key=lambda c: c.spec.context_window)
        message = (
            f"the prompt ({largest.prompt_tokens} tokens) is longer than every eligible "
            f"model's context window (the largest: {largest.spec.name}, "
            f"{largest.spec.context_window} tokens); shorten the conversation"
        )
        return ValidationError(
            message,
            errors=[{"loc": ["body", "messages"], "msg": message, "type": "prompt_too_long"}],
            problem_type=PROBLEM_PROMPT_TOO_LONG,
        )
    if reachable and all(c.excluded_by == "breaker" for c in reachable):
        wait = min(retry_in(c.spec.name) or 0.0 for c in reachable)
        return ServiceUnavailableError(
            "every model that meets the policy is failing (circuit open); retry later",
            retry_after=max(wait, 1.0),
        )
    parts = [
        f"{len(cs)} {'is' if len(cs) == 1 else 'are'} excluded by {field} "
        f"(e.g. {cs[0].spec.name}: {cs[0].why})"
        for field, cs in sorted(by_field.items(), key=lambda kv: -len(kv[1]))
    ]
    message = "no model satisfies the routing policy: " + "; ".join(parts)
    fields = [f for f in by_field if f in RoutingPolicy.model_fields] or ["policy"]
    return ValidationError(
        message,
        errors=[
            {
                "loc": ["body", "policy", f],
                "msg": "no model meets this constraint",
                "type": "impossible_policy",
            }
            for f in fields
        ],
        problem_type=PROBLEM_IMPOSSIBLE_POLICY,
    )


def verdict(
    c: Candidate, chosen: Candidate, bar: float, tie_tolerance: float, *, safer: bool = False
) -> Candidate:
    """``c`` with why it was chosen or passed over (excluded ones keep their reason);
    ``safer``: a low-confidence ``min_quality`` decision took the best-predicted model."""
    if c.spec.name == chosen.spec.name:
        if safer:
            return c.with_verdict(
                True, "chosen: the best-predicted model (a close call: min_quality plays safe)"
            )
        return c.with_verdict(True, "chosen: the cheapest model predicted to reach the bar")
    if not c.eligible:
        return c
    if c.spec.last_resort:
        why = "last resort: considered only when no other model is eligible"
    elif c.predicted_quality < bar - 1e-12:
        why = f"predicted {c.predicted_quality:.3f} is below the bar {bar:.3f}"
    elif safer:
        why = (
            f"predicted {c.predicted_quality:.3f} reaches the bar, but the call was close: "
            "min_quality took the best-predicted model"
        )
    elif c.estimated_cost_usd > chosen.estimated_cost_usd * (1 + tie_tolerance):
        why = (
            f"reaches the bar but costs more (est. ${c.estimated_cost_usd:.6f} vs "
            f"${chosen.estimated_cost_usd:.6f})"
        )
    else:
        why = (
            f"ties on cost but is expected slower ({c.estimated_latency_ms:.0f} ms vs "
            f"{chosen.estimated_latency_ms:.0f} ms)"
        )
    return c.with_verdict(False, why)


def explain_choice(
    chosen: Candidate,
    estimate: PromptEstimate,
    policy: RoutingPolicy,
    bar: float,
    best: Candidate,
    *,
    safer: bool = False,
) -> str:
    """The one-sentence reason given with the decision."""
    c = estimate.complexity
    head = f"{c.category} prompt, difficulty {c.difficulty:.2f}"
    if policy.min_quality is not None:
        target = f"min_quality {bar:.2f}"
    else:
        target = f"the quality bar {bar:.2f} (best: {best.spec.name} {best.predicted_quality:.2f})"
    if chosen.spec.last_resort:
        return f"{head}: {chosen.spec.name} is the only eligible model (last resort)"
    if chosen is best and policy.min_quality is not None and safer:
        return (
            f"{head}: {chosen.spec.name} is the best-predicted model, taken for {target} on a "
            f"close call; predicted {chosen.predicted_quality:.2f}, "
            f"est. ${chosen.estimated_cost_usd:.6f}, ~{chosen.estimated_latency_ms / 1000:.1f} s"
        )
    return (
        f"{head}: {chosen.spec.name} is the cheapest model predicted to reach {target}; "
        f"predicted {chosen.predicted_quality:.2f}, est. ${chosen.estimated_cost_usd:.6f}, "
        f"~{chosen.estimated_latency_ms / 1000:.1f} s"
    )


def decision_confidence(
    candidates: Sequence[Candidate],
    chosen: Candidate,
    bar: float,
    best: Candidate,
    error_sd: float,
) -> float:
    """How likely the choice is on the right side of the quality bar, in [0.5, 1].

    The closest call decides: how far the chosen model's prediction is above the bar (when it
    is not the best model itself), and how far the cheaper eligible models' predictions fell
    below it. A margin of *m* with a held-out prediction error of spread ``error_sd`` gives
    ``Phi(m / error_sd)`` (normal errors); no close call at all gives 1.
    """
    margins = []
    if chosen is not best:
        margins.append(chosen.predicted_quality - bar)
    margins.extend(
        bar - c.predicted_quality
        for c in candidates
        if c.eligible
        and not c.spec.last_resort
        and c.estimated_cost_usd < chosen.estimated_cost_usd
        and c.predicted_quality < bar
    )
    if not margins:
        return 1.0
    margin = max(min(margins), 0.0)
    return 0.5 * (1.0 + math.erf(margin / (max(error_sd, 1e-6) * math.sqrt(2.0))))


def explain_evidence(estimate: PromptEstimate, confidence: float, safer: bool) -> str:
    """The route reason's second part: which evidence decided, how sure, and any fallback."""
    text = f"; evidence: {estimate.evidence}, confidence {confidence:.2f}"
    if confidence < LOW_CONFIDENCE:
        text += " (low"
        text += ": min_quality takes the safer, best-predicted model)" if safer else ")"
    if estimate.note:
        text += f"; fell back: {estimate.note}"
    return text
