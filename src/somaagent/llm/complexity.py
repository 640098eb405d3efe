"""How hard a request is, and what kind of task it is, from the text alone.

:func:`estimate_complexity` reads a conversation and returns a :class:`Complexity`: a difficulty
in [0, 1], a task category (one of the registry's :data:`~somaagent.llm.registry.TASK_CATEGORIES`),
the answer length to expect, and the :class:`ComplexityFeatures` it was computed from: length,
code, maths, multi-step instructions, reasoning cues, the prompt's language and the capabilities
the caller requires. It is a handful of precompiled regular expressions: no model, no I/O, well
under a millisecond for ordinary prompts (long ones are sampled, head and tail).

The difficulty is a hand-set logistic score, a prior for when the learned router
(:mod:`somaagent.llm.learned`, trained on per-prompt outcomes) is not available; the learned
router takes these same features as part of its input.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from somaagent.llm.base import ChatMessage
from somaagent.llm.registry import Capability, TaskCategory

__all__ = [
    "Complexity",
    "ComplexityFeatures",
    "analysed_text",
    "estimate_complexity",
    "extract_features",
]

HEAD_CHARS = 4000
"""Characters read from the start of the last user message; the tail is read too."""
TAIL_CHARS = 1500

_FLAGS = re.IGNORECASE | re.MULTILINE

_CODE_STRONG = re.compile(
    r"```|^\s*(?:def|class|import|from\s+\S+\s+import|#include|package|func|fn|public\s+class)\b"
    r"|\b(?:traceback|stack trace|segfault|nullpointerexception|typeerror|syntaxerror)\b",
    _FLAGS,
)
_CODE_SYMBOLS = re.compile(r"[{};]\s*$|==|!=|->|=>|\(\)|\[\]|::|&&|\|\||^\s{4,}\S", _FLAGS)

_MATH_SYMBOLS = re.compile(
    r"\\(?:frac|sqrt|int|sum|prod|lim|cdot|times|leq|geq|pi|theta|alpha)|\$[^$\n]+\$|"
    r"\b[a-z]\s*\^\s*\d|\b[fgh]\(\s*[a-z0-9]\s*\)|\d\s*[-+*/^=<>]\s*\d|[=<>≤≥±√∑∫π]",
    _FLAGS,
)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")

_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•]|\([a-z0-9]\)|[a-h][.)])\s+\S", _FLAGS)

_WANTS_JSON = re.compile(r"\b(?:json|in json format|as json|json object|valid json)\b", _FLAGS)
_CHOICES = re.compile(r"^\s*[A-D][.)]\s+\S", re.MULTILINE)
_SHORT_ANSWER = re.compile(r"(?:answer:|answer with (?:only|just)|one word|yes or no)\s*$", _FLAGS)
_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE = re.compile(r"[.!?。！？]+(?:\s|$)")


class _Lexicon:
    """Cue words and two-word phrases, counted over a prompt's words in one pass.

    Set lookups over the word list are linear in the prompt's length; the equivalent
    alternation regexes cost ten times as much on long prompts.
    """

    __slots__ = ("phrases", "words")

    def __init__(self, entries: str) -> None:
        items = [e.strip().replace("_", " ") for e in entries.split()]
        self.words = frozenset(e for e in items if " " not in e)
        self.phrases = frozenset(e for e in items if " " in e)

    def count(self, words: Sequence[str], bigrams: Sequence[str]) -> int:
        hits = sum(1 for w in words if w in self.words)
        if self.phrases:
            hits += sum(1 for b in bigrams if b in self.phrases)
        return hits


# Underscores join the two words of a phrase; words are lower-case \w+ tokens.
_CODE_LEX = _Lexicon(
    "python javascript typescript java golang rust ruby php kotlin swift sql bash regex "
    "regular_expression html css api endpoint function method class variable compile compiler "
    "debug bug refactor algorithm recursion data_structure unit_test code program script "
    "implement library framework git docker json_schema shell_script runtime"
)
_MATH_LEX = _Lexicon(
    "solve equation equations calculate compute integral derivative differentiate integrate "
    "probability percent percentage average mean median ratio fraction sum product how_many "
    "how_much total remainder prove proof theorem lemma matrix matrices vector polynomial "
    "logarithm exponent prime divisible geometry triangle circle radius area volume perimeter "
    "algebra calculus statistics variance dollars dollar cents miles hours minutes per each "
    "twice half times"
)
_STEP_LEX = _Lexicon(
    "step_by first firstly second secondly then next after_that afterwards finally lastly "
    "subsequently and_also in_addition make_sure for_each each_of both"
)
_REASONING_LEX = _Lexicon(
    "why explain reason reasoning analyze analyse analysis compare contrast evaluate justify "
    "argue argument critique critical critically implication implications trade_off "
    "tradeoff tradeoffs pros_and what_if hypothesis hypotheses infer deduce deduction logic "
    "logical puzzle riddle paradox consequence consequences assess cause because therefore "
    "suppose assume dilemma strategy"
)
_WRITING_LEX = _Lexicon(
    "write compose draft essay story poem haiku limerick blog email letter article rewrite "
    "rephrase paraphrase tone style slogan speech narrative persuasive creative lyrics novel "
    "character pretend roleplay role_play imagine"
)
_EXTRACTION_LEX = _Lexicon(
    "extract summarize summarise summary tl_dr classify categorize categorise label tag parse "
    "list_all identify_the identify_all find_all key_points entities the_following table csv "
    "json yaml structured"
)

_STOPWORDS: dict[str, frozenset[str]] = {
    lang: frozenset(words.split(" "))
    for lang, words in {
        "en": "the and is of to in that it for you are with this what how",
        "es": "el la los las de que y en un una es por para con como",
        "fr": "le la les des de et est un une que pour dans avec pas",
        "de": "der die das und ist nicht ein eine zu mit den von auf",
        "pt": "o a os as de que e em um uma é para com não do da",
        "it": "il lo la gli le di che e è un una per con non del della",
    }.items()
}

# Unicode script ranges for the languages a script identifies on its own.
_SCRIPTS: tuple[tuple[str, int, int], ...] = (
    ("ja", 0x3040, 0x30FF),  # hiragana, katakana: checked before Han
    ("ko", 0xAC00, 0xD7AF),
    ("zh", 0x4E00, 0x9FFF),
    ("ru", 0x0400, 0x04FF),
    ("el", 0x0370, 0x03FF),
    ("he", 0x0590, 0x05FF),
    ("ar", 0x0600, 0x06FF),
    ("hi", 0x0900, 0x097F),
    ("th", 0x0E00, 0x0E7F),
)

_OUTPUT_TOKENS: dict[str, int] = {
    "coding": 450,
    "math": 280,
    "reasoning": 380,
    "writing": 520,
    "extraction": 180,
    "chat": 220,
}


@dataclass(frozen=True, slots=True)
class ComplexityFeatures:
    """What :func:`estimate_complexity` measured. Scores are evidence in [0, 1).

    Attributes:
        chars: characters in the whole conversation.
        words: words in the last user message.
        messages: messages in the conversation.
        user_turns: user messages in the conversation.
        numbers: numbers in the last user message.
        questions: question marks in the last user message.
        list_items: numbered or bulleted lines in the last user message.
        code: evidence of a programming task.
        math: evidence of a mathematical task.
        multi_step: evidence of several instructions or steps.
        reasoning: evidence that the answer needs explanation or argument.
        writing: evidence of a writing task.
        extraction: evidence of summarising, extracting or classifying.
        multiple_choice: the prompt offers lettered choices (A-D).
        short_answer: the prompt asks for a one-word or one-letter answer.
        wants_json: the prompt asks for JSON.
        language: an ISO 639-1 code guessed from script and stop words, ``"und"`` if unknown.
        non_ascii: the share of non-ASCII characters in the last user message.
    """

    chars: int
    words: int
    messages: int
    user_turns: int
    numbers: int
    questions: int
    list_items: int
    code: float
    math: float
    multi_step: float
    reasoning: float
    writing: float
    extraction: float
    multiple_choice: bool
    short_answer: bool
    wants_json: bool
    language: str
    non_ascii: float

    def as_dict(self) -> dict[str, Any]:
        """The features as a JSON-ready mapping."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Complexity:
    """The estimate for one request.

    Attributes:
        difficulty: 0 (trivial) to 1 (needs the strongest model).
        category: the task category whose quality score applies.
        expected_output_tokens: how long an answer is likely to be, before any ``max_tokens``.
        capabilities: the capabilities the request requires (from the caller, not guessed).
        features: what the estimate was computed from.
    """

    difficulty: float
    category: TaskCategory
    expected_output_tokens: int
    capabilities: frozenset[Capability]
    features: ComplexityFeatures


