"""How much cheaper than always-GPT-4 is the router, at what quality? RouteLLM's own yardstick.

On RouteLLM's per-prompt outcomes (GSM8K, MMLU, MT-Bench; ``SOMA_ROUTELLM_DATA`` or
``../shared/data/routellm``), with the weak and strong models priced from the registry
(``mixtral-8x7b`` and ``gpt-4-1106-preview``), this benchmark

1. drops the prompts in each ``contaminated_prompts.jsonl``;
2. cross-fits the learned router: 5 folds by a hash of the prompt; for each fold, the training
   code of ``python -m somaagent.llm.learned.train`` fits the heads on the other four folds
   (all three datasets together), and a :class:`~somaagent.llm.router.Router` over the
   two-model registry routes the held-out prompts, so no prompt is routed by a model that saw
   it (MT-Bench: routed on the first turn, scored on both, as RouteLLM does);
3. traces the cost-quality curve (every threshold of the router's ``max_quality_drop``) against
   random routing, always-strong and the oracle, with each prompt's real cost (prompt tokens
   plus the model's own answer, counted with cl100k; MMLU answers count one token);
4. reports (a) the cost ratio to always-strong at 95% of the strong model's quality, (b) APGR as
   RouteLLM defines it, and (c) decision latency p50/p99 of ``Router.decide`` (the two-model
   registry, and the full packaged registry).

Usage::

    .venv/bin/python bench/router.py [--data PATH] [--folds 5] [--latency-sample 3000]
    .venv/bin/python bench/router.py --cache /tmp/router_scores.npz   # keep/reuse the scores

Writes ``bench/results/router.json`` and ``router.md``. Without the data it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from somaagent.llm import cost, tokens
from somaagent.llm.learned import data as routellm
from somaagent.llm.learned.model import LearnedRouter, load_default
from somaagent.llm.learned.train import (
    ANCHOR_MODELS,
    DATASET_WEIGHTS,
    TrainConfig,
    featurize_outcomes,
    fit_heads,
    to_artifact,
)
from somaagent.llm.registry import ModelRegistry, ModelSpec
from somaagent.llm.router import Router

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.95
PUBLISHED = {"mt_bench": 3.66, "gsm8k": 1.49, "mmlu": 1.41}
PUBLISHED_NOTE = (
    "RouteLLM (Ong et al. 2024, arXiv 2406.18665), best router ('mf'): 95% of GPT-4's MT-Bench "
    "score at 3.66x lower cost than GPT-4 alone; on GSM8K 1.49x cheaper at 87%; on MMLU 1.41x "
    "at 92% (as stated in ../shared/data/README.md). Its routers were trained on Chatbot Arena "
    "preferences (plus augmentation), not on these benchmarks, and its costs count calls at an "
    "assumed $24.7 (GPT-4) vs $0.24 (Mixtral) per million tokens."
)
ROUTELLM_PRICE_RATIO = 0.24 / 24.7


def messages(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


# -- costs -----------------------------------------------------------------------------------


def call_costs(outcome: routellm.Outcome, spec: ModelSpec, answers: Sequence[str]) -> float:
    """What the prompt cost on ``spec``, from token counts of the prompt(s) and its answers."""
    encoder = tokens.get_encoder("cl100k_base")

    def n(text: str) -> int:
        return len(encoder.encode_ordinary(text))

    overhead = tokens.TOKENS_PER_MESSAGE + tokens.TOKENS_PER_REPLY + 1
    if outcome.dataset == "mmlu":
        return cost.estimate_cost(spec, n(outcome.prompt) + overhead, 1)
    total, context = 0.0, 0
    for turn, answer in zip(outcome.turns, answers, strict=False):
        context += n(turn) + overhead
        out = n(answer)
        total += cost.estimate_cost(spec, context, out)
        context += out + tokens.TOKENS_PER_MESSAGE
    return total


# -- curves and metrics ----------------------------------------------------------------------


def curve(
    order: np.ndarray, weak: np.ndarray, strong: np.ndarray, cw: np.ndarray, cs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quality, cost and strong-call share when the first k prompts of ``order`` go strong."""
    n = len(order)
    gain = np.concatenate([[0.0], np.cumsum(strong[order] - weak[order])])
    extra = np.concatenate([[0.0], np.cumsum(cs[order] - cw[order])])
    return (weak.sum() + gain) / n, cw.sum() + extra, np.arange(n + 1) / n


