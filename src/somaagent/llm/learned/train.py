"""Train the learned router on RouteLLM's per-prompt outcomes and write its artifact.

::

    python -m somaagent.llm.learned.train --data ../shared/data/routellm \\
        --out src/somaagent/llm/learned/router_model.json

Two logistic-regression heads over :func:`~somaagent.llm.learned.features.featurize`'s features
predict, per prompt, the quality of the weak anchor model (Mixtral-8x7B-Instruct) and of the
strong one (GPT-4-1106-preview): the probability of a correct answer, or the judge's score / 10
for MT-Bench. Labels are soft, so both kinds of outcome train the same loss. Fitting is full-batch
Adam on the cross-entropy with an L2 penalty, deterministic, a few seconds on one core.

Prompts listed in ``contaminated_prompts.jsonl`` never reach training (:mod:`.data` drops them).
By default one fold of five (by a hash of the prompt) is held out and scored, and the shipped
artifact is trained on the other four; ``--folds 1`` trains on everything. The benchmark
(``bench/router.py``) cross-fits the same :func:`fit` over all five folds.

Training needs numpy (``pip install numpy``); routing with the artifact does not.
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from somaagent.errors import ConfigurationError
from somaagent.llm.learned import data as routellm
from somaagent.llm.learned.features import DENSE_NAMES, Features, featurize
from somaagent.llm.learned.model import ARTIFACT_FORMAT, DEFAULT_ARTIFACT
from somaagent.llm.registry import ModelRegistry, ModelSpec

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["Matrix", "TrainConfig", "fit", "main", "matrix_of", "to_artifact"]

DATASET_WEIGHTS: dict[str, float] = {"mmlu": 1.0, "gsm8k": 3.0, "mt_bench": 6.0}
"""Per-example weights: the small datasets would otherwise be drowned by MMLU's 14,000."""


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - numpy is there wherever tests run
        raise ConfigurationError(
            "training the learned router needs numpy: pip install numpy"
        ) from exc
    return numpy


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters of :func:`fit`."""

    hash_bits: int = 14
    l2: float = 3e-4
    epochs: int = 400
    learning_rate: float = 0.05


@dataclass(frozen=True, slots=True)
class Matrix:
    """A CSR matrix of hashed features plus the dense block, for ``n`` prompts."""

    rows: NDArray[np.int64]  # row of each stored value
    cols: NDArray[np.int64]
    values: NDArray[np.float64]
    dense: NDArray[np.float64]
    n: int
    width: int


def matrix_of(features: Sequence[Features], hash_bits: int) -> Matrix:
    """Stack prompts' features into a :class:`Matrix`."""
    np = _numpy()
    rows = np.concatenate(
        [np.full(len(f.hashed), i, dtype=np.int64) for i, f in enumerate(features)]
    )
    cols = np.concatenate([np.asarray(f.hashed, dtype=np.int64) for f in features])
    values = np.concatenate([np.full(len(f.hashed), f.scale) for f in features])
    dense = np.asarray([f.dense for f in features], dtype=np.float64)
    return Matrix(rows, cols, values, dense, len(features), 1 << hash_bits)


@dataclass(frozen=True, slots=True)
class Head:
    """One fitted logistic regression."""

    bias: float
    dense: list[float]
    hashed: list[float]


def fit(
    matrix: Matrix,
    labels: Sequence[float],
    weights: Sequence[float],
    config: TrainConfig = TrainConfig(),
) -> Head:
    """Fit one head: weighted cross-entropy on soft ``labels`` in [0, 1], plus L2."""
    np = _numpy()
    y = np.asarray(labels, dtype=np.float64)
    sw = np.asarray(weights, dtype=np.float64)
    sw = sw / sw.sum()
    n_dense = matrix.dense.shape[1]
    params = np.zeros(matrix.width + n_dense + 1)
    prior = float(np.clip((y * sw).sum(), 1e-3, 1 - 1e-3))
    params[-1] = np.log(prior / (1 - prior))
    m = np.zeros_like(params)
    v = np.zeros_like(params)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, config.epochs + 1):
        w_hash, w_dense, bias = params[: matrix.width], params[matrix.width : -1], params[-1]
        z = np.bincount(
            matrix.rows, weights=matrix.values * w_hash[matrix.cols], minlength=matrix.n
        )
        z += matrix.dense @ w_dense + bias
        p = 1.0 / (1.0 + np.exp(-z))
        r = (p - y) * sw
        grad = np.empty_like(params)
        grad[: matrix.width] = np.bincount(
            matrix.cols, weights=matrix.values * r[matrix.rows], minlength=matrix.width
        )
        grad[matrix.width : -1] = matrix.dense.T @ r
        grad[-1] = r.sum()
        grad[:-1] += config.l2 * params[:-1]
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad * grad
        m_hat = m / (1 - beta1**step)
        v_hat = v / (1 - beta2**step)
        params -= config.learning_rate * m_hat / (np.sqrt(v_hat) + eps)
    return Head(
        bias=float(params[-1]),
        dense=[float(x) for x in params[matrix.width : -1]],
        hashed=[float(x) for x in params[: matrix.width]],
    )


def featurize_outcomes(outcomes: Sequence[routellm.Outcome], hash_bits: int) -> list[Features]:
    """The features of each outcome's routing prompt (a one-message conversation)."""
    return [
        featurize([{"role": "user", "content": o.prompt}], hash_bits=hash_bits) for o in outcomes
    ]


