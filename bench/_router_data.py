"""Shared inputs of ``bench/router.py``: the public prompts, their MiniLM embeddings (cached in a
file), dense features, per-prompt costs, and the price table of arena-bench-v1's 15 models."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from somaagent.llm import cost, tokens
from somaagent.llm.learned import data as routellm
from somaagent.llm.learned.embedding import EMBED_GRAPH_OPTIMIZATION, EMBED_TOKENS
from somaagent.llm.learned.features import dense_features
from somaagent.llm.learned.fitting import PublicPrompt
from somaagent.llm.registry import ModelSpec
from somaagent.memory.embeddings.local import DEFAULT_MODEL, LocalEmbedder

DEFAULT_CACHE = (
    Path(tempfile.gettempdir())
    / "somaagent-bench"
    / f"router_embeddings_{EMBED_TOKENS}_{EMBED_GRAPH_OPTIMIZATION}.npz"
)
ARENA_OUTPUT_TOKENS = 500
"""arena-bench-v1 has no answers: every model's answer is costed at this many tokens."""

# USD per million tokens (input, output) of arena-bench-v1's models, for the many-model
# benchmark only. Registry models take the registry's prices; the others are the providers'
# list prices of the time these snapshots were served (OpenAI and Anthropic price pages 2023-24,
# Google Vertex AI PaLM 2 per-character prices at ~4 characters a token, Together AI's per-size
# tiers for open models): approximations, stated as such in the results.
ARENA_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4-0314": (30.0, 60.0),
    "gpt-3.5-turbo": (1.5, 2.0),
    "gpt-3.5-turbo-1106": (1.0, 2.0),
    "claude-1": (8.0, 24.0),
    "claude-2.1": (8.0, 24.0),
    "claude-instant-1": (0.8, 2.4),
    "palm-2-chat-bison-001": (1.0, 2.0),
    "Llama-2-70b-chat": (0.9, 0.9),
    "mistralai/Mistral-7B-Instruct-v0.1": (0.2, 0.2),
    "Starling-LM-7B-alpha": (0.2, 0.2),
    "openchat_3.5": (0.2, 0.2),
    "vicuna-33b-v1.3": (0.8, 0.8),
    "llama-13b": (0.3, 0.3),
}


def machine() -> dict[str, Any]:
    """Where and under what load a router benchmark ran."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "note": "shared machine, several engineers at work",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(out: Path, name: str, report: dict[str, Any], markdown: str) -> None:
    """``<name>.json`` and ``<name>.md`` under ``out``; the markdown is printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    (out / f"{name}.md").write_text(markdown)
    print(markdown)


def key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def local_embedder(threads: int | None = None) -> tuple[LocalEmbedder, Any]:
    """The product's embedder, loaded, and a synchronous texts -> vectors function over it
    (what the gateway hands the router)."""
    embedder = LocalEmbedder(
        threads=threads, max_tokens=EMBED_TOKENS, graph_optimization=EMBED_GRAPH_OPTIMIZATION
    )
    asyncio.run(embedder.load())

    def embed(texts: Sequence[str]) -> Any:
        return asyncio.run(embedder.embed(list(texts)))

    return embedder, embed


def embeddings(prompts: Sequence[PublicPrompt], cache: Path) -> np.ndarray:
    """One MiniLM vector per prompt, from ``cache`` where it has them (keyed by text hash)."""
    stored: dict[str, np.ndarray] = {}
    if cache.is_file():
        saved = np.load(cache)
        stored = dict(zip(saved["keys"].tolist(), saved["vectors"], strict=True))
    wanted = list(dict.fromkeys(p.prompt for p in prompts))
    missing = [t for t in wanted if key(t) not in stored]
    if missing:
        print(f"embedding {len(missing)} prompts with {DEFAULT_MODEL}...", file=sys.stderr)
        _, embed = local_embedder()
        for start in range(0, len(missing), 512):
            batch = missing[start : start + 512]
            for text, vector in zip(batch, embed(batch), strict=True):
                stored[key(text)] = np.asarray(vector, dtype=np.float32)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, keys=np.array(list(stored)), vectors=np.stack(list(stored.values())))
    return np.stack([stored[key(p.prompt)] for p in prompts]).astype(np.float64)


def dense(prompts: Sequence[PublicPrompt]) -> np.ndarray:
    return np.array(
        [dense_features([{"role": "user", "content": p.prompt}])[0] for p in prompts],
        dtype=np.float64,
    )


def prompt_tokens(text: str) -> int:
    encoder = tokens.get_encoder("cl100k_base")
    return (
        len(encoder.encode_ordinary(text)) + tokens.TOKENS_PER_MESSAGE + tokens.TOKENS_PER_REPLY + 1
    )


def call_cost(p: PublicPrompt, spec: ModelSpec, which: str) -> float:
    """What the prompt cost on ``spec``: its tokens (cl100k) plus the model's own answer from
    the data (MMLU: one token; arena: :data:`ARENA_OUTPUT_TOKENS`)."""
    o = p.outcome
    if o is None:
        return cost.estimate_cost(spec, prompt_tokens(p.prompt), ARENA_OUTPUT_TOKENS)
    encoder = tokens.get_encoder("cl100k_base")
    if o.dataset == "mmlu":
        return cost.estimate_cost(spec, prompt_tokens(o.prompt), 1)
    answers = o.weak_answers if which == "weak" else o.strong_answers
    total, context = 0.0, 0
    for turn, answer in zip(o.turns, answers, strict=False):
        context += prompt_tokens(turn)
        out = len(encoder.encode_ordinary(answer))
        total += float(cost.estimate_cost(spec, context, out))
        context += out + tokens.TOKENS_PER_MESSAGE
    return total


def arena_cost(prompt: str, price: tuple[float, float]) -> float:
    return (prompt_tokens(prompt) * price[0] + ARENA_OUTPUT_TOKENS * price[1]) / 1_000_000


__all__ = [
    "ARENA_OUTPUT_TOKENS",
    "ARENA_PRICES",
    "DEFAULT_CACHE",
    "arena_cost",
    "call_cost",
    "dense",
    "embeddings",
    "key",
    "local_embedder",
    "machine",
    "routellm",
    "write_results",
]
