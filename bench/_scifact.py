"""Shared by the memory benchmarks: BEIR SciFact loading, the pipeline they run, and IR maths.

The metrics follow pytrec_eval / trec_eval (what BEIR reports): nDCG@k with the qrels' graded
relevance as linear gains, ``gain / log2(rank + 1)``, over the ideal ordering of the judged
documents; recall@k is the share of relevant (``rel > 0``) documents in the top k. A ranking is
taken in the order given (ties already broken).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from somaagent.memory.documents import Document  # noqa: E402

DATA_ENV = "SOMA_SCIFACT_DATA"
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class SciFact:
    """The BEIR SciFact test split."""

    corpus: dict[str, tuple[str, str]]  # id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def documents(self, limit: int | None = None) -> list[Document]:
        """The corpus as documents: title, blank line, abstract (plain text)."""
        items = list(self.corpus.items())[:limit]
        return [
            Document(id=doc_id, text=f"{title}\n\n{text}".strip(), format="text")
            for doc_id, (title, text) in items
        ]


def data_dir(given: str | None) -> Path | None:
    """``--data``, else ``$SOMA_SCIFACT_DATA``, else ``../shared/data/scifact``; ``None`` when
    the folder is not there."""
    for candidate in (given, os.environ.get(DATA_ENV), str(ROOT.parent / "shared/data/scifact")):
        if candidate and (Path(candidate) / "corpus.jsonl").is_file():
            return Path(candidate)
    return None


def skip_without_data(given: str | None) -> Path:
    """The data folder, or exit 0 with a message saying where it was looked for."""
    found = data_dir(given)
    if found is None:
        print(
            "skipped: BEIR SciFact not found. Pass --data PATH or set SOMA_SCIFACT_DATA to a "
            "folder with corpus.jsonl, queries.jsonl and qrels/test.tsv (looked in "
            f"{ROOT.parent / 'shared/data/scifact'}).",
            file=sys.stderr,
        )
        raise SystemExit(0)
    return found


def load(folder: Path) -> SciFact:
    """Read corpus, queries and the test qrels."""
    corpus: dict[str, tuple[str, str]] = {}
    with (folder / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            corpus[str(row["_id"])] = (row.get("title", ""), row.get("text", ""))
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / "test.tsv").open(encoding="utf-8") as lines:
        next(lines)
        for line in lines:
            query_id, doc_id, score = line.rstrip("\n").split("\t")
            qrels.setdefault(query_id, {})[doc_id] = int(score)
    queries: dict[str, str] = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = row["text"]
    return SciFact(corpus=corpus, queries=queries, qrels=qrels)


def ndcg_at(ranking: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with linear graded gains (trec_eval's ``ndcg_cut``)."""
    dcg = sum(judged.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranking[:k]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranking: Sequence[str], judged: Mapping[str, int], k: int = 100) -> float:
    """Share of the relevant documents found in the top k."""
    relevant = {doc for doc, gain in judged.items() if gain > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranking[:k])) / len(relevant)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    load_average = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load_average],
    }


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages``."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def write_results(name: str, payload: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """``bench/results/<name>.json`` and ``.md``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path