def _evidence(score: float) -> float:
    """Map a non-negative amount of evidence to [0, 1): 1 - e^-x."""
    return 1.0 - math.exp(-max(score, 0.0))


def _language(text: str, words: Sequence[str]) -> tuple[str, float]:
    text = text[:2000]  # enough to tell the script; keeps long prompts cheap
    if not text:
        return "und", 0.0
    non_ascii = sum(1 for ch in text if ord(ch) > 127)
    share = non_ascii / len(text)
    if non_ascii:
        counts = dict.fromkeys((name for name, _, _ in _SCRIPTS), 0)
        for ch in text:
            code = ord(ch)
            if code > 0x036F:
                for name, low, high in _SCRIPTS:
                    if low <= code <= high:
                        counts[name] += 1
                        break
        best = max(counts, key=lambda k: counts[k])
        # Japanese mixes kana with Han: any kana at all means Japanese.
        if counts["ja"] and counts["ja"] + counts["zh"] >= 0.2 * len(text):
            return "ja", share
        if counts[best] >= 0.2 * len(text):
            return best, share
    sample = [w.lower() for w in words[:400]]
    hits = {lang: sum(1 for w in sample if w in stop) for lang, stop in _STOPWORDS.items()}
    lang = max(hits, key=lambda k: hits[k])
    if hits[lang] == 0:
        return ("en" if share < 0.05 and words else "und"), share
    return lang, share


