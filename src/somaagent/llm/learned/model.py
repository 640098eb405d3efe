"""The learned router at run time: load the artifact, predict per-prompt quality.

The artifact (``router_model.json`` next to this module, written by :mod:`.train`) holds two
logistic-regression heads over :func:`~somaagent.llm.learned.features.featurize`'s features. For
a prompt they predict the quality of the two *anchor* models they were trained on: the weak
Mixtral-8x7B-Instruct and the strong GPT-4-1106-preview. The router places every other model
between (or beyond) the anchors by its registry quality (see :mod:`somaagent.llm.router`).

Loading and prediction use only the standard library: the weights are float16, base64-encoded,
read with :mod:`struct`.
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
from somaagent.llm.base import ChatMessage
from somaagent.llm.complexity import Complexity
from somaagent.llm.learned.features import DENSE_NAMES, featurize
from somaagent.llm.registry import Quality

__all__ = [
    "ARTIFACT_FORMAT",
    "DEFAULT_ARTIFACT",
    "HEADS",
    "Anchor",
    "LearnedRouter",
    "Prediction",
    "load_default",
]

logger = logging.getLogger(__name__)

ARTIFACT_FORMAT = "somaagent.learned-router/1"
DEFAULT_ARTIFACT = Path(__file__).with_name("router_model.json")
HEADS = ("weak", "strong")


@dataclass(frozen=True, slots=True)
class Prediction:
    """Predicted quality of the two anchor models on one prompt, each in (0, 1).

    Attributes:
        weak: the weak anchor's (Mixtral-8x7B-Instruct) expected quality.
        strong: the strong anchor's (GPT-4-1106-preview) expected quality.
        complexity: the complexity estimate computed on the way.
    """

    weak: float
    strong: float
    complexity: Complexity


@dataclass(frozen=True, slots=True)
class Anchor:
    """A model the heads were trained on, with the registry quality it had at training time."""

    name: str
    quality: Quality


@dataclass(frozen=True, slots=True)
class _Head:
    bias: float
    dense: tuple[float, ...]
    hashed: tuple[float, ...]

    def logit(self, hashed: Sequence[int], scale: float, dense: Sequence[float]) -> float:
        w = self.hashed
        z = self.bias + scale * sum(w[i] for i in hashed)
        return z + sum(a * b for a, b in zip(self.dense, dense, strict=True))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _unpack(encoded: str, count: int, where: str) -> tuple[float, ...]:
    raw = base64.b64decode(encoded)
    if len(raw) != 2 * count:
        raise ConfigurationError(f"{where}: expected {count} float16 weights, got {len(raw) // 2}")
    return struct.unpack(f"<{count}e", raw)


class LearnedRouter:
    """Per-prompt quality of the anchor models, from a trained artifact.

    Build it with :meth:`load` (a file) or :meth:`from_dict` (a parsed artifact).

    Attributes:
        hash_bits: log2 of the number of hashed word features.
        weak_anchor: the weak model the ``weak`` head predicts.
        strong_anchor: the strong model the ``strong`` head predicts.
        training: what the artifact says about its training data and held-out scores.
    """

    def __init__(
        self,
        *,
        hash_bits: int,
        heads: Mapping[str, _Head],
        anchors: Mapping[str, Anchor],
        training: Mapping[str, Any],
    ) -> None:
        self.hash_bits = hash_bits
        self._weak = heads["weak"]
        self._strong = heads["strong"]
        self.weak_anchor = anchors["weak"]
        self.strong_anchor = anchors["strong"]
        self.training = dict(training)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], *, source: str = "artifact") -> LearnedRouter:
        """Build from a parsed artifact.

        Raises:
            ConfigurationError: the document is not an artifact this version reads.
        """
        try:
            if document.get("format") != ARTIFACT_FORMAT:
                raise ConfigurationError(
                    f"{source}: format {document.get('format')!r} is not {ARTIFACT_FORMAT!r}; "
                    "retrain with python -m somaagent.llm.learned.train"
                )
            if tuple(document["dense_names"]) != DENSE_NAMES:
                raise ConfigurationError(
                    f"{source}: trained on other dense features than this version computes; "
                    "retrain with python -m somaagent.llm.learned.train"
                )
            bits = int(document["hash_bits"])
            heads = {}
            for name in HEADS:
                raw = document["heads"][name]
                heads[name] = _Head(
                    bias=float(raw["bias"]),
                    dense=tuple(float(x) for x in raw["dense"]),
                    hashed=_unpack(raw["hashed_f16"], 1 << bits, f"{source}: head {name!r}"),
                )
            anchors = {
                name: Anchor(
                    name=str(document["anchors"][name]["model"]),
                    quality=Quality.model_validate(document["anchors"][name]["quality"]),
                )
                for name in HEADS
            }
            return cls(
                hash_bits=bits,
                heads=heads,
                anchors=anchors,
                training=document.get("training", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"{source}: not a valid learned-router artifact: {exc}"
            ) from exc

    @classmethod
    def load(cls, path: Path | None = None) -> LearnedRouter:
        """Load an artifact file (default: the one shipped with the package).

        Raises:
            ConfigurationError: the file is missing, unreadable or invalid.
        """
        path = path or DEFAULT_ARTIFACT
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigurationError(
                f"learned-router artifact {str(path)!r} not found; train one with "
                "python -m somaagent.llm.learned.train"
            ) from exc
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read {str(path)!r}: {exc}") from exc
        return cls.from_dict(document, source=str(path))

    def predict(
        self, messages: Sequence[ChatMessage], *, complexity: Complexity | None = None
    ) -> Prediction:
        """The anchors' expected quality on the conversation's next answer."""
        f = featurize(messages, hash_bits=self.hash_bits, complexity=complexity)
        return Prediction(
            weak=_sigmoid(self._weak.logit(f.hashed, f.scale, f.dense)),
            strong=_sigmoid(self._strong.logit(f.hashed, f.scale, f.dense)),
            complexity=f.complexity,
        )


@lru_cache(maxsize=1)
def load_default() -> LearnedRouter | None:
    """The packaged learned router, or ``None`` (logged once) when it cannot be loaded."""
    try:
        return LearnedRouter.load()
    except ConfigurationError as exc:
        logger.warning("learned router unavailable, routing on heuristics only: %s", exc)
        return None