def fit_heads(
    outcomes: Sequence[routellm.Outcome],
    features: Sequence[Features],
    config: TrainConfig = TrainConfig(),
) -> dict[str, Head]:
    """Fit the ``weak`` and ``strong`` heads on ``outcomes`` (with their ``features``)."""
    matrix = matrix_of(features, config.hash_bits)
    weights = [DATASET_WEIGHTS[o.dataset] for o in outcomes]
    return {
        "weak": fit(matrix, [o.weak for o in outcomes], weights, config),
        "strong": fit(matrix, [o.strong for o in outcomes], weights, config),
    }


def _pack(values: Sequence[float]) -> str:
    # float16 is plenty for logistic weights and halves the artifact; struct's "e" reads it
    # back without numpy.
    clipped = [max(-60000.0, min(60000.0, x)) for x in values]
    return base64.b64encode(struct.pack(f"<{len(clipped)}e", *clipped)).decode("ascii")


def to_artifact(
    heads: dict[str, Head], config: TrainConfig, meta: dict[str, Any]
) -> dict[str, Any]:
    """The JSON document :class:`~somaagent.llm.learned.model.LearnedRouter` loads."""
    return {
        "format": ARTIFACT_FORMAT,
        "hash_bits": config.hash_bits,
        "dense_names": list(DENSE_NAMES),
        "heads": {
            name: {
                "bias": round(head.bias, 6),
                "dense": [round(x, 6) for x in head.dense],
                "hashed_f16": _pack(head.hashed),
            }
            for name, head in heads.items()
        },
        "anchors": {
            name: {"model": spec.name, "quality": spec.quality.model_dump(exclude_none=True)}
            for name, spec in _anchor_specs().items()
        },
        "training": meta,
    }


ANCHOR_MODELS = {"weak": "mixtral-8x7b", "strong": "gpt-4-1106-preview"}
"""The registry names of RouteLLM's weak and strong models."""


def _anchor_specs() -> dict[str, ModelSpec]:
    registry = ModelRegistry.load()
    return {head: registry.get(name) for head, name in ANCHOR_MODELS.items()}


def _auc(scores: Sequence[float], labels: Sequence[float]) -> float | None:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties count half)."""
    pairs = sorted(zip(scores, labels, strict=True))
    pos = sum(1 for _, y in pairs if y >= 0.5)
    neg = len(pairs) - pos
    if not pos or not neg:
        return None
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mid_rank = (i + j + 1) / 2.0
        rank_sum += mid_rank * sum(1 for k in range(i, j) if pairs[k][1] >= 0.5)
        i = j
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def main(argv: Sequence[str] | None = None) -> int:
    """The training command; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m somaagent.llm.learned.train")
    parser.add_argument(
        "--data", type=Path, default=None, help=f"RouteLLM folder ({routellm.ENV_VAR})"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_ARTIFACT, help="artifact to write")
    parser.add_argument("--folds", type=int, default=5, help="hold out 1 of N folds; 1: none")
    parser.add_argument("--hash-bits", type=int, default=TrainConfig().hash_bits)
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    args = parser.parse_args(argv)
    try:
        loaded = routellm.load(args.data)
    except routellm.DataMissingError as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 2
    config = TrainConfig(hash_bits=args.hash_bits, epochs=args.epochs)
    started = time.perf_counter()
    train = [o for o in loaded.outcomes if args.folds <= 1 or routellm.fold_of(o, args.folds) != 0]
    held = [o for o in loaded.outcomes if args.folds > 1 and routellm.fold_of(o, args.folds) == 0]
    heads = fit_heads(train, featurize_outcomes(train, config.hash_bits), config)
    meta: dict[str, Any] = {
        "data": "lm-sys/RouteLLM routellm/evals (gsm8k, mmlu, mt_bench)",
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "train_prompts": {d: sum(1 for o in train if o.dataset == d) for d in routellm.DATASETS},
        "contaminated_dropped": loaded.contaminated,
        "holdout": f"fold 0 of {args.folds} by sha1(prompt)" if args.folds > 1 else "none",
        "config": {"hash_bits": config.hash_bits, "l2": config.l2, "epochs": config.epochs},
        "dataset_weights": DATASET_WEIGHTS,
    }
    if held:
        from somaagent.llm.learned.model import LearnedRouter

        model = LearnedRouter.from_dict(to_artifact(heads, config, meta))
        for name in routellm.DATASETS:
            rows = [o for o in held if o.dataset == name]
            preds = [model.predict([{"role": "user", "content": o.prompt}]) for o in rows]
            gain = [s - w for w, s in ((p.weak, p.strong) for p in preds)]
            meta.setdefault("holdout_auc", {})[name] = {
                "weak_good": _round(_auc([p.weak for p in preds], [o.weak for o in rows])),
                "strong_beats_weak": _round(
                    _auc(gain, [1.0 if o.strong > o.weak else 0.0 for o in rows])
                ),
            }
    artifact = to_artifact(heads, config, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(artifact, separators=(",", ":")) + "\n", encoding="utf-8")
    seconds = time.perf_counter() - started
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB) in {seconds:.1f} s")
    print(json.dumps({k: meta[k] for k in ("train_prompts", "holdout_auc") if k in meta}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
