"""Search latency and recall of the embedded vector stores, against exact search.

For each embedded back-end (ChromaDB persistent, Qdrant local mode) and each dimension
(384 and 1536 by default), this benchmark

(Qdrant runs in memory: its persistent local mode commits each point separately and is meant
for development; at scale SomaAgent points Qdrant at a server.)

1. makes ``--n`` unit vectors (default 100,000) and ``--queries`` query vectors: by default
   *clustered* data (``--clusters`` Gaussian centres, points spread around them), which has the
   structure real embeddings have; ``--data uniform`` gives structureless random vectors, the
   hardest case for an approximate index; ``--data scifact`` gives *real* vectors: SomaAgent's
   local MiniLM embeddings of 20-word SciFact passages (384-d), queried with SciFact's claims;
2. indexes them through SomaAgent's ``VectorStore`` interface (``create_store``) in batches,
   timing the load;
3. computes the exact top 10 of every query with NumPy (cosine), the ground truth;
4. runs the queries through ``store.search(k=10)`` with one client, then with ``--concurrency``
   clients (8) at once, recording each query's latency: p50/p95/p99, queries/s, and
   recall@10 against the exact answer.

Figures go to ``bench/results/memory_search.{json,md}`` (``--out`` names another) with the
machine, versions, settings and the load average before and after. The issue's target:
p95 <= 10 ms at 100k x 384 with recall@10 >= 0.95.

Usage::

    .venv/bin/python bench/memory_search.py                      # 100k, 384 and 1536, both stores
    .venv/bin/python bench/memory_search.py --n 20000 --dims 384 --backends chroma
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from somaagent.memory.stores import VectorRecord, VectorStore, create_store  # noqa: E402

RESULTS = ROOT / "bench" / "results"
K = 10


async def scifact_data(n: int, queries: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Real MiniLM vectors: ``n`` 20-word passages (stride 10) of the SciFact abstracts and its
    test claims as queries, embedded by SomaAgent's local model (cached under ``cache``)."""
    from somaagent.memory.embeddings.local import LocalEmbedder

    folder = None
    for candidate in (
        os.environ.get("SOMA_SCIFACT_DATA"),
        str(ROOT.parent / "shared/data/scifact"),
    ):
        if candidate and (Path(candidate) / "corpus.jsonl").is_file():
            folder = Path(candidate)
    if folder is None:
        raise SystemExit(
            "skipped: --data scifact needs ../shared/data/scifact (or SOMA_SCIFACT_DATA)"
        )
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"scifact-passages-{n}.npy"
    claims_file = cache / "scifact-claims.npy"
    passages: list[str] = []
    with (folder / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            words = f"{row.get('title', '')} {row.get('text', '')}".split()
            passages.extend(
                " ".join(words[i : i + 20]) for i in range(0, max(1, len(words) - 10), 10)
            )
    if len(passages) < n:
        raise SystemExit(f"SciFact gives {len(passages)} passages, fewer than --n {n}")
    claims = [json.loads(line)["text"] for line in (folder / "queries.jsonl").open()]

    embedder = LocalEmbedder(data_dir=cache)
    if not target.exists():
        np.save(target, await embedder.embed(passages[:n]))
    if not claims_file.exists():
        np.save(claims_file, await embedder.embed(claims, input_type="query"))
    return np.load(target), np.load(claims_file)[:queries]


def make_data(
    n: int, queries: int, dim: int, *, kind: str, clusters: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors and ``queries`` unit query vectors of dimension ``dim``."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        data = rng.normal(size=(n, dim)).astype(np.float32)
        query = rng.normal(size=(queries, dim)).astype(np.float32)
    else:
        centres = rng.normal(size=(clusters, dim)).astype(np.float32)
        spread = 0.6  # points sit around their centre at cosine ~0.85, like related texts
        data = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim)).astype(
            np.float32
        )
        query = centres[rng.integers(0, clusters, queries)] + spread * rng.normal(
            size=(queries, dim)
        ).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    return data, query


def exact_top(data: np.ndarray, query: np.ndarray, k: int = K) -> list[set[int]]:
    """The exact top-k (cosine = dot on unit vectors), in chunks to bound memory."""
    truth: list[set[int]] = []
    for start in range(0, len(query), 64):
        scores = query[start : start + 64] @ data.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        truth.extend(set(map(int, row)) for row in top)
    return truth


def open_store(backend: str, folder: Path) -> VectorStore:
    if backend == "chroma":
        return create_store(f"chroma://{folder / 'chroma'}")
    if backend == "qdrant":
        # in memory: qdrant-client's persistent local mode commits every point to SQLite
        # (~15 ms each here), a development convenience, not something to load 100k into
        return create_store("qdrant::memory:")
    raise SystemExit(f"unknown back-end {backend}")


async def load(store: VectorStore, name: str, data: np.ndarray, batch: int) -> float:
    await store.create_collection(name, dimension=data.shape[1], metric="cosine")
    started = time.perf_counter()
    for start in range(0, len(data), batch):
        rows = data[start : start + batch]
        await store.upsert(
            name, [VectorRecord(id=str(start + i), vector=v) for i, v in enumerate(rows)]
        )
    return time.perf_counter() - started