def metrics(
    order: np.ndarray, weak: np.ndarray, strong: np.ndarray, cw: np.ndarray, cs: np.ndarray
) -> dict[str, float]:
    q, c, share = curve(order, weak, strong, cw, cs)
    qw, qs = weak.mean(), strong.mean()
    pgr = (q - qw) / (qs - qw)
    reach = np.nonzero(q >= TARGET * qs - 1e-12)[0]
    best = reach[np.argmin(c[reach])]
    # RouteLLM's evaluate.py: 10 equal-count bins of the score -> 11 points, trapezoid.
    points = np.unique(np.round(np.linspace(0, len(order), 11)).astype(int))
    return {
        "cost_ratio_at_95": float(cs.sum() / c[best]),
        "strong_calls_at_95": float(share[best]),
        "calls_ratio_at_95_routellm_prices": float(
            1.0 / (share[best] + (1 - share[best]) * ROUTELLM_PRICE_RATIO)
        ),
        "apgr": float(np.trapezoid(pgr, share)),
        "apgr_10_bins": float(np.trapezoid(pgr[points], share[points])),
        "cpt_50": float(share[np.nonzero(pgr >= 0.5)[0][0]]),
        "cpt_80": float(share[np.nonzero(pgr >= 0.8)[0][0]]),
    }


def random_metrics(
    weak: np.ndarray, strong: np.ndarray, cw: np.ndarray, cs: np.ndarray
) -> dict[str, float]:
    """Random routing in expectation: quality and cost are linear in the strong-call share."""
    qw, qs = weak.mean(), strong.mean()
    share = min(1.0, max(0.0, (TARGET * qs - qw) / (qs - qw)))
    spent = cw.sum() + share * (cs.sum() - cw.sum())
    return {
        "cost_ratio_at_95": float(cs.sum() / spent),
        "strong_calls_at_95": share,
        "calls_ratio_at_95_routellm_prices": 1.0 / (share + (1 - share) * ROUTELLM_PRICE_RATIO),
        "apgr": 0.5,
        "apgr_10_bins": 0.5,
        "cpt_50": 0.5,
        "cpt_80": 0.8,
    }


def oracle_order(
    weak: np.ndarray, strong: np.ndarray, cw: np.ndarray, cs: np.ndarray
) -> np.ndarray:
    """Strong first where it gains most per extra dollar (a knapsack's greedy order)."""
    gain_per_dollar = (strong - weak) / np.maximum(cs - cw, 1e-12)
    return np.lexsort((-gain_per_dollar, -(strong > weak).astype(float)))


# -- the run ---------------------------------------------------------------------------------


def cross_fit(
    outcomes: list[routellm.Outcome], pair: ModelRegistry, folds: int, config: TrainConfig
) -> tuple[np.ndarray, int]:
    """Out-of-fold router scores (predicted strong minus weak quality), and how many decisions
    were checked against the threshold rule."""
    features = featurize_outcomes(outcomes, config.hash_bits)
    fold = np.array([routellm.fold_of(o, folds) for o in outcomes])
    score = np.zeros(len(outcomes))
    checked = 0
    weak_name, strong_name = ANCHOR_MODELS["weak"], ANCHOR_MODELS["strong"]
    for f in range(folds):
        train = [i for i in range(len(outcomes)) if fold[i] != f]
        heads = fit_heads([outcomes[i] for i in train], [features[i] for i in train], config)
        learned = LearnedRouter.from_dict(to_artifact(heads, config, {}))
        router = Router(pair, learned=learned)
        router.decide(messages("warm up"))
        for i in np.nonzero(fold == f)[0]:
            decision = router.decide(messages(outcomes[i].prompt))
            q = {c.spec.name: c.predicted_quality for c in decision.candidates}
            score[i] = q[strong_name] - q[weak_name]
            if i % 97 == 0:  # the threshold rule is what decide() does with max_quality_drop
                drop = float(max(score[i] + 1e-6, 0.0))
                for d, expect in ((drop, weak_name), (max(drop - 2e-6, 0.0), strong_name)):
                    got = router.decide(messages(outcomes[i].prompt), {"max_quality_drop": d})
                    assert score[i] <= 0 or got.spec.name == expect, (i, d, got.spec.name)
                checked += 1
        print(f"  fold {f + 1}/{folds} done", file=sys.stderr, flush=True)
    return score, checked


def decision_latency(
    registry: ModelRegistry, outcomes: list[routellm.Outcome], sample: int
) -> np.ndarray:
    """Wall-clock and thread-CPU milliseconds of ``Router.decide`` (shipped artifact) on a
    sample of the prompts."""
    router = Router(registry)
    router.warm_up()
    picked = random.Random(0).sample(outcomes, min(sample, len(outcomes)))
    wall, cpu = [], []
    for o in picked:
        started, cpu_started = time.perf_counter(), time.thread_time()
        router.decide(messages(o.prompt))
        wall.append((time.perf_counter() - started) * 1000.0)
        cpu.append((time.thread_time() - cpu_started) * 1000.0)
    return np.array([wall, cpu])


