"""The router: the cheapest model predicted to answer a request well, and why.

:meth:`Router.decide` reads the conversation once (complexity, the learned router's prediction,
prompt tokens per tokenizer), then looks at every registry model:

1. **Hard constraints** drop a model, each with the reason: the policy's ``models`` and
   ``providers``, availability (``available(spec)``: is its provider configured), retirement,
   required ``capabilities`` (``streaming`` too when the call streams), the context window,
   an open circuit breaker, ``max_cost_usd`` and ``max_latency_ms`` on the estimates.
2. **The quality bar.** Each remaining model gets a predicted quality for this prompt
   (:mod:`somaagent.llm.learned.quality`). The bar is ``min_quality`` when the policy sets it;
   otherwise the best remaining prediction minus ``max_quality_drop`` (default 0.05), so an easy
   prompt lets a cheap model through and a hard one does not.
3. **The choice**: the cheapest model at or above the bar, by estimated cost (prompt tokens plus
   the expected answer, at the registry's prices). Models within ``tie_tolerance`` (2%) of the
   cheapest tie, and ties go to the faster one: the registry's latency prior scaled by the
   model's observed slowness, and by its recent error rate (retries take time).
4. **Evidence and confidence.** The reason says which evidence the predictions came from (the
   tenant's own heads, the public heads over the prompt's embedding, the word features, or
   priors; and why a better source was skipped: no embedder, a failing one, a missing or
   corrupt artifact) and how sure the choice is: ``Phi(margin / sd)``, the closest call's
   distance to the bar over the predictions' held-out error (:func:`~.policy.decision_confidence`).
   Below 0.6, a ``min_quality`` policy takes the best-predicted eligible model instead.

**How good the predictions are** (``bench/results/router.md``, 2026-12-02, load 1.7): trained
on three of GSM8K, MMLU, MT-Bench and arena-bench-v1 and tested on the fourth, routing between
Mixtral-8x7B and GPT-4-1106 recovers APGR 0.571, 0.537, 0.638 and 0.541 of the gap (random:
0.5; bootstrap 95% intervals about +-0.02 to +-0.13), and reaches 95% of GPT-4-1106's quality at
1.23x, 1.28x, 4.41x and 1.21x lower cost than always-GPT-4 (per token). On arena-bench-v1
among 15 models with prompts held out it reaches the same 95% at $3.36 against the best static
mix's $3.49. Decision CPU p99: 2.3 ms with the prompt's embedding cached, 9.8 ms without (the
prompt's first 64 tokens embedded). Other heads tried did no better held out
(``bench/results/router_experiments.md``), and on arena-bench-v1 the features stay near random
(0.517) even when trained and tested inside it. Predictions this weak make most close calls
low-confidence, and the reasons say so.

The decision keeps every candidate with its prediction, estimates and the reason it was or
was not chosen, and the fallback chain (:data:`DEFAULT_FALLBACK_CHAIN` unless configured or
given by the policy) for :mod:`somaagent.llm.fallback`. Models marked ``last_resort`` (the
embedded local model) are chosen only when nothing else is eligible.

Bad policies are :class:`~somaagent.errors.ValidationError` (HTTP 422) naming the field: an
unknown field or model, a policy no model meets (``problem_type``
:data:`PROBLEM_IMPOSSIBLE_POLICY`), a prompt longer than every context window
(:data:`PROBLEM_PROMPT_TOO_LONG`). When the only
models left have open breakers, :class:`~somaagent.errors.ServiceUnavailableError` (503) says
when to retry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from somaagent.errors import (
    ConfigurationError,
    ServiceUnavailableError,
    SomaAgentError,
    ValidationError,
)
from somaagent.llm import tokens
from somaagent.llm.base import ChatMessage
from somaagent.llm.health import HealthTracker
from somaagent.llm.learned.embedding import EmbeddingCache, PromptEmbedder
from somaagent.llm.learned.heads import QualityHeads, load_default_heads
from somaagent.llm.learned.model import LearnedRouter, load_default
from somaagent.llm.learned.quality import PromptEstimate, QualityEstimator, TenantHeads
from somaagent.llm.policy import (
    DEFAULT_MAX_QUALITY_DROP,
    LOW_CONFIDENCE,
    PROBLEM_IMPOSSIBLE_POLICY,
    PROBLEM_PROMPT_TOO_LONG,
    Candidate,
    RoutingDecision,
    RoutingPolicy,
    decision_confidence,
    explain_choice,
    explain_evidence,
    no_route_error,
    parse_policy,
    verdict,
)
from somaagent.llm.registry import Capability, ModelRegistry, ModelSpec

__all__ = [
    "DEFAULT_FALLBACK_CHAIN",
    "DEFAULT_MAX_QUALITY_DROP",
    "PROBLEM_IMPOSSIBLE_POLICY",
    "PROBLEM_PROMPT_TOO_LONG",
    "Candidate",
    "Router",
    "RoutingDecision",
    "RoutingPolicy",
    "parse_policy",
]

DEFAULT_FALLBACK_CHAIN: tuple[str, ...] = ("claude-3-sonnet", "gpt-3.5-turbo", "llama-3-8b")
"""The fallback chain of the original design, by registry name."""

Availability = Callable[[ModelSpec], bool]
_POLICY = ("body", "policy")


def _always(spec: ModelSpec) -> bool:
    return True


def _estimate_cost(spec: ModelSpec, prompt_tokens: int, output_tokens: int) -> float:
    """:func:`somaagent.llm.cost.estimate_cost` in floats: an estimate needs no decimal
    exactness, and this runs once per model per decision."""
    usd = prompt_tokens * spec.input_cost_per_mtok + output_tokens * spec.output_cost_per_mtok
    return round(usd / 1_000_000, 10)


@dataclass(slots=True)
class _Request:
    """What one decision knows about its request; token counts are filled in per tokenizer."""

    messages: Sequence[ChatMessage]
    estimate: PromptEstimate
    policy: RoutingPolicy
    needed: frozenset[Capability]
    allowed: frozenset[str] | None
    available: Availability
    max_tokens: int | None
    today: date
    counts: dict[str, int] = field(default_factory=dict)


def _problem(message: str, field: str, kind: str, problem_type: str) -> ValidationError:
    return ValidationError(
        message,
        errors=[{"loc": [*_POLICY, field], "msg": message, "type": kind}],
        problem_type=problem_type,
    )


class Router:
    """Chooses a model per request; see the module docstring.

    Args:
        registry: the models to choose from (reloaded if its file changed, on each decision).
        health: live latency and error statistics; a private tracker when ``None``.
        learned: the hashed-word router, used when no embedder is given; ``"default"`` loads
            the packaged artifact, ``None`` routes on heuristics only (or the heads).
        embedder: texts -> vectors, the product's local MiniLM (injected by the app factory:
            ``llm`` does not import ``memory``); ``None``: no embedding quality heads.
        heads: the embedding quality heads; ``"default"`` loads the packaged artifact (a
            missing or corrupt one is logged and the route reasons say so).
        tenant_heads: tenant id -> its promoted heads (from the feedback service).
        fallback_chain: registry names tried, in order, after the chosen model fails;
            ``None``: :data:`DEFAULT_FALLBACK_CHAIN`, less the names the registry lacks.
        tie_tolerance: costs within this fraction of the cheapest count as a tie.
        today: the date retirement is judged by (tests pin it).

    Raises:
        ConfigurationError: a name in ``fallback_chain`` is not in the registry.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        health: HealthTracker | None = None,
        learned: LearnedRouter | Literal["default"] | None = "default",
        embedder: PromptEmbedder | None = None,
        heads: QualityHeads | Literal["default"] | None = "default",
        tenant_heads: TenantHeads | None = None,
        fallback_chain: Sequence[str] | None = None,
        tie_tolerance: float = 0.02,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.registry = registry
        self.health = health if health is not None else HealthTracker()
        self.learned = load_default() if learned == "default" else learned
        heads_note = None
        if heads == "default":
            heads, heads_note = load_default_heads()
        self.heads = heads
        self.embeddings = EmbeddingCache(embedder) if embedder is not None else None
        self.quality = QualityEstimator(
            self.learned,
            heads=heads,
            embeddings=self.embeddings,
            anchor_quality=lambda name: q.quality if (q := registry.find(name)) else None,
            tenant_heads=tenant_heads,
            heads_note=heads_note,
        )
        if fallback_chain is None:
            # The default names models a user's file may have disabled: skip those quietly.
            fallback_chain = [n for n in DEFAULT_FALLBACK_CHAIN if registry.find(n) is not None]
        unknown = [name for name in fallback_chain if registry.find(name) is None]
        if unknown:
            raise ConfigurationError(
                f"fallback chain names unknown model(s) {', '.join(map(repr, unknown))}; "
                f"known models: {', '.join(registry.names())}"
            )
        self.fallback_chain = tuple(fallback_chain)
        self.tie_tolerance = tie_tolerance
        self._today = today

    def warm_up(self, *, embedding: bool = False) -> None:
        """Load what the first decision would (the tokenizers, the artifacts); call at start-up.

        Args:
            embedding: load the embedding model too (about half a second once its ONNX file
                is cached); otherwise the first routed prompt loads it.
        """
        cache = self.quality.embeddings
        if not embedding:
            self.quality.embeddings = None
        try:
            # Nothing routable yet is fine here: the first real request will say why.
            with contextlib.suppress(SomaAgentError):
                self.decide([{"role": "user", "content": "warm up"}])
        finally:
            self.quality.embeddings = cache

    # -- the decision ----------------------------------------------------------------------

    def decide(
        self,
        messages: Sequence[ChatMessage],
        policy: RoutingPolicy | Mapping[str, Any] | None = None,
        *,
        available: Availability = _always,
        max_tokens: int | None = None,
        stream: bool = False,
        tenant: str | None = None,
    ) -> RoutingDecision:
        """Choose a model for the conversation's next answer, without calling any model.

        Args:
            messages: the conversation, oldest first.
            policy: the caller's policy (a mapping is validated; unknown fields are an error).
            available: whether a model's provider is configured on this gateway.
            max_tokens: the request's answer limit, if it sets one.
            stream: whether the answer will be streamed (requires ``streaming``).
            tenant: whose heads apply, when the tenant has promoted its own.

        Raises:
            ValidationError: an invalid policy, one that no model meets, or a prompt longer
                than every context window; ``errors`` names the field.
            ServiceUnavailableError: every model that meets the policy has an open breaker.
        """
        started = time.perf_counter()
        policy = self._policy(policy)
        self.registry.reload_if_changed()
        needed: set[Capability] = set(policy.capabilities)
        if stream:
            needed.add("streaming")
        estimate = self.quality.estimate(
            messages, category=policy.task, capabilities=sorted(needed), tenant=tenant
        )
        allowed = self._resolve_names(policy.models, "models") if policy.models else None
        request = _Request(
            messages=messages,
            estimate=estimate,
            policy=policy,
            needed=frozenset(needed),
            allowed=frozenset(s.name for s in allowed) if allowed is not None else None,
            available=available,
            max_tokens=max_tokens,
            today=self._today(),
        )
        candidates = [self._candidate(spec, request) for spec in self.registry.all()]
        try:
            chosen, bar, best = self._choose(candidates, policy)
        except ServiceUnavailableError:
            # Every model the policy allows has an open breaker: the caller's explicit
            # fallbacks are there for exactly this, so the first that can take it answers.
            rescue = self._usable_fallback(policy, request)
            if rescue is None:
                raise
            chosen, bar, best = rescue, rescue.predicted_quality, rescue
        confidence = decision_confidence(candidates, chosen, bar, best, estimate.error_sd)
        safer = False
        if (
            confidence < LOW_CONFIDENCE
            and policy.min_quality is not None
            and chosen is not best
            and not best.spec.last_resort
        ):
            # Too close to call, and the caller set a floor: the policy asks for the safer model.
            chosen, safer = best, True
        chain = self._fallbacks(chosen.spec, policy, candidates, request)
        reason = explain_choice(chosen, estimate, policy, bar, best, safer=safer)
        reason += explain_evidence(estimate, confidence, safer)
        marked = tuple(verdict(c, chosen, bar, self.tie_tolerance, safer=safer) for c in candidates)
        return RoutingDecision(
            spec=chosen.spec,
            fallbacks=chain,
            candidates=marked,
            reason=reason,
            policy=policy,
            quality_bar=bar,
            estimate=estimate,
            decision_ms=(time.perf_counter() - started) * 1000.0,
            confidence=confidence,
        )

    def explicit(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        *,
        available: Availability = _always,
        fallbacks: Sequence[str] | None = None,
    ) -> RoutingDecision:
        """A decision for a model the caller named, with the fallback chain behind it.

        Raises:
            ValidationError: ``model`` (or a fallback) is not in the registry.
        """
        started = time.perf_counter()
        spec = self._resolve_names([model], "model", loc=("body",))[0]
        policy = RoutingPolicy(fallbacks=tuple(fallbacks) if fallbacks is not None else None)
        estimate = self.quality.estimate(messages)
        chain = tuple(
            s
            for s in self._chain_specs(policy.fallbacks)
            if s.name != spec.name and available(s) and not s.retired(self._today())
        )
        reason = f"{spec.name} was named by the caller"
        return RoutingDecision(
            spec=spec,
            fallbacks=chain,
            candidates=(),
            reason=reason,
            policy=policy,
            quality_bar=0.0,
            estimate=estimate,
            decision_ms=(time.perf_counter() - started) * 1000.0,
        )

    # -- steps -----------------------------------------------------------------------------

    @staticmethod
    def _policy(policy: RoutingPolicy | Mapping[str, Any] | None) -> RoutingPolicy:
        if policy is None:
            return RoutingPolicy()
        if isinstance(policy, RoutingPolicy):
            return policy
        return parse_policy(policy)

    def _resolve_names(
        self, names: Iterable[str], field: str, *, loc: tuple[str, ...] = _POLICY
    ) -> list[ModelSpec]:
        specs, unknown = [], []
        for name in names:
            spec = self.registry.find(name)
            if spec is None:
                unknown.append(name)
            else:
                specs.append(spec)
        if unknown:
            hints = [s for name in unknown for s in self.registry.suggest(name)]
            hint = f"; did you mean {', '.join(map(repr, hints))}?" if hints else ""
            message = f"unknown model(s) {', '.join(map(repr, unknown))} in {field}{hint}"
            raise ValidationError(
                message, errors=[{"loc": [*loc, field], "msg": message, "type": "unknown_model"}]
            )
        return specs

    def _chain_specs(self, requested: Sequence[str] | None) -> list[ModelSpec]:
        if requested is not None:
            return self._resolve_names(requested, "fallbacks")
        # The router's own chain was checked at start-up; a reload may have dropped a model.
        found = (self.registry.find(name) for name in self.fallback_chain)
        return [spec for spec in found if spec is not None]

    def _prompt_tokens(
        self, messages: Sequence[ChatMessage], spec: ModelSpec, counts: dict[str, int]
    ) -> int:
        name = tokens.encoding_name_for(spec)
        if name not in counts:
            try:
                encoder = tokens.get_encoder(name)
            except ConfigurationError:  # no tiktoken: about four characters a token
                counts[name] = tokens.TOKENS_PER_REPLY + sum(
                    tokens.TOKENS_PER_MESSAGE + 1 + len(m["content"]) // 4 for m in messages
                )
            else:
                counts[name] = tokens.TOKENS_PER_REPLY + sum(
                    tokens.TOKENS_PER_MESSAGE + 1 + len(encoder.encode_ordinary(m["content"]))
                    for m in messages
                )
        return counts[name]

    def _candidate(self, spec: ModelSpec, request: _Request) -> Candidate:
        policy, max_tokens = request.policy, request.max_tokens
        prompt = self._prompt_tokens(request.messages, spec, request.counts)
        wanted = request.estimate.complexity.expected_output_tokens
        output = min(wanted, max_tokens or wanted, spec.max_output_tokens)
        health = self.health.snapshot(spec.name)
        latency = spec.latency.expected_ms(output) * health.slowness
        latency /= 1.0 - min(health.error_rate, 0.9)
        candidate = Candidate(
            spec=spec,
            predicted_quality=self.quality.quality(spec, request.estimate),
            estimated_cost_usd=_estimate_cost(spec, prompt, output),
            estimated_latency_ms=latency,
            prompt_tokens=prompt,
            expected_output_tokens=output,
            error_rate=health.error_rate,
            breaker=health.state,
        )
        missing = sorted(request.needed - spec.capabilities)
        excluded: tuple[str, str] | None = None
        if request.allowed is not None and spec.name not in request.allowed:
            excluded = ("models", "not in the policy's models")
        elif policy.providers is not None and spec.provider not in policy.providers:
            excluded = ("providers", f"provider {spec.provider} is not in the policy's providers")
        elif not request.available(spec):
            excluded = ("available", f"provider {spec.provider} is not configured")
        elif spec.retired(request.today):
            excluded = ("retired", f"retired on {spec.retires_on}")
        elif missing:
            excluded = ("capabilities", f"lacks {', '.join(missing)}")
        elif prompt >= spec.context_window:
            excluded = (
                "context",
                f"prompt ({prompt} tokens) exceeds its context window ({spec.context_window})",
            )
        elif max_tokens is not None and prompt + max_tokens > spec.context_window:
            excluded = (
                "max_tokens",
                f"prompt ({prompt}) + max_tokens ({max_tokens}) exceeds "
                f"its context window ({spec.context_window})",
            )
        elif health.state == "open" and (health.retry_in_s or 0.0) > 0.0:
            excluded = (
                "breaker",
                f"circuit open after failures (retry in {health.retry_in_s or 0:.0f} s)",
            )
        elif policy.max_cost_usd is not None and candidate.estimated_cost_usd > policy.max_cost_usd:
            excluded = (
                "max_cost_usd",
                f"estimated ${candidate.estimated_cost_usd:.6f} is above "
                f"max_cost_usd ${policy.max_cost_usd:g}",
            )
        elif policy.max_latency_ms is not None and latency > policy.max_latency_ms:
            excluded = (
                "max_latency_ms",
                f"expected {latency:.0f} ms is above max_latency_ms {policy.max_latency_ms:g}",
            )
        if excluded is None:
            return candidate
        return candidate.excluded(*excluded)

    def _choose(
        self, candidates: list[Candidate], policy: RoutingPolicy
    ) -> tuple[Candidate, float, Candidate]:
        eligible = [c for c in candidates if c.eligible and not c.spec.last_resort]
        if not eligible:
            eligible = [c for c in candidates if c.eligible]
        if not eligible:
            health = self.health
            raise no_route_error(candidates, lambda name: health.snapshot(name).retry_in_s)
        best = max(eligible, key=lambda c: (c.predicted_quality, -c.estimated_cost_usd))
        if policy.min_quality is not None:
            bar = policy.min_quality
            if policy.max_quality_drop is not None:
                bar = max(bar, best.predicted_quality - policy.max_quality_drop)
            if best.predicted_quality < bar:
                message = (
                    f"no model is predicted to reach min_quality {policy.min_quality:g} on this "
                    f"prompt; the best is {best.spec.name} at {best.predicted_quality:.3f}"
                )
                raise _problem(
                    message, "min_quality", "impossible_policy", PROBLEM_IMPOSSIBLE_POLICY
                )
        else:
            drop = policy.max_quality_drop
            bar = best.predicted_quality - (DEFAULT_MAX_QUALITY_DROP if drop is None else drop)
        meeting = [c for c in eligible if c.predicted_quality >= bar - 1e-12]
        cheapest = min(c.estimated_cost_usd for c in meeting)
        tied = [c for c in meeting if c.estimated_cost_usd <= cheapest * (1 + self.tie_tolerance)]
        chosen = min(
            tied, key=lambda c: (c.estimated_latency_ms, -c.predicted_quality, c.spec.name)
        )
        return chosen, bar, best

    def _usable_fallback(self, policy: RoutingPolicy, request: _Request) -> Candidate | None:
        """The first explicit fallback that can take the request (judged as `_fallbacks` does:
        outside the policy's models and providers), or None."""
        if not policy.fallbacks:
            return None
        open_request = dataclasses.replace(
            request, allowed=None, policy=policy.model_copy(update={"providers": None})
        )
        for spec in self._chain_specs(policy.fallbacks):
            candidate = self._candidate(spec, open_request)
            if candidate.eligible:
                return candidate
        return None

    def _fallbacks(
        self,
        chosen: ModelSpec,
        policy: RoutingPolicy,
        candidates: list[Candidate],
        request: _Request,
    ) -> tuple[ModelSpec, ...]:
        explicit = policy.fallbacks is not None
        specs = self._chain_specs(policy.fallbacks)
        by_name = {c.spec.name: c for c in candidates}
        # ``models`` and ``providers`` narrow what the router may choose; a fallback the caller
        # names is their explicit word, so it is judged only on whether it can take the request
        open_request = dataclasses.replace(
            request, allowed=None, policy=policy.model_copy(update={"providers": None})
        )
        seen = {chosen.name}
        chain = []
        for index, spec in enumerate(specs):
            if spec.name in seen:
                continue
            candidate = by_name.get(spec.name)
            if explicit and (candidate is None or candidate.excluded_by in ("models", "providers")):
                candidate = self._candidate(spec, open_request)
            # A fallback must be callable and able to take the request; price, speed and the
            # quality bar do not apply: it is there for when the chosen model fails.
            if candidate is not None and (
                candidate.eligible
                or candidate.excluded_by in ("breaker", "max_cost_usd", "max_latency_ms")
            ):
                chain.append(spec)
                seen.add(spec.name)
            elif explicit:
                why = candidate.why if candidate is not None else "unknown"
                message = f"fallback {spec.name!r} cannot take this request: {why}"
                raise ValidationError(
                    message,
                    errors=[
                        {
                            "loc": [*_POLICY, "fallbacks", index],
                            "msg": message,
                            "type": "unusable_fallback",
                        }
                    ],
                    problem_type=PROBLEM_IMPOSSIBLE_POLICY,
                )
        return tuple(chain)
