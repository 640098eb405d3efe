"""``bench/results/router.md`` from the JSON report of ``bench/router.py``."""

from __future__ import annotations

from typing import Any

LABELS = {
    "heads": "linear heads, dense + MiniLM (shipped)",
    "knn": "similarity-weighted kNN, MiniLM",
    "mf": "matrix factorisation (RouteLLM mf style)",
    "words": "hashed-word heads (previous artifact)",
    "cheap": "linear heads, dense features only",
}


def _ci(entry: dict[str, Any], key: str, fmt: str) -> str:
    lo, hi = entry.get(f"{key}_ci95", [None, None])
    value = format(entry[key], fmt)
    return value if lo is None else f"{value} [{format(lo, fmt)}, {format(hi, fmt)}]"


def markdown(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    lodo = report["leave_one_dataset_out"]
    methods = [k for k in LABELS if k in next(iter(lodo.values()))]
    lines = [
        "# Router benchmark: does it generalise to datasets it was not trained on?",
        "",
        f"{report['date']}, {m['platform']}, Python {m['python']}, {m['cpus']} CPUs "
        f"({m['note']}; load average {m['load_average']}). `.venv/bin/python bench/router.py`, "
        f"{report['seconds']} s.",
        "",
        f"Weak: `{s['weak'][0]}` (${s['weak'][1]}/${s['weak'][2]} per M tokens in/out); strong: "
        f"`{s['strong'][0]}` (${s['strong'][1]}/${s['strong'][2]}). Each prompt's cost: its "
        "tokens (cl100k) plus the model's own answer from the data (MMLU: one token; "
        f"arena-bench-v1 has no answers: {s['arena_output_tokens']} tokens each). Target: "
        "95% of the strong model's quality. Intervals: percentile bootstrap, "
        f"{s['bootstrap']} resamples of the held-out prompts.",
        "",
        "## Headline: leave one dataset out",
        "",
        "Trained on the other three datasets, tested on the one named; hyper-parameters chosen "
        "by leave-one-dataset-out cross-validation inside the three training datasets.",
        "",
        "| held out | prompts | router | APGR [95% CI] | cost ratio @95% [95% CI] | "
        "strong calls | per call (RouteLLM prices) |",
        "|---|---|---|---|---|---|---|",
    ]
    for held, d in lodo.items():
        for name in [*methods, "random", "oracle"]:
            r = d[name]
            label = LABELS.get(name, name)
            apgr = _ci(r, "apgr", ".3f") if name in methods else f"{r['apgr']:.3f}"
            ratio = (
                _ci(r, "cost_ratio_at_95", ".2f") + "x"
                if name in methods
                else f"{r['cost_ratio_at_95']:.2f}x"
            )
            bold = "**" if name == "heads" else ""
            lines.append(
                f"| {held} | {d['prompts']} | {bold}{label}{bold} | {apgr} | {ratio} | "
                f"{r['strong_calls_at_95']:.1%} | "
                f"{r['calls_ratio_at_95_routellm_prices']:.2f}x |"
            )
    lines += [
        "",
        "Per token is this project's costing (each prompt's real tokens at the registry's "
        "prices); per call is RouteLLM's (a call's cost fixed by the model, $24.7 vs $0.24 "
        "per M tokens), from the same routing.",
        "",
        "## In distribution (out-of-fold), for comparison only",
        "",
        "5 folds by prompt hash over the four datasets pooled: the router has seen prompts of "
        "the same dataset in training. Not a generalisation figure.",
        "",
        "| dataset | router | APGR [95% CI] | cost ratio @95% [95% CI] | strong calls |",
        "|---|---|---|---|---|",
    ]
    for held, by_method in report["in_distribution_out_of_fold"]["datasets"].items():
        for name, r in by_method.items():
            lines.append(
                f"| {held} | {LABELS[name]} | {_ci(r, 'apgr', '.3f')} | "
                f"{_ci(r, 'cost_ratio_at_95', '.2f')}x | {r['strong_calls_at_95']:.1%} |"
            )
    many = report["many_models_arena"]
    lines += [
        "",
        f"## Many models: arena-bench-v1, {many['models']} models, prompts held out",
        "",
        f"{many['prompts']} prompts scored for every model, 5 folds by prompt hash; heads trained "
        "on RouteLLM's data plus the other folds. Target: "
        f"{many['target']}. Costs: prompt tokens plus {s['arena_output_tokens']} answer tokens "
        "at each model's price (registry prices for the registry's models; list prices of the "
        "time for the others, approximations: see `ARENA_PRICES` in `bench/_router_data.py`). "
        "The router's point and the best static mix are the cheapest points of their curves "
        "reaching the target on the held-out prompts.",
        "",
        "| policy | mean score / 10 | cost (USD, all prompts) |",
        "|---|---|---|",
    ]
    for key in (
        "always_best",
        "always_strong",
        "always_cheapest",
        "random",
        "oracle",
        "best_static_mix",
        "router",
    ):
        r = many.get(key)
        if not r:
            lines.append(f"| {key} | did not reach the target | |")
            continue
        label = key + (f" ({r['model']})" if "model" in r else "")
        if key == "best_static_mix":
            label += f" ({r['models'][0]} {r['share_first']:.0%} / {r['models'][1]})"
        bold = "**" if key == "router" else ""
        lines.append(f"| {bold}{label}{bold} | {r['quality']:.4f} | {r['cost_usd']:.4f} |")
    if many.get("router"):
        r = many["router"]
        lines += [
            "",
            f"Router at margin {r['margin']:.3f}: quality / always-strong's "
            f"{r['quality_vs_strong_ci95']} (95% CI), always-strong's cost / router's "
            f"{r['cost_ratio_to_strong_ci95']} (95% CI); models used: {r['models_used']}.",
        ]
    lat = report["decision_latency"]
    lines += [
        "",
        "## Decision time",
        "",
        "`Router.decide` over the packaged registry with the shipped heads (complexity, dense "
        "features, embedding, heads, token counts, every candidate explained); process CPU "
        "time, which includes ONNX Runtime's thread (one) for the embedding:",
        "",
        "| embedding | n | wall p50 ms | wall p99 ms | CPU p50 ms | CPU p99 ms |",
        "|---|---|---|---|---|---|",
        *(
            f"| {k} | {v['n']} | {v['p50_ms']} | {v['p99_ms']} | {v['cpu_p50_ms']} | "
            f"{v['cpu_p99_ms']} |"
            for k, v in lat.items()
        ),
        "",
        f"Held-out spread of the predicted gain (the router's confidence scale): "
        f"{report['gain_sd']}.",
        "",
        f"Published: {report['published']}",
        "",
    ]
    return "\n".join(lines)
