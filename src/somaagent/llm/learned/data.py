"""RouteLLM's per-prompt outcomes: loading, contamination filtering and deterministic splits.

The data (``lm-sys/RouteLLM``, ``routellm/evals/``; Apache-2.0) records, per prompt, how a weak
model (Mixtral-8x7B-Instruct) and a strong model (GPT-4-1106-preview) did:

* ``gsm8k/gsm8k_responses.csv``: 1,319 grade-school maths problems, correct or not, with both
  answers (so their lengths are known);
* ``mmlu/mmlu_<subject>.csv``: 14,042 multiple-choice questions in 57 subjects, correct or not;
* ``mt_bench/question.jsonl`` and ``judgements.jsonl``: 80 two-turn questions, each turn scored
  1-10 by a GPT-4 judge; the conversations are inside the judge prompts.

Each dataset's ``contaminated_prompts.jsonl`` lists evaluation prompts that also occur in
RouteLLM's router-training data; they are dropped here, from training and evaluation alike.

The folder comes from the setting ``SOMA_ROUTELLM_DATA``, else ``../shared/data/routellm``
next to the repository. It is not part of the package: without it, :func:`load` raises
:class:`DataMissingError`, whose message says where it looked.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from somaagent.errors import ConfigurationError

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "STRONG_MODEL",
    "WEAK_MODEL",
    "DataMissingError",
    "DatasetName",
    "Outcome",
    "default_data_dir",
    "fold_of",
    "load",
]

DatasetName = Literal["gsm8k", "mmlu", "mt_bench"]
DATASETS: tuple[DatasetName, ...] = get_args(DatasetName)

ENV_VAR = "SOMA_ROUTELLM_DATA"
WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_MODEL = "gpt-4-1106-preview"

_REPO_ROOT = Path(__file__).resolve().parents[4]
_CONVERSATION = "<|The Start of Assistant A's Conversation with User|>"
_ASSISTANT = re.compile(
    r"### Assistant A:\n(.*?)(?=\n\n### User:|\n\n<\|The End of Assistant A)", re.S
)


class DataMissingError(ConfigurationError):
    """The RouteLLM data folder is not there (a fresh clone does not have it)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the weak and the strong model did on one prompt.

    Attributes:
        dataset: ``gsm8k``, ``mmlu`` or ``mt_bench``.
        prompt: the prompt the routing decision sees (MT-Bench: the first turn).
        weak: the weak model's quality on it, in [0, 1] (accuracy, or judge score / 10).
        strong: the strong model's quality on it.
        turns: every user turn (one, or two for MT-Bench).
        weak_answers: the weak model's answers per turn, where the data has them.
        strong_answers: the strong model's answers per turn, where the data has them.
    """

    dataset: DatasetName
    prompt: str
    weak: float
    strong: float
    turns: tuple[str, ...]
    weak_answers: tuple[str, ...] = ()
    strong_answers: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """A stable id for the prompt: what splits are computed from."""
        return hashlib.sha1(_normalise(self.prompt).encode()).hexdigest()


def _normalise(text: str) -> str:
    return " ".join(text.replace("’", "'").split()).casefold()


def fold_of(outcome: Outcome, folds: int) -> int:
    """The prompt's fold in ``range(folds)``, from a hash of its text (identical prompts agree)."""
    return int(outcome.key[:8], 16) % folds


