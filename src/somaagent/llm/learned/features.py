"""The learned router's input: hashed words of the prompt plus the complexity features.

A prompt becomes a sparse vector of ``2 ** hash_bits`` word features (lower-cased words and
adjacent word pairs, numbers reduced to their digit count, each hashed with CRC-32 and present
or absent, scaled to unit length) followed by the dense features of
:func:`somaagent.llm.complexity.extract_features`. Everything here is the standard library,
so routing needs neither numpy nor a model download; training (``train.py``) uses numpy.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from somaagent.llm.base import ChatMessage
from somaagent.llm.complexity import Complexity, analysed_text, estimate_complexity
from somaagent.llm.registry import TASK_CATEGORIES

__all__ = ["DENSE_NAMES", "Features", "dense_features", "featurize"]

_WORD = re.compile(r"\w+", re.UNICODE)
_DIGITS = re.compile(r"\d")
_MAX_WORDS = 1500
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE = re.compile(r"[.!?]+(?:\s|$)")
_FRACTION = re.compile(r"\d\s*/\s*\d|\d\.\d")

DENSE_NAMES: tuple[str, ...] = (
    "log_words",
    "log_chars",
    "log_numbers",
    "log_questions",
    "log_list_items",
    "code",
    "math",
    "multi_step",
    "reasoning",
    "writing",
    "extraction",
    "multiple_choice",
    "short_answer",
    "wants_json",
    "non_ascii",
    "not_english",
    "more_turns",
    "heuristic_difficulty",
    "log_sentences",
    "log_distinct_numbers",
    "log_largest_number",
    "has_percent",
    "has_fraction_or_decimal",
    "has_money",
    *(f"category_{c}" for c in TASK_CATEGORIES),
)
"""The dense features, in the order the model's weights use."""


@dataclass(frozen=True, slots=True)
class Features:
    """One prompt's features.

    Attributes:
        hashed: the distinct hashed word-feature indices, each worth ``scale``.
        scale: the value of each hashed feature (1 / sqrt(len(hashed))).
        dense: the values of :data:`DENSE_NAMES`, in order.
        complexity: the complexity estimate computed on the way.
    """

    hashed: tuple[int, ...]
    scale: float
    dense: tuple[float, ...]
    complexity: Complexity


def _numeric(text: str) -> tuple[float, ...]:
    numbers = {n.replace(",", "") for n in _NUMBER.findall(text)}
    largest = 0.0
    for n in numbers:
        try:
            largest = max(largest, float(n))
        except ValueError:  # "1.2.3": not a number
            continue
    return (
        math.log1p(len(_SENTENCE.findall(text))) / 2.0,
        math.log1p(len(numbers)) / 2.0,
        math.log10(1.0 + min(largest, 1e12)) / 4.0,
        1.0 if "%" in text or "percent" in text else 0.0,
        1.0 if _FRACTION.search(text) else 0.0,
        1.0 if "$" in text else 0.0,
    )


def _dense(c: Complexity, text: str) -> tuple[float, ...]:
    f = c.features
    return (
        math.log1p(f.words) / 5.0,
        math.log1p(f.chars) / 8.0,
        math.log1p(f.numbers) / 2.0,
        math.log1p(f.questions),
        math.log1p(f.list_items),
        f.code,
        f.math,
        f.multi_step,
        f.reasoning,
        f.writing,
        f.extraction,
        float(f.multiple_choice),
        float(f.short_answer),
        float(f.wants_json),
        f.non_ascii,
        0.0 if f.language in ("en", "und") else 1.0,
        float(f.user_turns > 1),
        c.difficulty,
        *_numeric(text),
        *(1.0 if c.category == name else 0.0 for name in TASK_CATEGORIES),
    )


def _token(word: str) -> str:
    return f"<num{min(len(word), 6)}>" if _DIGITS.search(word) else word


def featurize(
    messages: Sequence[ChatMessage], *, hash_bits: int, complexity: Complexity | None = None
) -> Features:
    """The features of a conversation's next answer, for a model with ``hash_bits``.

    Args:
        messages: the conversation; the last user message is what is read.
        hash_bits: log2 of the number of hashed word features.
        complexity: the estimate for ``messages``, if already computed.
    """
    c = complexity if complexity is not None else estimate_complexity(messages)
    text = analysed_text(messages).lower()
    words = [_token(w) for w in _WORD.findall(text)[:_MAX_WORDS]]
    mask = (1 << hash_bits) - 1
    crc = zlib.crc32
    indices = {crc(w.encode()) & mask for w in words}
    indices.update(crc(f"{a} {b}".encode()) & mask for a, b in itertools.pairwise(words))
    indices.update(crc(f"{c.category}|{w}".encode()) & mask for w in words)
    hashed = tuple(sorted(indices))
    scale = 1.0 / math.sqrt(len(hashed)) if hashed else 0.0
    return Features(hashed=hashed, scale=scale, dense=_dense(c, text), complexity=c)


def dense_features(
    messages: Sequence[ChatMessage], *, complexity: Complexity | None = None
) -> tuple[tuple[float, ...], Complexity]:
    """Only the dense features (:data:`DENSE_NAMES`) and the complexity estimate, without the
    hashed words: what the embedding-based quality heads read besides the embedding."""
    c = complexity if complexity is not None else estimate_complexity(messages)
    return _dense(c, analysed_text(messages).lower()), c
