"""How far does the int8 embedder stray from the exact one? The spread across many texts.

``tests/memory/test_local_embedder.py`` bounds the int8 (per-channel) MiniLM graph's cosine to
exact vectors. Issue 15.1 saw the bound fail on another machine (cosines 0.994, 0.990, 0.995,
0.973 on the four reference texts: mean 0.988), so the bound is derived from this measurement,
not from four texts on one machine: each text's cosine between the int8 vector and the fp32
graph's vector (which equals sentence-transformers' to 0.9999, tested), for

* the four reference texts of ``tests/memory/data/minilm_reference.json`` (also against
  sentence-transformers' own vectors stored there), embedded together as the test does;
* ``--short`` SciFact titles and ``--long`` SciFact abstracts (``--data``, default
  ``$SOMA_SCIFACT_DATA`` or ``../shared/data/scifact``), embedded in batches and one at a time
  (dynamic int8 scales activations per batch, so neighbours matter a little).

Writes ``bench/results/memory_int8_spread.{json,md}`` (``--out`` changes the stem, e.g. for a
run under another ONNX Runtime build).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from somaagent.memory.embeddings.local import LocalEmbedder

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "memory" / "data" / "minilm_reference.json"


def _stats(cosines: np.ndarray) -> dict[str, float]:
    return {
        "n": int(cosines.size),
        "mean": round(float(cosines.mean()), 5),
        "min": round(float(cosines.min()), 5),
        "p1": round(float(np.percentile(cosines, 1)), 5),
        "p5": round(float(np.percentile(cosines, 5)), 5),
        "median": round(float(np.median(cosines)), 5),
    }


def _texts(data: Path, n_short: int, n_long: int) -> tuple[list[str], list[str]]:
    short: list[str] = []
    long: list[str] = []
    with (data / "corpus.jsonl").open() as corpus:
        for line in corpus:
            doc = json.loads(line)
            if len(short) < n_short and doc["title"].strip():
                short.append(doc["title"].strip())
            elif len(long) < n_long and doc["text"].strip():
                long.append(doc["text"].strip())
            if len(short) >= n_short and len(long) >= n_long:
                break
    return short, long


async def _embed(embedder: LocalEmbedder, texts: list[str], alone: bool) -> np.ndarray:
    if not alone:
        return np.asarray(await embedder.embed(texts))
    return np.concatenate([np.asarray(await embedder.embed([t])) for t in texts])


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    reference = json.loads(REFERENCE.read_text())
    data_dir = Path(args.cache or tempfile.mkdtemp(prefix="soma-int8-"))
    short, long = _texts(Path(args.data), args.short, args.long)
    out: dict[str, Any] = {}
    async with (
        LocalEmbedder(data_dir=data_dir, quantize="none") as exact,
        LocalEmbedder(data_dir=data_dir) as int8,
    ):
        texts = reference["texts"]
        st = np.asarray(reference["vectors"], dtype=np.float32)
        q = await _embed(int8, texts, alone=False)
        f = await _embed(exact, texts, alone=False)
        out["reference_texts"] = {
            "int8_vs_sentence_transformers": [round(float(c), 5) for c in np.sum(q * st, 1)],
            "int8_vs_fp32": [round(float(c), 5) for c in np.sum(q * f, 1)],
            "fp32_vs_sentence_transformers_min": round(float(np.sum(f * st, 1).min()), 6),
        }
        for name, group in (("short", short), ("long", long)):
            exact_vectors = await _embed(exact, group, alone=False)
            for alone in (False, True):
                q = await _embed(int8, group, alone=alone)
                key = f"{name}_{'alone' if alone else 'batched'}"
                out[key] = _stats(np.sum(q * exact_vectors, axis=1))
    return out


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    ref = result["measure"]["reference_texts"]
    lines = [
        "# int8 embedder: cosine to the exact vectors, across texts",
        "",
        f"all-MiniLM-L6-v2, int8 per-channel graph vs the fp32 graph (which matches "
        f"sentence-transformers: min cosine {ref['fp32_vs_sentence_transformers_min']}). "
        f"ONNX Runtime {result['onnxruntime']}; {m['cpu']} ({m['isa']}), {m['cpu_count']} cores; "
        f"load average {m['load_average_at_start']} at start. Run at {result['started_at']}.",
        "",
        "| texts | n | mean | min | 1st pct | 5th pct | median |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, s in result["measure"].items():
        if key == "reference_texts":
            continue
        lines.append(
            f"| {key.replace('_', ', ')} | {s['n']} | {s['mean']} | {s['min']} | {s['p1']} "
            f"| {s['p5']} | {s['median']} |"
        )
    lines += [
        "",
        "The four reference texts (embedded together, as the test does):",
        f"int8 vs sentence-transformers {ref['int8_vs_sentence_transformers']}; "
        f"int8 vs fp32 {ref['int8_vs_fp32']}.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=os.environ.get("SOMA_SCIFACT_DATA") or str(ROOT.parent / "shared/data/scifact"),
    )
    parser.add_argument("--short", type=int, default=400)
    parser.add_argument("--long", type=int, default=100)
    parser.add_argument("--cache", help="a data dir to keep the built ONNX graphs in")
    parser.add_argument("--out", default="memory_int8_spread")
    args = parser.parse_args()
    if not (Path(args.data) / "corpus.jsonl").is_file():
        print(f"skipped: SciFact not found at {args.data} (pass --data or SOMA_SCIFACT_DATA)")
        return 2
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in flags.splitlines() if ln.startswith("model name")),
        platform.processor(),
    )
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    result = {
        "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "onnxruntime": onnxruntime.__version__,
        "machine": {
            "cpu": cpu,
            "isa": " ".join(isa),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        },
        "measure": asyncio.run(measure(args)),
    }
    results = ROOT / "bench" / "results"
    (results / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    (results / f"{args.out}.md").write_text(render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