def analysed_text(messages: Sequence[ChatMessage]) -> str:
    """The part of a conversation the estimate reads: the last user message, head and tail.

    A conversation without a user message is read from its last message.
    """
    text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    if not text and messages:
        text = messages[-1]["content"]
    if len(text) > HEAD_CHARS + TAIL_CHARS:
        text = text[:HEAD_CHARS] + "\n" + text[-TAIL_CHARS:]
    return text


def extract_features(messages: Sequence[ChatMessage]) -> ComplexityFeatures:
    """Measure a conversation; see :class:`ComplexityFeatures`."""
    text = analysed_text(messages)
    words = _WORD.findall(text)
    n_words = max(len(words), 1)
    per_100 = 100.0 / max(n_words, 20)  # densities, damped for very short prompts

    lowered = [w.lower() for w in words]
    bigrams = [f"{a} {b}" for a, b in itertools.pairwise(lowered)]

    code_strong = len(_CODE_STRONG.findall(text))
    code = _evidence(
        1.5 * code_strong
        + 0.35 * _CODE_LEX.count(lowered, bigrams)
        + 0.25 * len(_CODE_SYMBOLS.findall(text))
    )
    numbers = len(_NUMBER.findall(text))
    maths = _evidence(
        0.25 * _MATH_LEX.count(lowered, bigrams) * min(per_100, 2.0)
        + 0.6 * len(_MATH_SYMBOLS.findall(text))
        + 0.15 * min(numbers, 12)
    )
    list_items = len(_LIST_ITEM.findall(text))
    questions = text.count("?") + text.count("？")
    sentences = max(len(_SENTENCE.findall(text)), 1)
    multi_step = _evidence(
        0.3 * _STEP_LEX.count(lowered, bigrams)
        + 0.3 * list_items
        + 0.3 * max(questions - 1, 0)
        + 0.08 * max(sentences - 3, 0)
    )
    reasoning = _evidence(0.5 * _REASONING_LEX.count(lowered, bigrams))
    writing = _evidence(0.8 * _WRITING_LEX.count(lowered, bigrams))
    extraction = _evidence(0.6 * _EXTRACTION_LEX.count(lowered, bigrams))
    language, non_ascii = _language(text, words)
    return ComplexityFeatures(
        chars=sum(len(m["content"]) for m in messages),
        words=len(words),
        messages=len(messages),
        user_turns=sum(1 for m in messages if m["role"] == "user"),
        numbers=numbers,
        questions=questions,
        list_items=list_items,
        code=round(code, 4),
        math=round(maths, 4),
        multi_step=round(multi_step, 4),
        reasoning=round(reasoning, 4),
        writing=round(writing, 4),
        extraction=round(extraction, 4),
        multiple_choice=len(_CHOICES.findall(text)) >= 3,
        short_answer=bool(_SHORT_ANSWER.search(text[-200:])),
        wants_json=bool(_WANTS_JSON.search(text)),
        language=language,
        non_ascii=round(non_ascii, 4),
    )


