"""Does the router generalise to prompts it was not trained on? Leave-one-dataset-out first.

Data: RouteLLM's GSM8K, MMLU and MT-Bench outcomes (Mixtral-8x7B-Instruct vs GPT-4-1106-preview,
contaminated prompts out; ``SOMA_ROUTELLM_DATA``) and arena-bench-v1 (300 hard Chatbot Arena
prompts, 15 models, GPT-4-judged 1-10; ``SOMA_ARENA_BENCH_DATA``). Every prompt is embedded
once with the product's local all-MiniLM-L6-v2 (int8 ONNX) and cached in ``--embeddings``.

1. **Headline, leave-one-dataset-out (LODO).** For each of the four datasets: train on the
   other three, route the held-out one between the weak and the strong model, and report APGR
   (RouteLLM's area under the performance-gap-recovered curve) and the cost ratio to
   always-strong at 95% of the strong model's quality, each with a bootstrap 95% interval
   (1,000 resamples of the held-out prompts; the router's scores fixed), beside random and the
   oracle. Hyper-parameters are chosen by leave-one-dataset-out cross-validation *inside* the
   three training datasets (mean APGR), never on the held-out one. Candidates: the shipped
   linear quality heads over [dense features, embedding] (:mod:`somaagent.llm.learned.heads`),
   a similarity-weighted kNN over the embeddings, a rank-16 matrix factorisation in the style
   of RouteLLM's ``mf`` (fixed settings, MMLU subsampled to 3,000 prompts in its training: it
   is the slow one), the previous hashed-word heads (its shipped settings), and the cheap
   features alone.
2. **In distribution (out-of-fold)**, labelled as such: 5 folds by prompt hash over all four
   datasets pooled; the shipped heads with the ridge strength chosen by LODO.
3. **Many models** on arena-bench-v1 with held-out prompts (5 folds by prompt hash; training:
   RouteLLM's data plus the other arena folds): quality against cost for the router (the
   cheapest model whose predicted score is within a margin of the best prediction, the margin
   swept), always-best, always-cheapest, random, the oracle and the best static mix (the
   cheapest random mix of two single models reaching the target); target: 95% of
   GPT-4-1106-preview's mean score.
4. **Decision CPU time** of ``Router.decide`` with the shipped heads: embedding cached, and not.

Usage::

    .venv/bin/python bench/router.py [--embeddings PATH] [--write-artifact]

``--write-artifact`` also fits the heads on all four datasets (ridge strength by LODO) and
writes ``src/somaagent/llm/learned/quality_heads.json``. Writes ``bench/results/router.json``
and ``router.md``; without the data it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _router_data as rd
import _router_methods as rm

from somaagent.llm.learned import data as routellm
from somaagent.llm.learned.embedding import EMBED_TOKENS
from somaagent.llm.learned.fitting import STRONG, WEAK, build_heads, public_prompts
from somaagent.llm.learned.heads import DEFAULT_HEADS
from somaagent.llm.registry import ModelRegistry

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = ("gsm8k", "mmlu", "mt_bench", "arena")
PUBLISHED_NOTE = (
    "RouteLLM (Ong et al. 2024, arXiv 2406.18665), best router ('mf'), trained on Chatbot Arena "
    "preferences (plus augmentation), not on these benchmarks: 95% of GPT-4's MT-Bench score at "
    "3.66x lower cost than GPT-4 alone; on GSM8K 1.49x cheaper at 87%; on MMLU 1.41x at 92%. "
    "Its costs count calls at an assumed $24.7 (GPT-4) vs $0.24 (Mixtral) per million tokens."
)
PUBLISHED = {"mt_bench": 3.66, "gsm8k": 1.49, "mmlu": 1.41}


def lodo(
    method: rm.Method,
    ds: np.ndarray,
    inputs: rm.Inputs,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Held-out scores for every prompt, each dataset scored by a model trained on the others,
    with the settings chosen by LODO inside those others."""
    score = np.zeros(len(ds))
    chosen: dict[str, Any] = {}
    for held in DATASETS:
        test = ds == held
        train = ~test
        settings = rm.select(method, train, ds, inputs)
        score[test] = method.fit_predict(train, test, inputs, settings)
        chosen[held] = settings
        print(f"  {method.name}: {held} done ({settings})", file=sys.stderr, flush=True)
    return score, chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--routellm", type=Path, default=None)
    parser.add_argument("--arena", type=Path, default=None)
    parser.add_argument("--embeddings", type=Path, default=rd.DEFAULT_CACHE)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--latency-sample", type=int, default=1000)
    parser.add_argument("--methods", default="heads,knn,mf,words,cheap")
    parser.add_argument("--write-artifact", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:
        prompts = public_prompts(args.routellm, args.arena)
    except routellm.DataMissingError as exc:
        print(f"bench/router.py skipped: {exc}")
        return 0
    started = time.perf_counter()
    registry = ModelRegistry.load()
    weak_spec, strong_spec = registry.get("mixtral-8x7b"), registry.get("gpt-4-1106-preview")
    pair_rows = [i for i, p in enumerate(prompts) if WEAK in p.scores and STRONG in p.scores]
    pair = [prompts[i] for i in pair_rows]
    print(f"{len(pair)} two-model prompts; features...", file=sys.stderr, flush=True)
    emb_all = rd.embeddings(prompts, args.embeddings)
    dense_all = rd.dense(prompts)
    inputs = rm.Inputs.build([p.prompt for p in pair], dense_all[pair_rows], emb_all[pair_rows])
    ds = np.array([p.dataset for p in pair])
    weak = np.array([p.scores[WEAK] for p in pair])
    strong = np.array([p.scores[STRONG] for p in pair])
    inputs.weak, inputs.strong = weak, strong
    cw = np.array([rd.call_cost(p, weak_spec, "weak") for p in pair])
    cs = np.array([rd.call_cost(p, strong_spec, "strong") for p in pair])
    rng = np.random.default_rng(0)

    methods = [rm.METHODS[name] for name in args.methods.split(",")]
    scores: dict[str, np.ndarray] = {}
    chosen: dict[str, Any] = {}
    for method in methods:
        scores[method.name], chosen[method.name] = lodo(method, ds, inputs)

    headline: dict[str, Any] = {}
    for held in DATASETS:
        m = ds == held
        entry: dict[str, Any] = {
            "prompts": int(m.sum()),
            "weak_quality": round(float(weak[m].mean()), 4),
            "strong_quality": round(float(strong[m].mean()), 4),
            "random": rm.random_metrics(weak[m], strong[m], cw[m], cs[m]),
            "oracle": rm.metrics(
                rm.oracle_order(weak[m], strong[m], cw[m], cs[m]), weak[m], strong[m], cw[m], cs[m]
            ),
        }
        for name, score in scores.items():
            entry[name] = rm.with_intervals(
                score[m], weak[m], strong[m], cw[m], cs[m], args.bootstrap, rng
            )
            entry[name]["settings"] = chosen[name][held]
        if held in PUBLISHED:
            entry["published_routellm_cost_ratio"] = PUBLISHED[held]
        headline[held] = entry

    # In distribution: out-of-fold over the four datasets pooled (the fast methods).
    fold = np.array([int(rd.key(p.prompt)[:8], 16) % 5 for p in pair])
    everything = np.ones(len(ds), dtype=bool)
    alpha = rm.select(rm.METHODS["heads"], everything, ds, inputs)
    in_dist: dict[str, Any] = {}
    in_settings: dict[str, Any] = {}
    for name in [m.name for m in methods if m.name in ("heads", "knn", "cheap")]:
        method = rm.METHODS[name]
        settings = alpha if name == "heads" else rm.select(method, everything, ds, inputs)
        oof = np.zeros(len(ds))
        for f in range(5):
            oof[fold == f] = method.fit_predict(fold != f, fold == f, inputs, settings)
        in_settings[name] = settings
        for held in DATASETS:
            m = ds == held
            in_dist.setdefault(held, {})[name] = rm.with_intervals(
                oof[m], weak[m], strong[m], cw[m], cs[m], args.bootstrap, rng
            )
    residual = scores["heads"] - (strong - weak)
    gain_sd = float(np.sqrt(np.average(residual**2, weights=rm.balanced(ds))))

    many = rm.many_models(prompts, emb_all, dense_all, alpha, rd, registry, args.bootstrap, rng)

    if args.write_artifact:
        artifact = build_heads(
            prompts,
            dense_all,
            emb_all,
            alpha=alpha["alpha"],
            gain_sd=gain_sd,
            embedding_model=(
                f"all-MiniLM-L6-v2 (int8 ONNX, LocalEmbedder), first {EMBED_TOKENS} tokens"
            ),
            training={
                "data": "RouteLLM routellm/evals gsm8k, mmlu, mt_bench (contaminated prompts out)"
                " and arena-bench-v1 (lmarena/arena-hard-auto, 15 models)",
                "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "prompts": {d: sum(1 for p in prompts if p.dataset == d) for d in DATASETS},
                "alpha": alpha["alpha"],
                "alpha_chosen_by": "leave-one-dataset-out over the four datasets (mean APGR)",
                "lodo_apgr": {d: headline[d]["heads"]["apgr"] for d in DATASETS}
                if "heads" in scores
                else {},
            },
        )
        DEFAULT_HEADS.write_text(json.dumps(artifact.to_dict(), separators=(",", ":")) + "\n")
        print(
            f"wrote {DEFAULT_HEADS} ({DEFAULT_HEADS.stat().st_size // 1024} KiB)", file=sys.stderr
        )

    latency = rm.decision_latency(registry, [p.prompt for p in prompts], args.latency_sample, rd)
    report = {
        "benchmark": "router",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": rd.machine(),
        "settings": {
            "weak": [weak_spec.name, weak_spec.input_cost_per_mtok, weak_spec.output_cost_per_mtok],
            "strong": [
                strong_spec.name,
                strong_spec.input_cost_per_mtok,
                strong_spec.output_cost_per_mtok,
            ],
            "target": "95% of the strong model's quality",
            "bootstrap": args.bootstrap,
            "arena_output_tokens": rd.ARENA_OUTPUT_TOKENS,
            "routellm_price_ratio_per_call": rm.ROUTELLM_PRICE_RATIO,
        },
        "leave_one_dataset_out": headline,
        "in_distribution_out_of_fold": {"settings": in_settings, "datasets": in_dist},
        "many_models_arena": many,
        "gain_sd": round(gain_sd, 4),
        "decision_latency": latency,
        "published": PUBLISHED_NOTE,
        "seconds": round(time.perf_counter() - started, 1),
    }
    from _router_report import markdown

    rd.write_results(args.out, "router", report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