async def run_queries(
    store: VectorStore, name: str, query: np.ndarray, concurrency: int
) -> tuple[list[float], list[list[int]], float]:
    latencies = [0.0] * len(query)
    found: list[list[int]] = [[] for _ in query]
    next_index = 0

    async def client() -> None:
        nonlocal next_index
        while next_index < len(query):
            index = next_index
            next_index += 1
            started = time.perf_counter()
            hits = await store.search(name, query[index], k=K)
            latencies[index] = time.perf_counter() - started
            found[index] = [int(hit.id) for hit in hits]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, found, time.perf_counter() - started


def percentiles(latencies: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in latencies)

    def pick(q: float) -> float:
        return ms[min(len(ms) - 1, round(q * (len(ms) - 1)))]

    return {
        "p50_ms": pick(0.50),
        "p95_ms": pick(0.95),
        "p99_ms": pick(0.99),
        "mean_ms": statistics.fmean(ms),
    }


async def bench_one(
    backend: str, dim: int, args: argparse.Namespace, folder: Path
) -> dict[str, Any]:
    if args.data == "scifact":
        data, query = await scifact_data(args.n, args.queries, Path(args.cache))
    else:
        data, query = make_data(
            args.n, args.queries, dim, kind=args.data, clusters=args.clusters, seed=args.seed
        )
    truth = exact_top(data, query)
    store = open_store(backend, folder)
    name = f"bench-{dim}"
    result: dict[str, Any] = {"backend": backend, "dimension": dim, "n": args.n}
    try:
        result["load_s"] = round(await load(store, name, data, args.batch), 2)
        result["load_vectors_per_s"] = round(args.n / result["load_s"])
        await run_queries(store, name, query[: min(20, len(query))], 1)  # warm-up
        for concurrency in (1, args.concurrency):
            latencies, found, wall = await run_queries(store, name, query, concurrency)
            recall = statistics.fmean(len(truth[i] & set(found[i])) / K for i in range(len(query)))
            result[f"clients_{concurrency}"] = {
                **{key: round(value, 3) for key, value in percentiles(latencies).items()},
                "queries_per_s": round(len(query) / wall, 1),
                "recall_at_10": round(recall, 4),
            }
            print(backend, dim, concurrency, result[f"clients_{concurrency}"], flush=True)
    finally:
        await store.aclose()
    return result


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("chromadb", "qdrant-client", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "absent"
    return found


def write(
    results: list[dict[str, Any]], args: argparse.Namespace, load_before: list[float]
) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "benchmark": "memory_search",
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "versions": versions(),
        "settings": {key: value for key, value in vars(args).items() if key != "out"},
        # The machine is shared: the load average says how much else ran beside the measurement
        # ("after" is when this file was written, after the last back-end measured so far).
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "notes": "chroma: HNSW M=16, ef_construction=200, ef_search=100 (SomaAgent's defaults); "
        "qdrant local mode (in memory) searches exactly (brute force in NumPy). Latency is per "
        "store.search call through SomaAgent's async interface (worker threads).",
    }
    (RESULTS / f"{args.out}.json").write_text(json.dumps({**meta, "results": results}, indent=2))
    lines = [
        f"# Vector search: {args.n:,} {args.data} vectors, k={K}, {args.queries} queries",
        "",
        f"{meta['when']}; {meta['machine']}; Python {meta['python']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"Load average (1, 5, 15 min) {meta['load_before']} before, {meta['load_after']} after.",
        "",
        "| back-end | dim | load (vectors/s) | clients | p50 ms | p95 ms | p99 ms | queries/s "
        "| recall@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        for concurrency in (1, args.concurrency):
            cell = row.get(f"clients_{concurrency}")
            if cell is None:
                continue
            lines.append(
                f"| {row['backend']} | {row['dimension']} | {row['load_vectors_per_s']:,} | "
                f"{concurrency} | {cell['p50_ms']:.2f} | {cell['p95_ms']:.2f} | "
                f"{cell['p99_ms']:.2f} | {cell['queries_per_s']:.0f} | "
                f"{cell['recall_at_10']:.3f} |"
            )
    lines += ["", meta["notes"], "", "Target: p95 <= 10 ms at 100k x 384 with recall@10 >= 0.95."]
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="vectors per collection")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--dims", default="384,1536")
    parser.add_argument("--backends", default="chroma,qdrant")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--data",
        choices=["clustered", "uniform", "scifact"],
        default="clustered",
        help="scifact: real MiniLM vectors of SciFact passages (384-d only) and its claims",
    )
    parser.add_argument(
        "--cache",
        default=str(Path(tempfile.gettempdir()) / "soma-bench-cache"),
        help="where --data scifact keeps its embedded vectors",
    )
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000, help="records per upsert call")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="memory_search", help="results file name")
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    folder = Path(tempfile.mkdtemp(prefix="soma-bench-search-"))
    results = []
    try:
        for backend in args.backends.split(","):
            dims = [384] if args.data == "scifact" else [int(d) for d in args.dims.split(",")]
            for dim in dims:
                results.append(await bench_one(backend, dim, args, folder))
                write(results, args, load_before)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print((RESULTS / f"{args.out}.md").read_text())


if __name__ == "__main__":
    asyncio.run(main())
