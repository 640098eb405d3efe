"""Every model's expected quality on one prompt, from the anchors' predictions.

The learned heads predict two models only: the weak and the strong anchor. Other models are
placed by their registry quality for the prompt's task category, in logit space, like an item
response model: a model's *ability* is ``logit(registry quality)``.

* Between the anchors, the prompt's predicted logits are interpolated by ability, so a model
  halfway between them in ability gets the logit halfway between their predictions (and the
  anchors themselves get exactly their predictions).
* Beyond the anchors, a model's logit is the nearer anchor's plus the difference in ability
  (unit discrimination): a model stronger than GPT-4 is predicted better than GPT-4 on every
  prompt, never worse.

Where the predictions come from, best first (:attr:`PromptEstimate.evidence` says which):

1. **tenant data**: the tenant's own heads (:mod:`.tenant`, fitted on its feedback), for the
   models they cover, over the public ones;
2. **public data**: the shipped :class:`~.heads.QualityHeads` over the prompt's MiniLM
   embedding (when the router has an embedder) and cheap features; models with a head of
   their own (the same snapshot) get its prediction directly, the rest are placed as above;
3. the hashed-word heads of :class:`~.model.LearnedRouter` (no embedder);
4. **prior**: without any of these, the heuristic difficulty *d* shifts every model's ability:
   ``logit q = ability - 4 (d - 0.3)``; 0.3 is a typical prompt's difficulty.

A failure on the way (the embedder raised, an artifact is corrupt) drops to the next source,
and :attr:`PromptEstimate.note` says what happened: it goes into the route reason.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from somaagent.llm.base import ChatMessage
from somaagent.llm.complexity import Complexity, analysed_text, estimate_complexity
from somaagent.llm.learned.embedding import EmbeddingCache
from somaagent.llm.learned.features import dense_features
from somaagent.llm.learned.heads import QualityHeads
from somaagent.llm.learned.model import LearnedRouter, Prediction
from somaagent.llm.registry import Capability, ModelSpec, Quality, TaskCategory

__all__ = [
    "EVIDENCE_PRIOR",
    "EVIDENCE_PUBLIC",
    "EVIDENCE_TENANT",
    "PRIOR_SD",
    "PromptEstimate",
    "QualityEstimator",
]

logger = logging.getLogger(__name__)

EVIDENCE_TENANT = "learned from tenant data"
EVIDENCE_PUBLIC = "learned from public data"
EVIDENCE_PRIOR = "prior"
PRIOR_SD = 0.3
"""The error spread assumed for predictions from priors alone (confidence stays low)."""
WORDS_SD = 0.3
"""The hashed-word heads' (they carry little across datasets: ``bench/router.py``)."""
ANCHORS = ("mixtral-8x7b", "gpt-4-1106-preview")
"""Registry names of the weak and strong model the public heads are anchored on."""

TenantHeads = Callable[[str], QualityHeads | None]
"""Tenant id -> its promoted heads (registry names as model names), or ``None``."""

_EPS = 1e-4
HEURISTIC_SLOPE = 4.0
TYPICAL_DIFFICULTY = 0.3


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass(frozen=True, slots=True)
class PromptEstimate:
    """What is known about a prompt before choosing: complexity and the learned predictions.

    Attributes:
        complexity: the heuristic estimate (difficulty, category, expected answer length).
        prediction: the anchors' predicted quality, ``None`` without learned evidence.
        anchors: for the prompt's category, the anchors' abilities and predicted logits
            (weak ability, strong ability, weak logit, strong logit); ``None`` without one.
        evidence: which evidence the predictions come from (:data:`EVIDENCE_TENANT`,
            :data:`EVIDENCE_PUBLIC`, :data:`EVIDENCE_PRIOR`).
        direct: registry name -> predicted quality, for models with a head of their own.
        error_sd: the spread of the predictions' error (held-out), for confidence.
        note: what went wrong on the way to better evidence, if anything.
        x: the heads' input for the prompt (kept with the outcome record, for tenant
            training), when the embedding heads ran.
    """

    complexity: Complexity
    prediction: Prediction | None
    anchors: tuple[float, float, float, float] | None = None
    evidence: str = EVIDENCE_PRIOR
    direct: Mapping[str, float] | None = None
    error_sd: float = PRIOR_SD
    note: str | None = None
    x: tuple[float, ...] | None = None


