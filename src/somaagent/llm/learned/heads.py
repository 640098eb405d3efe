"""Per-model quality heads over the prompt's embedding and its cheap features: what ships.

Each head predicts one model's quality on a prompt (the probability of a correct answer, or the
judge's score / 10) as a linear function of ``x = [standardised dense features, s * MiniLM
embedding]`` (``s`` = :attr:`QualityHeads.embedding_scale`), fitted by ridge regression
(:mod:`.fitting`). Heads exist for the models of the public training data: RouteLLM's two
(Mixtral-8x7B-Instruct, GPT-4-1106-preview, on GSM8K, MMLU and MT-Bench) and arena-bench-v1's
15; :attr:`QualityHeads.registry` maps the ones that are registry models (the same snapshot).

Why these heads (``bench/results/router.md``, 2026-12-02 15:12 UTC: leave-one-dataset-out over
GSM8K, MMLU, MT-Bench and arena-bench-v1, hyper-parameters chosen by cross-validation inside
the training datasets, APGR with bootstrap 95% intervals): these heads reach 0.571 [0.532,
0.613], 0.537 [0.520, 0.554], 0.638 [0.506, 0.767] and 0.541 [0.492, 0.587] on the held-out
dataset; a similarity-weighted kNN over the embeddings 0.532/0.508/0.442/0.520, a rank-16
matrix factorisation in the style of RouteLLM's ``mf`` 0.483/0.554/0.572/0.527, the earlier
hashed-word heads 0.528/0.566/0.653/0.538, and a one-layer MLP 0.484/0.524/0.470/0.476
(``bench/results/router_experiments.md``). Honestly: the same linear heads on the cheap
features alone do as well held out (0.573/0.555/0.650/0.541; every difference here is inside
the intervals) -- the embedding carries little across these four datasets. They ship with the
embedding because it costs nothing held out, helps in distribution (MT-Bench out-of-fold 0.755
vs 0.718 without it), and gives a tenant's own heads (:mod:`somaagent.llm.feedback`) a topic
signal to learn from its traffic. Linear heads are also closed-form (a tenant's heads are a
ridge update towards the public ones), tiny (one vector per model, 19 KB for 15 models) and
need no numpy at run time: two dot products of ~400 floats per decision.

:attr:`QualityHeads.gain_sd` is the spread of the held-out error of the predicted gain
(strong minus weak): the router turns the distance between a prediction and its decision bar
into a confidence with it.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from somaagent.errors import ConfigurationError
from somaagent.llm.learned.features import DENSE_NAMES

__all__ = [
    "DEFAULT_HEADS",
    "HEADS_FORMAT",
    "Head",
    "QualityHeads",
    "load_default_heads",
    "pack_f16",
    "unpack_f16",
]

logger = logging.getLogger(__name__)

HEADS_FORMAT = "somaagent.quality-heads/1"
DEFAULT_HEADS = Path(__file__).with_name("quality_heads.json")


def pack_f16(values: Sequence[float]) -> str:
    """Weights as base64 float16 (plenty for these weights; half the size of float32)."""
    clipped = [max(-60000.0, min(60000.0, float(x))) for x in values]
    return base64.b64encode(struct.pack(f"<{len(clipped)}e", *clipped)).decode("ascii")


def unpack_f16(encoded: str, count: int, where: str) -> tuple[float, ...]:
    """Read :func:`pack_f16`'s output back.

    Raises:
        ConfigurationError: not ``count`` float16 values.
    """
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise ConfigurationError(f"{where}: weights are not base64: {exc}") from exc
    if len(raw) != 2 * count:
        raise ConfigurationError(f"{where}: expected {count} float16 weights, got {len(raw) // 2}")
    return struct.unpack(f"<{count}e", raw)


@dataclass(frozen=True, slots=True)
class Head:
    """One model's linear quality predictor."""

    bias: float
    weights: tuple[float, ...]

    def predict(self, x: Sequence[float]) -> float:
        """Predicted quality, clipped to [0.001, 0.999]."""
        z = self.bias + math.fsum(w * v for w, v in zip(self.weights, x, strict=True))
        return min(max(z, 0.001), 0.999)

    def to_dict(self) -> dict[str, Any]:
        """The artifact's form of the head."""
        return {"bias": round(self.bias, 6), "weights_f16": pack_f16(self.weights)}


