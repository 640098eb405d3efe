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

Without a learned artifact, the heuristic difficulty *d* shifts every model's ability:
``logit q = ability - 4 (d - 0.3)``; 0.3 is a typical prompt's difficulty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from somaagent.llm.base import ChatMessage
from somaagent.llm.complexity import Complexity, estimate_complexity
from somaagent.llm.learned.model import LearnedRouter, Prediction
from somaagent.llm.registry import Capability, ModelSpec, Quality, TaskCategory

__all__ = ["PromptEstimate", "QualityEstimator"]

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
    """What is known about a prompt before choosing: complexity and the anchors' predictions.

    Attributes:
        complexity: the heuristic estimate (difficulty, category, expected answer length).
        prediction: the learned anchors' predicted quality, ``None`` without an artifact.
        anchors: for the prompt's category, the anchors' abilities and predicted logits
            (weak ability, strong ability, weak logit, strong logit); ``None`` without one.
    """

    complexity: Complexity
    prediction: Prediction | None
    anchors: tuple[float, float, float, float] | None = None


class QualityEstimator:
    """Predicts each model's quality on a prompt.

    Args:
        learned: the learned router, or ``None`` for heuristics only.
    """

    def __init__(self, learned: LearnedRouter | None) -> None:
        self.learned = learned

    def estimate(
        self,
        messages: Sequence[ChatMessage],
        *,
        category: TaskCategory | None = None,
        capabilities: Sequence[Capability] = (),
    ) -> PromptEstimate:
        """Read the prompt once; :meth:`quality` then prices each model cheaply."""
        complexity = estimate_complexity(messages, capabilities=capabilities, category=category)
        if self.learned is None:
            return PromptEstimate(complexity=complexity, prediction=None)
        prediction = self.learned.predict(messages, complexity=complexity)
        chosen = complexity.category
        anchors = (
            _logit(self.learned.weak_anchor.quality.for_task(chosen)),
            _logit(self.learned.strong_anchor.quality.for_task(chosen)),
            _logit(prediction.weak),
            _logit(prediction.strong),
        )
        return PromptEstimate(complexity=complexity, prediction=prediction, anchors=anchors)

    def quality(self, spec: ModelSpec, estimate: PromptEstimate) -> float:
        """``spec``'s expected quality on the prompt, in (0, 1)."""
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
