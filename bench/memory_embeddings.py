"""Local embedding throughput and fidelity: SomaAgent's MiniLM on ONNX Runtime against
sentence-transformers on the same model, same inputs, same run.

The inputs are ``--n`` "short" documents (the first ~20 words of SciFact abstracts) and
``--n // 4`` "long" ones (~200 words); without the SciFact folder, synthetic sentences of the
same lengths. In each of ``--rounds`` rounds, interleaved so that the shared machine's noise hits
both alike, every candidate embeds every set once:

* ``soma-int8``: ``LocalEmbedder()``, the default (fused attention, int8 per-channel);
* ``soma-fp32``: ``LocalEmbedder(quantize="none")``, the same graph unquantised;
* ``sentence-transformers``: ``SentenceTransformer(<the wheel's folder>).encode``, torch on CPU,
  the reference. It runs in its own interpreter (``--peer-python``, default ``$ST_PYTHON``),
  since torch is no dependency of SomaAgent; make one with::

      python3 -m venv /tmp/st-venv && /tmp/st-venv/bin/pip install torch==2.13.0 \\
          sentence-transformers

  or it is imported here if this interpreter has it. Without either, the peer is skipped and
  the results say so.

Each candidate runs at each of ``--threads`` thread counts (default: 1 and all cores; on a
shared machine torch's OpenMP threads can be slower at 2 than at 1) with batches of 32.
Reported: documents/s (median of the rounds) per thread count, the ratio to sentence-transformers
at the same thread count and best against best, and the cosine of each vector to
sentence-transformers' vector for the same text (mean, minimum, 1st percentile).
Target (issue 4): at least 1.8x sentence-transformers with cosine at least 0.99.
Figures go to ``bench/results/memory_embeddings.{json,md}``, with the machine and the load
average before and after.

Usage::

    .venv/bin/python bench/memory_embeddings.py                   # --n 512, 3 rounds
    .venv/bin/python bench/memory_embeddings.py --n 200 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BATCH = 32
PEER = "sentence-transformers"


# -- the sentence-transformers worker (runs in the peer's interpreter: stdlib + its packages) --


def worker(model_dir: str, texts_file: str, threads: int) -> None:
    """Serve ``time SET`` and ``vectors SET PATH`` commands on stdin, one JSON line each."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import numpy as np
    import torch  # type: ignore[import-not-found,unused-ignore]
    from sentence_transformers import (  # type: ignore[import-not-found,unused-ignore]
        SentenceTransformer,
    )

    torch.set_num_threads(threads)
    model = SentenceTransformer(model_dir, device="cpu")
    sets = json.loads(Path(texts_file).read_text())
    model.encode(sets["short"][:BATCH], batch_size=BATCH)
    print(json.dumps({"ready": True, "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command:
            continue
        if command[0] == "threads":
            torch.set_num_threads(int(command[1]))
            print(json.dumps({"seconds": 0.0}), flush=True)
            continue
        texts = sets[command[1]]
        started = time.perf_counter()
        vectors = model.encode(texts, batch_size=BATCH, normalize_embeddings=True)
        seconds = time.perf_counter() - started
        if command[0] == "vectors":
            np.save(command[2], vectors.astype(np.float32))
        print(json.dumps({"seconds": seconds}), flush=True)


class Peer:
    """The sentence-transformers worker process."""

    def __init__(self, python: str, model_dir: Path, texts_file: Path, threads: int) -> None:
        self.process = subprocess.Popen(
            [python, __file__, "--worker", str(model_dir), str(texts_file), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info = self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the sentence-transformers worker died (see its stderr above)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def threads(self, count: int) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"threads {count}\n")
        self.process.stdin.flush()
        self._answer()

    def run(self, name: str, save: Path | None = None) -> float:
        assert self.process.stdin is not None
        command = f"vectors {name} {save}" if save else f"time {name}"
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return float(self._answer()["seconds"])

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


# -- the main run ------------------------------------------------------------------------------


def load_texts(n: int, data: str | None) -> dict[str, list[str]]:
    folder = None
    for candidate in (
        data,
        os.environ.get("SOMA_SCIFACT_DATA"),
        str(ROOT.parent / "shared/data/scifact"),
    ):
        if candidate and (Path(candidate) / "corpus.jsonl").is_file():
            folder = Path(candidate)
            break
    if folder is not None:
        words = []
        with (folder / "corpus.jsonl").open(encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                words.append(f"{row.get('title', '')} {row.get('text', '')}".split())
        source = f"BEIR SciFact abstracts ({folder})"
    else:
        import random

        vocabulary = [
            "cell",
            "protein",
            "gene",
            "expression",
            "patients",
            "study",
            "results",
            "increased",
            "risk",
            "treatment",
            "effect",
            "analysis",
            "model",
            "data",
            "clinical",
            "trial",
            "significant",
            "levels",
            "disease",
            "response",
            "human",
            "mice",
            "signal",
            "pathway",
        ]
        rng = random.Random(7)
        words = [[rng.choice(vocabulary) for _ in range(260)] for _ in range(n)]
        source = "synthetic sentences (SciFact not found)"
    long_ones = [w for w in words if len(w) >= 200]
    return {
        "short": [" ".join(w[:20]) for w in words[:n]],
        "long": [" ".join(w[:200]) for w in long_ones[: max(1, n // 4)]],
        "source": [source],
    }


def peer_python(given: str | None) -> str | None:
    for candidate in (given, os.environ.get("ST_PYTHON"), "/tmp/st-venv/bin/python"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="short documents (long: n // 4)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads",
        default=",".join(dict.fromkeys(["1", str(os.cpu_count() or 1)])),
        help="thread counts to measure, comma-separated (default: 1 and all cores)",
    )
    parser.add_argument("--peer-python", help="interpreter with sentence-transformers + torch")
    parser.add_argument("--data", help="BEIR SciFact folder (default ../shared/data/scifact)")
    parser.add_argument("--data-dir", help="where the built ONNX model is cached")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return

    sys.path.insert(0, str(ROOT / "src"))
    import anyio
    import numpy as np

    from somaagent.memory.embeddings.local import LocalEmbedder, find_model_dir

    load_before = [round(x, 2) for x in os.getloadavg()]
    texts = load_texts(args.n, args.data)
    sets = {"short": texts["short"], "long": texts["long"]}
    thread_counts = [int(n) for n in str(args.threads).split(",")]
    work = Path(tempfile.mkdtemp(prefix="soma-bench-embed-"))
    (work / "texts.json").write_text(json.dumps(sets))
    data_dir = Path(args.data_dir) if args.data_dir else work
    ours: dict[tuple[str, int], LocalEmbedder] = {}
    for threads in thread_counts:
        ours["soma-int8", threads] = LocalEmbedder(
            data_dir=data_dir, threads=threads, batch_size=BATCH
        )
        ours["soma-fp32", threads] = LocalEmbedder(
            data_dir=data_dir, threads=threads, batch_size=BATCH, quantize="none"
        )
    peer: Peer | None = None
    peer_note = "skipped: no interpreter with sentence-transformers (--peer-python / $ST_PYTHON)"
    python = peer_python(args.peer_python)
    if python is not None:
        peer = Peer(python, find_model_dir(), work / "texts.json", thread_counts[0])
        peer_note = f"{python}, torch {peer.info.get('torch')}"
    # (candidate, threads) -> set -> docs/s per round
    speeds: dict[tuple[str, int], dict[str, list[float]]] = {}
    vectors: dict[str, dict[str, Any]] = {"soma-int8": {}, "soma-fp32": {}, PEER: {}}

    async def measure() -> None:
        for embedder in ours.values():
            await embedder.load()
            await embedder.embed(sets["short"][:BATCH])
        for round_no in range(args.rounds):
            for name, items in sets.items():
                for threads in thread_counts:
                    for (label, count), embedder in ours.items():
                        if count != threads:
                            continue
                        started = time.perf_counter()
                        result = await embedder.embed(items)
                        seconds = time.perf_counter() - started
                        speeds.setdefault((label, threads), {}).setdefault(name, []).append(
                            len(items) / seconds
                        )
                        vectors[label][name] = result
                    if peer is not None:
                        peer.threads(threads)
                        save = work / f"st-{name}.npy" if name not in vectors[PEER] else None
                        seconds = peer.run(name, save)
                        speeds.setdefault((PEER, threads), {}).setdefault(name, []).append(
                            len(items) / seconds
                        )
                        if save is not None:
                            vectors[PEER][name] = np.load(save)
                print(
                    f"round {round_no + 1} {name}: "
                    + ", ".join(
                        f"{label}@{threads} {values[name][-1]:.0f}/s"
                        for (label, threads), values in speeds.items()
                    ),
                    flush=True,
                )

    try:
        anyio.run(measure)
    finally:
        if peer is not None:
            peer.close()
    # The machine is shared: the load average says how much else ran beside the measurement.
    report: dict[str, Any] = {
        "runs": [],
        "best": {},
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    median = {key: {n: statistics.median(v) for n, v in by.items()} for key, by in speeds.items()}
    for (label, threads), by_set in speeds.items():
        for name, values in by_set.items():
            entry: dict[str, Any] = {
                "candidate": label,
                "threads": threads,
                "docs": name,
                "docs_per_s": round(median[label, threads][name], 1),
                "rounds": [round(v, 1) for v in values],
            }
            reference = vectors[PEER].get(name)
            if reference is not None and label != PEER:
                cosines = np.sum(vectors[label][name] * reference, axis=1)
                entry.update(
                    cosine_mean=round(float(cosines.mean()), 4),
                    cosine_min=round(float(cosines.min()), 4),
                    cosine_p1=round(float(np.percentile(cosines, 1)), 4),
                )
                entry["speedup_same_threads"] = round(
                    median[label, threads][name] / median[PEER, threads][name], 2
                )
            report["runs"].append(entry)
    for label in ("soma-int8", "soma-fp32", PEER):
        for name in sets:
            found = [(median[key][name], key[1]) for key in median if key[0] == label]
            if found:
                speed, threads = max(found)
                report["best"].setdefault(label, {})[name] = {
                    "docs_per_s": round(speed, 1),
                    "threads": threads,
                }
    if PEER in report["best"]:
        for label in ("soma-int8", "soma-fp32"):
            for name, best in report["best"][label].items():
                best["speedup_best_vs_best"] = round(
                    best["docs_per_s"] / report["best"][PEER][name]["docs_per_s"], 2
                )
    shutil.rmtree(work, ignore_errors=True)
    write(report, args, texts["source"][0], peer_note, {k: len(v) for k, v in sets.items()})


def write(
    report: dict[str, Any], args: argparse.Namespace, source: str, peer: str, sizes: dict[str, int]
) -> None:
    from importlib.metadata import version

    RESULTS.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "benchmark": "memory_embeddings",
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "onnxruntime": version("onnxruntime"),
        "data": source,
        "documents": sizes,
        "settings": {"threads": args.threads, "rounds": args.rounds, "batch": BATCH},
        "peer": peer,
        "load_before": report.pop("load_before"),
        "load_after": report.pop("load_after"),
    }
    (RESULTS / "memory_embeddings.json").write_text(
        json.dumps({**meta, "results": report}, indent=2)
    )
    lines = [
        "# Local embeddings: all-MiniLM-L6-v2, SomaAgent (ONNX Runtime) vs sentence-transformers",
        "",
        f"{meta['when']}; {meta['machine']}; Python {meta['python']}; onnxruntime "
        f"{meta['onnxruntime']}; peer: {peer}",
        f"Load average (1, 5, 15 min) {meta['load_before']} before, {meta['load_after']} after.",
        f"Data: {source}; {sizes['short']} short (~20 words), {sizes['long']} long (~200 words); "
        f"threads {args.threads}, batches of {BATCH}, median of {args.rounds} interleaved rounds.",
        "",
        "Each at its best thread count (the machine is shared: fewer threads can be faster):",
        "",
        "| candidate | docs | docs/s | threads | vs sentence-transformers | cosine mean | min |",
        "|---|---|---|---|---|---|---|",
    ]
    cosine = {(r["candidate"], r["docs"]): r for r in report["runs"] if "cosine_mean" in r}
    for label, by_set in report["best"].items():
        for name, best in by_set.items():
            quality = cosine.get((label, name), {})
            lines.append(
                f"| {label} | {name} | {best['docs_per_s']:.0f} | {best['threads']} | "
                f"{best.get('speedup_best_vs_best', '-')}x | {quality.get('cosine_mean', '-')} | "
                f"{quality.get('cosine_min', '-')} |"
            )
    lines += [
        "",
        "Every run (cosine to sentence-transformers' vector for the same text):",
        "",
        "| candidate | threads | docs | docs/s | vs peer, same threads | cosine mean | min | p1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["runs"]:
        lines.append(
            f"| {row['candidate']} | {row['threads']} | {row['docs']} | {row['docs_per_s']:.0f} | "
            f"{row.get('speedup_same_threads', '-')}x | {row.get('cosine_mean', '-')} | "
            f"{row.get('cosine_min', '-')} | {row.get('cosine_p1', '-')} |"
        )
    lines += ["", "Target: at least 1.8x sentence-transformers with cosine at least 0.99."]
    (RESULTS / "memory_embeddings.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