class QualityEstimator:
    """Predicts each model's quality on a prompt.

    Args:
        learned: the hashed-word router (used without an embedder), or ``None``.
        heads: the embedding quality heads, or ``None``.
        embeddings: the router's embedding cache (``None``: no embedder was injected).
        anchor_quality: registry name -> its registry quality (the anchors' places).
        tenant_heads: tenant id -> its promoted heads.
        heads_note: why ``heads`` is missing, when it failed to load.
    """

    def __init__(
        self,
        learned: LearnedRouter | None,
        *,
        heads: QualityHeads | None = None,
        embeddings: EmbeddingCache | None = None,
        anchor_quality: Callable[[str], Quality | None] | None = None,
        tenant_heads: TenantHeads | None = None,
        heads_note: str | None = None,
    ) -> None:
        self.learned = learned
        self.heads = heads
        self.embeddings = embeddings
        self.anchor_quality = anchor_quality
        self.tenant_heads = tenant_heads
        self.heads_note = heads_note

    def estimate(
        self,
        messages: Sequence[ChatMessage],
        *,
        category: TaskCategory | None = None,
        capabilities: Sequence[Capability] = (),
        tenant: str | None = None,
    ) -> PromptEstimate:
        """Read the prompt once; :meth:`quality` then prices each model cheaply."""
        complexity = estimate_complexity(messages, capabilities=capabilities, category=category)
        note = self.heads_note if self.embeddings is not None else None
        if self.heads is not None and self.embeddings is not None:
            try:
                return self._from_heads(messages, complexity, tenant)
            except Exception as exc:
                logger.warning("quality heads failed, falling back: %s", exc)
                note = f"the embedding quality heads failed ({type(exc).__name__}: {exc})"
        if self.learned is None:
            return PromptEstimate(complexity=complexity, prediction=None, note=note)
        prediction = self.learned.predict(messages, complexity=complexity)
        chosen = complexity.category
        anchors = (
            _logit(self.learned.weak_anchor.quality.for_task(chosen)),
            _logit(self.learned.strong_anchor.quality.for_task(chosen)),
            _logit(prediction.weak),
            _logit(prediction.strong),
        )
        return PromptEstimate(
            complexity=complexity,
            prediction=prediction,
            anchors=anchors,
            evidence=f"{EVIDENCE_PUBLIC} (word features)",
            error_sd=WORDS_SD,
            note=note,
        )

    def _from_heads(
        self, messages: Sequence[ChatMessage], complexity: Complexity, tenant: str | None
    ) -> PromptEstimate:
        heads, cache = self.heads, self.embeddings
        assert heads is not None and cache is not None
        dense, _ = dense_features(messages, complexity=complexity)
        x = heads.vector(dense, cache.get(analysed_text(messages)))
        direct = {reg: heads.predict(x, data) for data, reg in heads.registry.items()}
        evidence, error_sd = EVIDENCE_PUBLIC, heads.gain_sd
        own = self.tenant_heads(tenant) if tenant is not None and self.tenant_heads else None
        if own is not None:
            for name, head in own.heads.items():
                direct[name] = head.predict(x)
            evidence, error_sd = EVIDENCE_TENANT, own.gain_sd
        qualities = [self.anchor_quality(n) if self.anchor_quality else None for n in ANCHORS]
        if any(q is None for q in qualities) or any(n not in direct for n in ANCHORS):
            raise LookupError(f"anchor models {', '.join(ANCHORS)} are not all in the registry")
        weak_q, strong_q = (q for q in qualities if q is not None)
        chosen = complexity.category
        prediction = Prediction(
            weak=direct[ANCHORS[0]], strong=direct[ANCHORS[1]], complexity=complexity
        )
        anchors = (
            _logit(weak_q.for_task(chosen)),
            _logit(strong_q.for_task(chosen)),
            _logit(prediction.weak),
            _logit(prediction.strong),
        )
        return PromptEstimate(
            complexity=complexity,
            prediction=prediction,
            anchors=anchors,
            evidence=evidence,
            direct=direct,
            error_sd=error_sd,
            x=tuple(x),
        )

    def quality(self, spec: ModelSpec, estimate: PromptEstimate) -> float:
        """``spec``'s expected quality on the prompt, in (0, 1)."""
        if estimate.direct is not None and spec.name in estimate.direct:
            return estimate.direct[spec.name]
        return self.quality_of(spec.quality, estimate)

    def quality_of(self, quality: Quality, estimate: PromptEstimate) -> float:
        """Like :meth:`quality`, for a model given by its registry quality scores."""
        ability = _logit(quality.for_task(estimate.complexity.category))
        if estimate.anchors is None:
            shift = HEURISTIC_SLOPE * (estimate.complexity.difficulty - TYPICAL_DIFFICULTY)
            return _sigmoid(ability - shift)
        weak_ability, strong_ability, weak_logit, strong_logit = estimate.anchors
        if ability <= weak_ability or strong_ability <= weak_ability:
            return _sigmoid(weak_logit + ability - weak_ability)
        if ability >= strong_ability:
            return _sigmoid(strong_logit + ability - strong_ability)
        t = (ability - weak_ability) / (strong_ability - weak_ability)
        return _sigmoid(weak_logit + t * (strong_logit - weak_logit))