def percentiles(samples: np.ndarray) -> dict[str, float]:
    """p50/p99 of wall-clock and of thread CPU time (the machine is shared: CPU time is what
    the decision itself costs; wall time adds waiting for a core)."""
    wall, cpu = (sorted(float(x) for x in row) for row in samples)

    def p(values: list[float], q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {
        "p50_ms": round(statistics.median(wall), 3),
        "p99_ms": p(wall, 0.99),
        "cpu_p50_ms": round(statistics.median(cpu), 3),
        "cpu_p99_ms": p(cpu, 0.99),
        "n": len(wall),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--latency-sample", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cache", type=Path, default=None, help="keep out-of-fold scores here")
    args = parser.parse_args(argv)
    try:
        loaded = routellm.load(args.data)
    except routellm.DataMissingError as exc:
        print(f"bench/router.py skipped: {exc}")
        return 0
    registry = ModelRegistry.load()
    weak_spec, strong_spec = (registry.get(ANCHOR_MODELS[k]) for k in ("weak", "strong"))
    pair = ModelRegistry([weak_spec, strong_spec])
    config = TrainConfig()
    outcomes = loaded.outcomes
    started = time.perf_counter()
    print(f"{len(outcomes)} prompts; cross-fitting {args.folds} folds...", file=sys.stderr)
    cache = args.cache
    scores_from = "computed in this run"
    if cache is not None and cache.is_file():  # re-render without re-training (same data)
        scores_from = f"read from {cache}, computed by an earlier run"
        saved = np.load(cache)
        score, checked = saved["score"], int(saved["checked"])
    else:
        score, checked = cross_fit(outcomes, pair, args.folds, config)
        if cache is not None:
            np.savez(cache, score=score, checked=checked)
    latencies = decision_latency(pair, outcomes, args.latency_sample)
    full_latencies = decision_latency(registry, outcomes, args.latency_sample)
    shipped = load_default()
    results: dict[str, Any] = {}
    for name in routellm.DATASETS:
        idx = np.array([i for i, o in enumerate(outcomes) if o.dataset == name])
        rows = [outcomes[i] for i in idx]
        weak = np.array([o.weak for o in rows])
        strong = np.array([o.strong for o in rows])
        cw = np.array([call_costs(o, weak_spec, o.weak_answers) for o in rows])
        cs = np.array([call_costs(o, strong_spec, o.strong_answers) for o in rows])
        router_order = np.argsort(-score[idx], kind="stable")
        entry: dict[str, Any] = {
            "prompts": len(rows),
            "contaminated_dropped": loaded.contaminated[name],
            "weak_quality": round(float(weak.mean()), 4),
            "strong_quality": round(float(strong.mean()), 4),
            "target_quality": round(float(TARGET * strong.mean()), 4),
            "cost_always_strong_usd": round(float(cs.sum()), 4),
            "cost_always_weak_usd": round(float(cw.sum()), 4),
            "router": metrics(router_order, weak, strong, cw, cs),
            "random": random_metrics(weak, strong, cw, cs),
            "oracle": metrics(oracle_order(weak, strong, cw, cs), weak, strong, cw, cs),
            "published_routellm_cost_ratio": PUBLISHED[name],
        }
        # The policy that routes like this: prompts whose predicted gain from the strong model
        # exceeds max_quality_drop go to it.
        k = round(entry["router"]["strong_calls_at_95"] * len(rows))
        entry["router_max_quality_drop_at_95"] = (
            round(float(score[idx][router_order[k]]), 4) if k < len(rows) else 0.0
        )
        if shipped is not None:  # the shipped artifact on the fold it never saw
            held = [j for j, o in enumerate(rows) if routellm.fold_of(o, args.folds) == 0]
            predictions = [shipped.predict(messages(rows[j].prompt)) for j in held]
            h = np.array(held)
            s = np.array([p.strong - p.weak for p in predictions])
            entry["shipped_artifact_on_fold_0"] = {
                "prompts": len(held),
                **metrics(np.argsort(-s, kind="stable"), weak[h], strong[h], cw[h], cs[h]),
            }
        results[name] = entry
    report = {
        "benchmark": "router",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "note": "shared machine, several engineers at work",
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "data": "lm-sys/RouteLLM routellm/evals (gsm8k, mmlu, mt_bench), contaminated prompts out",
        "settings": {
            "weak": {
                "model": weak_spec.name,
                "in_per_mtok": weak_spec.input_cost_per_mtok,
                "out_per_mtok": weak_spec.output_cost_per_mtok,
            },
            "strong": {
                "model": strong_spec.name,
                "in_per_mtok": strong_spec.input_cost_per_mtok,
                "out_per_mtok": strong_spec.output_cost_per_mtok,
            },
            "folds": args.folds,
            "train_config": {
                "hash_bits": config.hash_bits,
                "l2": config.l2,
                "epochs": config.epochs,
            },
            "dataset_weights": DATASET_WEIGHTS,
            "target": f"{TARGET:.0%} of the strong model's quality",
            "threshold_rule_checks": checked,
            "full_registry_models": len(registry),
        },
        "decision_latency": {
            "two_model_registry": percentiles(latencies),
            "full_registry": percentiles(full_latencies),
        },
        "datasets": results,
        "published": PUBLISHED_NOTE,
        "seconds": round(time.perf_counter() - started, 1),
        "scores": scores_from,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "router.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "router.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# Router benchmark: RouteLLM's GSM8K, MMLU and MT-Bench",
        "",
        f"{report['date']}, {report['machine']['platform']}, Python {report['machine']['python']}"
        f", {report['machine']['cpus']} CPUs ({report['machine']['note']}). "
        f"`.venv/bin/python bench/router.py`, {report['seconds']} s "
        f"(out-of-fold scores {report['scores']}).",
        "",
        f"Weak: `{s['weak']['model']}` (${s['weak']['in_per_mtok']}/${s['weak']['out_per_mtok']} "
        f"per M tokens in/out); strong: `{s['strong']['model']}` (${s['strong']['in_per_mtok']}/"
        f"${s['strong']['out_per_mtok']}). Each prompt's cost is its tokens (cl100k) plus the "
        "model's own answer from the data (MMLU: one token). Out-of-fold: "
        f"{s['folds']} folds by prompt hash, the router trained on the other folds each time. "
        "Target: 95% of the strong model's quality.",
        "",
        "| dataset | prompts | weak | strong | router cost ratio @95% | strong calls | random | "
        "oracle | RouteLLM published | router APGR | (10 bins) | random APGR | oracle APGR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, d in report["datasets"].items():
        r, rnd, o = d["router"], d["random"], d["oracle"]
        lines.append(
            f"| {name} | {d['prompts']} | {d['weak_quality']:.3f} | {d['strong_quality']:.3f} | "
            f"**{r['cost_ratio_at_95']:.2f}x** | {r['strong_calls_at_95']:.1%} | "
            f"{rnd['cost_ratio_at_95']:.2f}x | {o['cost_ratio_at_95']:.2f}x | "
            f"{d['published_routellm_cost_ratio']:.2f}x | **{r['apgr']:.3f}** | "
            f"{r['apgr_10_bins']:.3f} | {rnd['apgr']:.3f} | {o['apgr']:.3f} |"
        )
    lat = report["decision_latency"]
    lines += [
        "",
        "Same routing, costed the way RouteLLM counts (calls at $0.24 vs $24.7 per M tokens): "
        + ", ".join(
            f"{n} {d['router']['calls_ratio_at_95_routellm_prices']:.2f}x"
            for n, d in report["datasets"].items()
        )
        + ".",
        "",
        "Shipped artifact (trained on folds 1-4) on held-out fold 0: "
        + ", ".join(
            f"{n} {d['shipped_artifact_on_fold_0']['cost_ratio_at_95']:.2f}x / APGR "
            f"{d['shipped_artifact_on_fold_0']['apgr']:.3f} "
            f"({d['shipped_artifact_on_fold_0']['prompts']} prompts)"
            for n, d in report["datasets"].items()
            if d.get("shipped_artifact_on_fold_0", {}).get("prompts", 0) >= 100
        )
        + " (MT-Bench's fold 0 has 12 prompts, too few to mean anything; it is in the JSON).",
        "",
        "Decision latency of `Router.decide` (complexity, learned heads, token counts, cost "
        "estimates, every candidate explained), wall clock and (thread CPU time):",
        "",
        "| registry | n | p50 ms | p99 ms | CPU p50 ms | CPU p99 ms |",
        "|---|---|---|---|---|---|",
        *(
            f"| {label} | {lat[key]['n']} | {lat[key]['p50_ms']} | {lat[key]['p99_ms']} | "
            f"{lat[key]['cpu_p50_ms']} | {lat[key]['cpu_p99_ms']} |"
            for key, label in (
                ("two_model_registry", "weak + strong"),
                ("full_registry", f"packaged ({s['full_registry_models']} models)"),
            )
        ),
        "",
        f"Load average during the run: {report['machine']['load_average']} on "
        f"{report['machine']['cpus']} cores (other engineers' tests and builds): wall-clock tails "
        "include waiting for a core; CPU time is what a decision costs.",
        "",
        f"Published: {report['published']}",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