def default_data_dir() -> Path:
    """``$SOMA_ROUTELLM_DATA``, else ``../shared/data/routellm`` beside the repository."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured)
    beside_repo = _REPO_ROOT.parent / "shared" / "data" / "routellm"
    if beside_repo.is_dir():
        return beside_repo
    return Path("..", "shared", "data", "routellm").resolve()


def _check(root: Path) -> None:
    if not (root / "gsm8k").is_dir():
        raise DataMissingError(
            f"RouteLLM data not found at {str(root)!r}: set {ENV_VAR} (or pass --data) to the "
            "folder holding gsm8k/, mmlu/ and mt_bench/ from lm-sys/RouteLLM routellm/evals/"
        )


def _contaminated(folder: Path) -> frozenset[str]:
    path = folder / "contaminated_prompts.jsonl"
    if not path.is_file():
        return frozenset()
    found: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                found.update(
                    _normalise(row[k]) for k in ("eval_prompt", "train_prompt") if k in row
                )
    return frozenset(found)


def _truth(value: str) -> float:
    return 1.0 if value.strip().lower() == "true" else 0.0


def _gsm8k(folder: Path) -> Iterator[Outcome]:
    with (folder / "gsm8k_responses.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            yield Outcome(
                dataset="gsm8k",
                prompt=row["prompt"],
                weak=_truth(row[WEAK_MODEL]),
                strong=_truth(row[STRONG_MODEL]),
                turns=(row["prompt"],),
                weak_answers=(row[f"{WEAK_MODEL}_response"],),
                strong_answers=(row[f"{STRONG_MODEL}_response"],),
            )


def _mmlu(folder: Path) -> Iterator[Outcome]:
    for path in sorted(folder.glob("mmlu_*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                yield Outcome(
                    dataset="mmlu",
                    prompt=row["prompt"],
                    weak=_truth(row[WEAK_MODEL]),
                    strong=_truth(row[STRONG_MODEL]),
                    turns=(row["prompt"],),
                )


def _mt_bench(folder: Path) -> Iterator[Outcome]:
    questions: dict[int, list[str]] = {}
    with (folder / "question.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                questions[int(row["question_id"])] = [str(t) for t in row["turns"]]
    scores: dict[tuple[int, str], list[float]] = {}
    answers: dict[tuple[int, str], tuple[str, ...]] = {}
    with (folder / "judgements.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            key = (int(row["question_id"]), str(row["model"]))
            scores.setdefault(key, []).append(float(row["score"]))
            prompt = str(row["user_prompt"])
            if _CONVERSATION in prompt:  # the two-turn judgement quotes both answers
                answers[key] = tuple(_ASSISTANT.findall(prompt.split(_CONVERSATION, 1)[1]))
    for qid, turns in sorted(questions.items()):
        weak, strong = scores.get((qid, WEAK_MODEL)), scores.get((qid, STRONG_MODEL))
        if not weak or not strong:
            continue
        yield Outcome(
            dataset="mt_bench",
            prompt=turns[0],
            weak=sum(weak) / len(weak) / 10.0,
            strong=sum(strong) / len(strong) / 10.0,
            turns=tuple(turns),
            weak_answers=answers.get((qid, WEAK_MODEL), ()),
            strong_answers=answers.get((qid, STRONG_MODEL), ()),
        )


_READERS = {"gsm8k": _gsm8k, "mmlu": _mmlu, "mt_bench": _mt_bench}


@dataclass(frozen=True, slots=True)
class Loaded:
    """What :func:`load` read: the outcomes kept and, per dataset, how many were dropped."""

    outcomes: list[Outcome]
    contaminated: dict[str, int]


def load(root: Path | None = None, *, datasets: Iterable[DatasetName] = DATASETS) -> Loaded:
    """Read the outcomes, without the contaminated prompts.

    Args:
        root: the ``routellm`` folder; :func:`default_data_dir` when ``None``.
        datasets: which datasets to read.

    Raises:
        DataMissingError: the folder (or one of its datasets) is not there.
    """
    root = Path(root) if root is not None else default_data_dir()
    _check(root)
    outcomes: list[Outcome] = []
    dropped: dict[str, int] = {}
    for name in datasets:
        folder = root / name
        if not folder.is_dir():
            raise DataMissingError(f"RouteLLM dataset {name!r} missing: no folder {str(folder)!r}")
        banned = _contaminated(folder)
        dropped[name] = 0
        for outcome in _READERS[name](folder):
            if any(_normalise(turn) in banned for turn in outcome.turns):
                dropped[name] += 1
            else:
                outcomes.append(outcome)
    return Loaded(outcomes=outcomes, contaminated=dropped)


if __name__ == "__main__":  # a quick look at the data: python -m somaagent.llm.learned.data
    loaded = load(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    for name in DATASETS:
        rows = [o for o in loaded.outcomes if o.dataset == name]
        weak = sum(o.weak for o in rows) / len(rows)
        strong = sum(o.strong for o in rows) / len(rows)
        print(
            f"{name}: {len(rows)} prompts ({loaded.contaminated[name]} contaminated dropped), "
            f"weak {weak:.3f}, strong {strong:.3f}"
        )
