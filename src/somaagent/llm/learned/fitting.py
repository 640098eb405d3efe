"""Fitting :class:`~.heads.QualityHeads`: the public training data and weighted ridge regression.

The public data is one :class:`PublicPrompt` per prompt with every model's measured quality on
it: RouteLLM's GSM8K, MMLU and MT-Bench (Mixtral-8x7B-Instruct and GPT-4-1106-preview,
contaminated prompts out) and arena-bench-v1 (15 models). Each head is a ridge regression of
one model's quality on ``x`` (:meth:`~.heads.QualityHeads.vector`), each dataset weighing the
same in total (MMLU's 14,000 prompts would otherwise drown the rest), the intercept unpenalised.
A ``prior`` head turns the penalty into a pull towards it: that is how a tenant's heads are
fitted on few outcomes (:mod:`.tenant`).

``bench/router.py --write-artifact`` embeds the prompts with the product's local MiniLM, picks
the ridge strength by leave-one-dataset-out cross-validation and writes the shipped artifact
with :func:`build_heads`. Fitting needs numpy; predicting does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from somaagent.errors import ConfigurationError
from somaagent.llm.learned import arena
from somaagent.llm.learned import data as routellm
from somaagent.llm.learned.heads import Head, QualityHeads

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "EMBEDDING_SCALE",
    "STRONG",
    "WEAK",
    "PublicPrompt",
    "build_heads",
    "dataset_weights",
    "design",
    "fit_head",
    "public_prompts",
]

WEAK = routellm.WEAK_MODEL
"""RouteLLM's weak model, by the data's name (the same in both datasets)."""
STRONG = routellm.STRONG_MODEL
EMBEDDING_SCALE = 3.0
"""The unit-length embedding's weight against the standardised dense features."""


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - numpy is there wherever training runs
        raise ConfigurationError("fitting quality heads needs numpy: pip install numpy") from exc
    return numpy


@dataclass(frozen=True, slots=True)
class PublicPrompt:
    """One prompt of the public training data.

    Attributes:
        dataset: ``gsm8k``, ``mmlu``, ``mt_bench`` or ``arena``.
        prompt: the text a routing decision sees (the first user turn).
        scores: data model name -> quality in [0, 1].
        outcome: the RouteLLM outcome it came from (answers, turns), if any.
    """

    dataset: str
    prompt: str
    scores: dict[str, float] = field(default_factory=dict)
    outcome: routellm.Outcome | None = None


def public_prompts(
    routellm_root: Path | None = None, arena_root: Path | None = None
) -> list[PublicPrompt]:
    """RouteLLM's outcomes then arena-bench-v1's prompts.

    Raises:
        DataMissingError: either folder is missing.
    """
    rows = [
        PublicPrompt(o.dataset, o.prompt, {WEAK: o.weak, STRONG: o.strong}, o)
        for o in routellm.load(routellm_root).outcomes
    ]
    rows.extend(PublicPrompt("arena", p.prompt, dict(p.scores)) for p in arena.load(arena_root))
    return rows


def dataset_weights(datasets: Sequence[str]) -> NDArray[np.float64]:
    """Per-row weights giving each dataset the same total (1)."""
    np = _numpy()
    names = np.asarray(datasets)
    weights = np.zeros(len(names))
    for name in set(datasets):
        mask = names == name
        weights[mask] = 1.0 / mask.sum()
    return weights  # type: ignore[no-any-return]


def design(
    dense: NDArray[np.float64],
    embeddings: NDArray[np.float64],
    *,
    mean: NDArray[np.float64] | None = None,
    std: NDArray[np.float64] | None = None,
    scale: float = EMBEDDING_SCALE,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The heads' input matrix, as :meth:`QualityHeads.vector` builds it row by row, and the
    standardisation (computed here unless given)."""
    np = _numpy()
    if mean is None or std is None:
        mean, std = dense.mean(axis=0), dense.std(axis=0)
    std = np.where(std > 1e-9, std, 1.0)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.where(norms > 0, norms, 1.0)
    return np.hstack([(dense - mean) / std, scale * unit]), mean, std


def fit_head(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    weights: NDArray[np.float64],
    alpha: float,
    prior: Head | None = None,
) -> Head:
    """Weighted ridge: minimise sum w (y - b - x.beta)^2 + alpha |beta - prior|^2.

    ``weights`` are normalised to sum to 1, so ``alpha`` means the same whatever the row count.
    """
    np = _numpy()
    w = weights / weights.sum()
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    a = xb.T @ (xb * w[:, None])
    penalty = np.full(d + 1, alpha)
    penalty[-1] = 0.0  # the intercept is free
    a[np.diag_indices(d + 1)] += penalty
    target = np.zeros(d + 1)
    if prior is not None:
        target[:d] = prior.weights
    beta = np.linalg.solve(a, xb.T @ (w * y) + penalty * target)
    return Head(bias=float(beta[-1]), weights=tuple(float(v) for v in beta[:-1]))


def build_heads(
    prompts: Sequence[PublicPrompt],
    dense: NDArray[np.float64],
    embeddings: NDArray[np.float64],
    *,
    alpha: float,
    gain_sd: float,
    embedding_model: str,
    training: Mapping[str, Any],
    min_prompts: int = 50,
) -> QualityHeads:
    """Fit one head per model with at least ``min_prompts`` scored prompts."""
    np = _numpy()
    x, mean, std = design(dense, embeddings)
    models = sorted({m for p in prompts for m in p.scores})
    heads: dict[str, Head] = {}
    for model in models:
        rows = [i for i, p in enumerate(prompts) if model in p.scores]
        if len(rows) < min_prompts:
            continue
        y = np.array([prompts[i].scores[model] for i in rows])
        w = dataset_weights([prompts[i].dataset for i in rows])
        heads[model] = fit_head(x[rows], y, w, alpha)
    registry = {d: r for d, r in arena.REGISTRY_NAMES.items() if d in heads}
    return QualityHeads(
        heads=heads,
        registry=registry,
        dense_mean=[float(v) for v in mean],
        dense_std=[float(v) for v in std],
        embedding_model=embedding_model,
        embedding_dim=int(embeddings.shape[1]),
        embedding_scale=EMBEDDING_SCALE,
        gain_sd=gain_sd,
        evidence="learned from public data (RouteLLM GSM8K/MMLU/MT-Bench, arena-bench-v1)",
        training=training,
    )
