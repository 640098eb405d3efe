"""Do the embedded model's answers end? Sampling settings against a fixed prompt set.

Issue 15.2: with plain greedy decoding SmolLM2-135M-Instruct repeated "A gate, a gate, …"
to the 512-token limit. For each sampling configuration this benchmark asks the same
``PROMPTS`` (each as a lone user message, as ``soma chat`` sends it) through
:class:`~somaagent.llm.providers.local.LocalModel` on its default runtime, with the gateway's
default reply limit (512 tokens), and reports the share of answers that end before the limit
(``finish_reason == "stop"``), tokens per answer and seconds per answer. "before" is the
adapter's old setting (greedy, no penalty); the shipped default is marked.

Usage::

    .venv/bin/python bench/local_model_endings.py [--limit 512] [--threads 1] [--only "NAME;..."]

Writes ``bench/results/local_model_endings.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from somaagent.llm.base import ChatRequest
from somaagent.llm.providers._local_engine import Sampling
from somaagent.llm.providers.local import DEFAULT_SAMPLING, LocalModel

RESULTS = Path(__file__).resolve().parent / "results"

PROMPTS = [
    "Write a haiku about gateways",
    "What is the capital of France?",
    "What is retrieval-augmented generation?",
    "Tell me more",
    "Hello!",
    "Explain what an API gateway does in two sentences.",
    "List three colours.",
    "Write a short story about a robot who learns to paint.",
    "What is 12 times 7?",
    "Give me a tip for writing clean Python code.",
    "Translate 'good morning' into Spanish.",
    "Summarise the plot of Romeo and Juliet in one sentence.",
    "What is a vector database?",
    "Write a limerick about a cat.",
    "Why is the sky blue?",
]

CONFIGS: dict[str, Sampling] = {
    "before: greedy, no penalty": Sampling(
        temperature=0.0,
        top_k=40,
        top_p=0.95,
        min_p=0.05,
        repeat_penalty=1.0,
        repeat_last_n=64,
        seed=42,
    ),
    "greedy, repeat penalty 1.1": Sampling(
        temperature=0.0,
        top_k=40,
        top_p=0.95,
        min_p=0.05,
        repeat_penalty=1.1,
        repeat_last_n=64,
        seed=42,
    ),
    "greedy, repeat penalty 1.3": Sampling(
        temperature=0.0,
        top_k=40,
        top_p=0.95,
        min_p=0.05,
        repeat_penalty=1.3,
        repeat_last_n=64,
        seed=42,
    ),
    "greedy, repeat penalty 1.1 over the last 256 tokens": Sampling(
        temperature=0.0,
        top_k=40,
        top_p=0.95,
        min_p=0.05,
        repeat_penalty=1.1,
        repeat_last_n=256,
        seed=42,
    ),
    "greedy, repeat penalty 1.15 over the last 256 tokens": Sampling(
        temperature=0.0,
        top_k=40,
        top_p=0.95,
        min_p=0.05,
        repeat_penalty=1.15,
        repeat_last_n=256,
        seed=42,
    ),
    "temperature 0.2, top-p 0.9, repeat penalty 1.1": Sampling(
        temperature=0.2,
        top_k=40,
        top_p=0.9,
        min_p=0.05,
        repeat_penalty=1.1,
        repeat_last_n=64,
        seed=42,
    ),
}


async def run_config(model: LocalModel, limit: int) -> list[dict[str, Any]]:
    """Ask every prompt once; one row per prompt."""
    rows = []
    for prompt in PROMPTS:
        request = ChatRequest(
            messages=[{"role": "user", "content": prompt}],
            model="smollm2-135m-instruct",
            max_tokens=limit,
            timeout=600,
        )
        start = time.perf_counter()
        completion = await model.complete(request)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "prompt": prompt,
                "finish_reason": completion.finish_reason,
                "completion_tokens": completion.usage.completion_tokens,
                "seconds": round(seconds, 3),
                "answer": completion.content,
            }
        )
    return rows


def summarise(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    tokens = [r["completion_tokens"] for r in rows]
    seconds = [r["seconds"] for r in rows]
    ended = sum(1 for r in rows if r["finish_reason"] == "stop")
    return {
        "ended_before_limit": ended,
        "answers": len(rows),
        "share_ended": round(ended / len(rows), 3),
        "tokens_mean": round(statistics.mean(tokens), 1),
        "tokens_median": statistics.median(tokens),
        "seconds_mean": round(statistics.mean(seconds), 2),
        "tokens_per_second": round(sum(tokens) / sum(seconds), 1),
        "limit": limit,
    }


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Does the local model's answer end?",
        "",
        f"SmolLM2-135M-Instruct Q4_1 on {result['runtime']}, {result['threads']} thread(s), "
        f"reply limit {result['limit']} tokens (the gateway's default), {len(PROMPTS)} prompts "
        "each sent as one user message. Answers are deterministic per configuration (greedy, "
        "or sampled with a fixed seed); seconds depend on the machine's load.",
        "",
        f"Machine: {m['cpu']}, {m['cpu_count']} cores, Python {m['python']}; load average "
        f"{m['load_average_at_start']} at start, {result['load_average_at_end']} at the end. "
        f"Run at {result['started_at']}.",
        "",
        "| sampling | ended before the limit | tokens per answer (mean, median) "
        "| s per answer (mean) | tokens/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, config in result["configs"].items():
        s = config["summary"]
        mark = " (**shipped default**)" if config["default"] else ""
        lines.append(
            f"| {name}{mark} | {s['ended_before_limit']}/{s['answers']} ({s['share_ended']:.0%}) "
            f"| {s['tokens_mean']}, {s['tokens_median']} | {s['seconds_mean']} "
            f"| {s['tokens_per_second']} |"
        )
    lines += ["", "First words of two answers per configuration:", ""]
    for name, config in result["configs"].items():
        for row in config["rows"][:2]:
            text = " ".join(row["answer"].split())[:160]
            lines.append(
                f"- {name} / *{row['prompt']}* ({row['completion_tokens']} tokens, "
                f"{row['finish_reason']}): {text}…"
            )
    return "\n".join(lines) + "\n"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", help="configuration names, separated by semicolons")
    parser.add_argument("--out", default="local_model_endings", help="results file name stem")
    args = parser.parse_args()
    names = list(CONFIGS) if not args.only else args.only.split(";")
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    machine = {
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        ),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
    }
    configs: dict[str, Any] = {}
    runtime = ""
    for name in names:
        sampling = CONFIGS[name]
        model = LocalModel(n_threads=args.threads, sampling=sampling)
        runtime = model.runtime
        try:
            rows = await run_config(model, args.limit)
        finally:
            await model.aclose()
        configs[name] = {
            "sampling": asdict(sampling),
            "default": sampling == DEFAULT_SAMPLING,
            "summary": summarise(rows, args.limit),
            "rows": rows,
        }
        print(name, configs[name]["summary"], file=sys.stderr, flush=True)
    result = {
        "started_at": started,
        "runtime": runtime,
        "threads": args.threads,
        "limit": args.limit,
        "machine": machine,
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "prompts": PROMPTS,
        "configs": configs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
