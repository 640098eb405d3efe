"""arena-bench-v1: 300 hard Chatbot Arena prompts, each answered by 15 models, GPT-4-judged.

The data (``lmarena/arena-hard-auto``, ``data/arena-bench-v1/``; Apache-2.0) is a folder with
``question.jsonl`` (``question_id``, ``turns``) and ``scores.csv`` (``question_id,model,score``:
the judge's 1-10 score of the model's answer against a reference answer; empty where the judge
gave none). :func:`load` reads it into one :class:`ArenaPrompt` per prompt, scores scaled to
[0, 1] (score / 10), models without a score left out.

The folder comes from ``SOMA_ARENA_BENCH_DATA``, else ``../shared/data/arena-bench-v1`` beside
the repository; the tests use the vendored sample in ``tests/data/arena-bench-v1``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from somaagent.llm.learned.data import DataMissingError

__all__ = ["ARENA_MODELS", "ENV_VAR", "REGISTRY_NAMES", "ArenaPrompt", "default_data_dir", "load"]

ENV_VAR = "SOMA_ARENA_BENCH_DATA"
_REPO_ROOT = Path(__file__).resolve().parents[4]

ARENA_MODELS: tuple[str, ...] = (
    "gpt-4-0314",
    "gpt-4-1106-preview",
    "gpt-3.5-turbo",
    "gpt-3.5-turbo-1106",
    "claude-1",
    "claude-2.1",
    "claude-instant-1",
    "palm-2-chat-bison-001",
    "Llama-2-70b-chat",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "mistralai/Mistral-7B-Instruct-v0.1",
    "Starling-LM-7B-alpha",
    "openchat_3.5",
    "vicuna-33b-v1.3",
    "llama-13b",
)
"""The 15 models the data scores, by the data's own names."""

REGISTRY_NAMES: dict[str, str] = {
    "gpt-4-1106-preview": "gpt-4-1106-preview",
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "mixtral-8x7b",
}
"""Data model -> registry model, only where they are the same model (the same snapshot). The
registry's ``gpt-3.5-turbo`` and ``gpt-4`` name later snapshots than the data's, so they are
not mapped: their quality comes from their sourced priors."""


@dataclass(frozen=True, slots=True)
class ArenaPrompt:
    """One prompt and every scored model's quality on it (judge score / 10).

    Attributes:
        question_id: the data's id.
        prompt: the first user turn (what a routing decision sees).
        scores: data model name -> quality in [0, 1].
    """

    question_id: str
    prompt: str
    scores: dict[str, float] = field(default_factory=dict)


def default_data_dir() -> Path:
    """``$SOMA_ARENA_BENCH_DATA``, else ``../shared/data/arena-bench-v1`` beside the repository."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured)
    return _REPO_ROOT.parent / "shared" / "data" / "arena-bench-v1"


def load(root: Path | None = None) -> list[ArenaPrompt]:
    """Read the prompts and their scores, in the file's order.

    Raises:
        DataMissingError: the folder or one of its two files is not there.
    """
    root = Path(root) if root is not None else default_data_dir()
    questions, scores = root / "question.jsonl", root / "scores.csv"
    if not questions.is_file() or not scores.is_file():
        raise DataMissingError(
            f"arena-bench-v1 not found at {str(root)!r}: set {ENV_VAR} to the folder holding "
            "question.jsonl and scores.csv (lmarena/arena-hard-auto data/arena-bench-v1)"
        )
    prompts: dict[str, ArenaPrompt] = {}
    with questions.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                qid = str(row["question_id"])
                prompts[qid] = ArenaPrompt(question_id=qid, prompt=str(row["turns"][0]))
    with scores.open(encoding="utf-8", newline="") as f:
        for item in csv.DictReader(f):
            entry = prompts.get(item["question_id"])
            if entry is not None and item["score"].strip():
                entry.scores[item["model"]] = float(item["score"]) / 10.0
    return list(prompts.values())