class QualityHeads:
    """Per-model quality predictions for a prompt, from its dense features and embedding.

    Attributes:
        heads: data model name -> head.
        registry: data model name -> registry model name, for the models that are the same.
        dense_mean: the dense features' training means (standardisation).
        dense_std: their training standard deviations.
        embedding_model: the embedder the heads were trained with (``all-MiniLM-L6-v2``).
        embedding_dim: its vectors' length.
        embedding_scale: the weight of the (unit-length) embedding against the dense block.
        gain_sd: the held-out standard deviation of the predicted strong-minus-weak gain.
        evidence: what the heads were learned from, for route reasons.
        training: what the artifact says about its training.
    """

    def __init__(
        self,
        *,
        heads: Mapping[str, Head],
        registry: Mapping[str, str],
        dense_mean: Sequence[float],
        dense_std: Sequence[float],
        embedding_model: str,
        embedding_dim: int,
        embedding_scale: float,
        gain_sd: float,
        evidence: str,
        training: Mapping[str, Any],
    ) -> None:
        self.heads = dict(heads)
        self.registry = dict(registry)
        self.by_registry = {reg: data for data, reg in self.registry.items()}
        self.dense_mean = tuple(dense_mean)
        self.dense_std = tuple(s if s > 1e-9 else 1.0 for s in dense_std)
        self.embedding_model = embedding_model
        self.embedding_dim = embedding_dim
        self.embedding_scale = embedding_scale
        self.gain_sd = gain_sd
        self.evidence = evidence
        self.training = dict(training)

    # -- inputs and predictions ------------------------------------------------------------

    def vector(self, dense: Sequence[float], embedding: Sequence[float]) -> list[float]:
        """The heads' input for a prompt.

        Raises:
            ValueError: the embedding does not have :attr:`embedding_dim` values.
        """
        if len(embedding) != self.embedding_dim:
            raise ValueError(
                f"embedding has {len(embedding)} values, the heads expect {self.embedding_dim}"
            )
        norm = math.sqrt(math.fsum(v * v for v in embedding)) or 1.0
        scale = self.embedding_scale / norm
        x = [(v - m) / s for v, m, s in zip(dense, self.dense_mean, self.dense_std, strict=True)]
        x.extend(v * scale for v in embedding)
        return x

    def predict(self, x: Sequence[float], model: str) -> float:
        """``model``'s (data name) predicted quality for the input ``x``."""
        return self.heads[model].predict(x)

    def predict_registry(self, x: Sequence[float], registry_name: str) -> float | None:
        """The predicted quality of a registry model, or ``None`` when no head is that model."""
        data = self.by_registry.get(registry_name)
        return None if data is None else self.heads[data].predict(x)

    # -- the artifact ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON document :meth:`from_dict` reads."""
        return {
            "format": HEADS_FORMAT,
            "dense_names": list(DENSE_NAMES),
            "dense_mean": [round(x, 6) for x in self.dense_mean],
            "dense_std": [round(x, 6) for x in self.dense_std],
            "embedding": {
                "model": self.embedding_model,
                "dim": self.embedding_dim,
                "scale": self.embedding_scale,
            },
            "gain_sd": round(self.gain_sd, 6),
            "evidence": self.evidence,
            "registry": self.registry,
            "heads": {name: head.to_dict() for name, head in self.heads.items()},
            "training": self.training,
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], *, source: str = "artifact") -> QualityHeads:
        """Build from a parsed artifact.

        Raises:
            ConfigurationError: the document is not an artifact this version reads.
        """
        try:
            if document.get("format") != HEADS_FORMAT:
                raise ConfigurationError(
                    f"{source}: format {document.get('format')!r} is not {HEADS_FORMAT!r}; "
                    "retrain with python -m somaagent.llm.learned.fitting"
                )
            if tuple(document["dense_names"]) != DENSE_NAMES:
                raise ConfigurationError(
                    f"{source}: trained on other dense features than this version computes"
                )
            embedding = document["embedding"]
            dim = int(embedding["dim"])
            width = len(DENSE_NAMES) + dim
            heads = {
                str(name): Head(
                    bias=float(raw["bias"]),
                    weights=unpack_f16(raw["weights_f16"], width, f"{source}: head {name!r}"),
                )
                for name, raw in document["heads"].items()
            }
            registry = {str(k): str(v) for k, v in document.get("registry", {}).items()}
            missing = [k for k in registry if k not in heads]
            if missing or not heads:
                raise ConfigurationError(f"{source}: no head for {missing or 'any model'}")
            mean = [float(x) for x in document["dense_mean"]]
            std = [float(x) for x in document["dense_std"]]
            if len(mean) != len(DENSE_NAMES) or len(std) != len(DENSE_NAMES):
                raise ConfigurationError(f"{source}: dense_mean/dense_std have the wrong length")
            return cls(
                heads=heads,
                registry=registry,
                dense_mean=mean,
                dense_std=std,
                embedding_model=str(embedding["model"]),
                embedding_dim=dim,
                embedding_scale=float(embedding["scale"]),
                gain_sd=float(document["gain_sd"]),
                evidence=str(document.get("evidence", "public data")),
                training=document.get("training", {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigurationError(
                f"{source}: not a valid quality-heads artifact: {exc}"
            ) from exc

    @classmethod
    def load(cls, path: Path | None = None) -> QualityHeads:
        """Load an artifact file (default: the one shipped with the package).

        Raises:
            ConfigurationError: the file is missing, unreadable or invalid.
        """
        path = path or DEFAULT_HEADS
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigurationError(f"quality-heads artifact {str(path)!r} not found") from exc
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read {str(path)!r}: {exc}") from exc
        if not isinstance(document, dict):
            raise ConfigurationError(f"{path}: not a valid quality-heads artifact")
        return cls.from_dict(document, source=str(path))


@lru_cache(maxsize=1)
def load_default_heads() -> tuple[QualityHeads | None, str | None]:
    """The packaged heads, or ``None`` and why (logged once): the router then routes on the
    next evidence and says so in its reasons."""
    try:
        return QualityHeads.load(), None
    except ConfigurationError as exc:
        logger.warning("quality heads unavailable, routing without them: %s", exc)
        return None, f"the quality-heads artifact is unusable ({exc})"