def _category(f: ComplexityFeatures) -> TaskCategory:
    scores: dict[TaskCategory, float] = {
        "coding": f.code * 1.2,
        "math": f.math,
        "reasoning": f.reasoning * 0.9,
        "writing": f.writing * 0.9,
        "extraction": f.extraction * 0.8,
    }
    best = max(scores, key=lambda k: scores[k])
    return best if scores[best] >= 0.45 else "chat"


def _difficulty(f: ComplexityFeatures, category: TaskCategory) -> float:
    z = (
        -1.9
        + 0.45 * math.log1p(f.words / 60.0)
        + 1.1 * f.code
        + 1.3 * f.math
        + 0.9 * f.multi_step
        + 1.0 * f.reasoning
        + 0.25 * f.extraction
        - 0.3 * f.writing
        + 0.2 * min(f.user_turns - 1, 4)
        + (0.35 if f.language not in ("en", "und") else 0.0)
        + (0.3 if category in ("math", "coding") else 0.0)
        - (0.3 if f.short_answer and not f.math else 0.0)
    )
    return 1.0 / (1.0 + math.exp(-z))


def _output_tokens(f: ComplexityFeatures, category: TaskCategory) -> int:
    if f.short_answer or (f.multiple_choice and not f.reasoning):
        return 16
    base = _OUTPUT_TOKENS[category]
    return int(base * (1.0 + 0.8 * f.multi_step + 0.3 * f.reasoning))


def estimate_complexity(
    messages: Sequence[ChatMessage],
    *,
    capabilities: Iterable[Capability] = (),
    category: TaskCategory | None = None,
) -> Complexity:
    """Estimate how hard a conversation's next answer is, and what kind of task it is.

    Args:
        messages: the conversation, oldest first; the last user message weighs most.
        capabilities: capabilities the request requires (tools, vision, ...), passed through.
        category: a task category to use instead of the guessed one.

    Returns:
        The :class:`Complexity`; ``difficulty`` is in [0, 1].
    """
    features = extract_features(messages)
    chosen = category or _category(features)
    return Complexity(
        difficulty=round(_difficulty(features, chosen), 4),
        category=chosen,
        expected_output_tokens=_output_tokens(features, chosen),
        capabilities=frozenset(capabilities),
        features=features,
    )
