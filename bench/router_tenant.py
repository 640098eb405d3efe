"""Does learning from a tenant's own traffic close the gap that public data leaves?

The router's public heads generalise modestly to a dataset they were not trained on
(``bench/router.py``'s leave-one-dataset-out headline). This benchmark plays a tenant whose
traffic *is* that held-out dataset and runs the product's own training step on it:

1. Public heads fitted on the other datasets (``build_heads``: the three other datasets plus,
   unless arena is the tenant, arena-bench-v1's 15 models; ridge strength by leave-one-dataset-
   out inside them, as ``bench/router.py`` chooses it).
2. The tenant's prompts split by a hash: two fifths kept aside for evaluation, the rest its
   traffic. The first N prompts of the traffic (in a random order, 5 orders per N) were routed
   by the public heads: the half with the larger predicted gain to GPT-4-1106, the rest to
   Mixtral-8x7B. Each answer is rated with the dataset's own outcome for the model that
   answered (bandit feedback: the other model's outcome is never seen), as
   ``POST /v1/feedback`` would record it.
3. ``fit_tenant_heads`` (what ``soma route train`` runs) fits, judges and promotes or keeps.
4. Both routers order the evaluation prompts by predicted gain; APGR and the cost ratio at 95%
   of GPT-4's quality, public against tenant (the tenant's heads where promoted, else the
   public ones), with bootstrap 95% intervals over the evaluation prompts for the first order
   and the spread over the 5 orders.

MT-Bench (72 prompts) is too small to split this way and is left out.

Usage::

    nice -n 10 .venv/bin/python bench/router_tenant.py [--embeddings PATH] [--sizes 50,100,...]

Writes ``bench/results/router_tenant.json`` and ``router_tenant.md``; without the data it says
so and exits 0.
"""

from __future__ import annotations

import argparse
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

from somaagent.errors import ValidationError
from somaagent.llm.learned import data as routellm
from somaagent.llm.learned.fitting import STRONG, WEAK, build_heads, design, public_prompts
from somaagent.llm.learned.heads import QualityHeads
from somaagent.llm.registry import ModelRegistry
from somaagent.llm.tenant_heads import Rated, fit_tenant_heads

RESULTS = Path(__file__).resolve().parent / "results"
TENANTS = ("gsm8k", "mmlu", "arena")
ORDERS = 5


def _predict(heads: QualityHeads, name: str, x: np.ndarray) -> np.ndarray:
    """``Head.predict`` over rows: the linear prediction clipped to [0.001, 0.999]."""
    head = heads.heads[name]
    return np.clip(x @ np.array(head.weights) + head.bias, 0.001, 0.999)  # type: ignore[no-any-return]


def _quality(
    tenant: QualityHeads, public: QualityHeads, reg: str, data: str, x: np.ndarray
) -> np.ndarray:
    """A model's predicted quality: its tenant head where it got one, else its public head."""
    if reg in tenant.heads:
        return _predict(tenant, reg, x)
    return _predict(public, data, x)


def _gain(heads: QualityHeads, weak: str, strong: str, x: np.ndarray) -> np.ndarray:
    return _predict(heads, strong, x) - _predict(heads, weak, x)


def tenant_curve(
    held: str,
    prompts: Sequence[Any],
    emb: np.ndarray,
    dense: np.ndarray,
    sizes: Sequence[int],
    registry: ModelRegistry,
    reps: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Public against tenant heads for one tenant dataset; see the module doc."""
    pair_rows = [i for i, p in enumerate(prompts) if WEAK in p.scores and STRONG in p.scores]
    pair = [prompts[i] for i in pair_rows]
    ds = np.array([p.dataset for p in pair])
    inputs = rm.Inputs.build([p.prompt for p in pair], dense[pair_rows], emb[pair_rows])
    inputs.weak = np.array([p.scores[WEAK] for p in pair])
    inputs.strong = np.array([p.scores[STRONG] for p in pair])
    alpha = rm.select(rm.METHODS["heads"], ds != held, ds, inputs)["alpha"]
    public_rows = [i for i, p in enumerate(prompts) if p.dataset != held]
    public = build_heads(
        [prompts[i] for i in public_rows],
        dense[public_rows],
        emb[public_rows],
        alpha=alpha,
        gain_sd=0.2,
        embedding_model="all-MiniLM-L6-v2",
        training={},
    )
    weak_reg, strong_reg = public.registry[WEAK], public.registry[STRONG]

    mine = [
        i
        for i, p in enumerate(prompts)
        if p.dataset == held and WEAK in p.scores and STRONG in p.scores
    ]
    x, _, _ = design(
        dense[mine],
        emb[mine],
        mean=np.array(public.dense_mean),
        std=np.array(public.dense_std),
        scale=public.embedding_scale,
    )
    weak = np.array([prompts[i].scores[WEAK] for i in mine])
    strong = np.array([prompts[i].scores[STRONG] for i in mine])
    ids = [rd.key(prompts[i].prompt) for i in mine]
    weak_spec, strong_spec = registry.get(weak_reg), registry.get(strong_reg)
    cw = np.array([rd.call_cost(prompts[i], weak_spec, "weak") for i in mine])
    cs = np.array([rd.call_cost(prompts[i], strong_spec, "strong") for i in mine])
    fold = np.array([int(k[:8], 16) % 5 for k in ids])
    evaluation = np.nonzero(fold < 2)[0]
    traffic = np.nonzero(fold >= 2)[0]
    ev = (weak[evaluation], strong[evaluation], cw[evaluation], cs[evaluation])

    public_gain = _gain(public, WEAK, STRONG, x)
    out: dict[str, Any] = {
        "prompts": len(mine),
        "evaluation_prompts": len(evaluation),
        "traffic_prompts": len(traffic),
        "alpha": alpha,
        "public": rm.with_intervals(public_gain[evaluation], *ev, reps, rng),
        "sizes": {},
    }
    for n in sizes:
        if n > len(traffic):
            continue
        runs = []
        for order in range(ORDERS):
            seen = np.random.default_rng(order).permutation(traffic)[:n]
            to_strong = public_gain[seen] > np.median(public_gain[seen])
            rated = []
            for row, strong_call in zip(seen, to_strong, strict=True):
                model, data = (strong_reg, STRONG) if strong_call else (weak_reg, WEAK)
                score = strong[row] if strong_call else weak[row]
                predicted = float(_predict(public, data, x[row : row + 1])[0])
                rated.append(Rated(ids[row], model, tuple(x[row].tolist()), predicted, score))
            try:
                fit = fit_tenant_heads(held, public, rated)
            except ValidationError as exc:
                runs.append({"error": str(exc)})
                continue
            if fit.promoted:  # each model's tenant head where it got one, else its public head
                gain = _quality(fit.heads, public, strong_reg, STRONG, x) - _quality(
                    fit.heads, public, weak_reg, WEAK, x
                )
            else:
                gain = public_gain
            run: dict[str, Any] = {
                "promoted": fit.promoted,
                "brier_before": fit.report["before"]["brier"],
                "brier_after": fit.report["after"]["brier"],
                "models": fit.report["models"],
            }
            if order == 0:
                run.update(rm.with_intervals(gain[evaluation], *ev, reps, rng))
            else:
                run["apgr"] = round(rm.apgr(gain[evaluation], ev[0], ev[1]), 4)
            runs.append(run)
        scored = [r["apgr"] for r in runs if "apgr" in r]
        out["sizes"][str(n)] = {
            "runs": runs,
            "apgr_mean": round(float(np.mean(scored)), 4) if scored else None,
            "apgr_range": [round(min(scored), 4), round(max(scored), 4)] if scored else None,
            "promoted": sum(1 for r in runs if r.get("promoted")),
        }
        print(
            f"{held} n={n}: tenant APGR mean {out['sizes'][str(n)]['apgr_mean']} "
            f"(public {out['public']['apgr']}), promoted {out['sizes'][str(n)]['promoted']}/"
            f"{ORDERS}",
            file=sys.stderr,
            flush=True,
        )
    return out


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Router: learning from a tenant's own traffic",
        "",
        f"{report['date']}, {m['platform']}, Python {m['python']}, {m['cpus']} CPUs "
        f"({m['note']}; load average {m['load_average']}). "
        f"`.venv/bin/python bench/router_tenant.py`, {report['seconds']} s.",
        "",
        "A tenant whose traffic is one dataset the public heads were not trained on; its first N "
        "routed answers are rated (the routed model's own outcome in the data: bandit feedback), "
        "and the product's training step (`fit_tenant_heads`, what `soma route train` runs) fits "
        "and promotes or keeps the tenant's heads. Evaluation: two fifths of the dataset's "
        "prompts (by hash), never in the traffic. APGR between Mixtral-8x7B and GPT-4-1106 "
        "(random 0.5); intervals: percentile bootstrap over the evaluation prompts (first traffic "
        f"order); 'mean (range)': over {ORDERS} random orders of the traffic. See the module "
        "doc of `bench/router_tenant.py` for the protocol.",
        "",
        "| tenant | rated answers | promoted | APGR, tenant [95% CI] | mean (range) over orders "
        "| cost ratio @95% [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for held, entry in report["tenants"].items():
        pub = entry["public"]
        lines.append(
            f"| {held} ({entry['evaluation_prompts']} eval) | 0: public heads only | - "
            f"| {pub['apgr']:.3f} [{pub['apgr_ci95'][0]:.3f}, {pub['apgr_ci95'][1]:.3f}] | - "
            f"| {pub['cost_ratio_at_95']:.2f} [{pub['cost_ratio_at_95_ci95'][0]:.2f}, "
            f"{pub['cost_ratio_at_95_ci95'][1]:.2f}]x |"
        )
        for n, size in entry["sizes"].items():
            first = size["runs"][0]
            if "apgr_ci95" not in first:
                lines.append(f"| {held} | {n} | - | {first.get('error', 'no run')} | - | - |")
                continue
            lo, hi = first["apgr_ci95"]
            clo, chi = first["cost_ratio_at_95_ci95"]
            rlo, rhi = size["apgr_range"]
            lines.append(
                f"| {held} | {n} | {size['promoted']}/{ORDERS} | {first['apgr']:.3f} "
                f"[{lo:.3f}, {hi:.3f}] | {size['apgr_mean']:.3f} ({rlo:.3f}-{rhi:.3f}) "
                f"| {first['cost_ratio_at_95']:.2f} [{clo:.2f}, {chi:.2f}]x |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--routellm", type=Path, default=None)
    parser.add_argument("--arena", type=Path, default=None)
    parser.add_argument("--embeddings", type=Path, default=rd.DEFAULT_CACHE)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--sizes", default="50,100,200,400,800,1600,3200,6400")
    parser.add_argument("--tenants", default=",".join(TENANTS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:
        prompts = public_prompts(args.routellm, args.arena)
    except routellm.DataMissingError as exc:
        print(f"bench/router_tenant.py skipped: {exc}")
        return 0
    started = time.perf_counter()
    registry = ModelRegistry.load()
    emb = rd.embeddings(prompts, args.embeddings)
    dense = rd.dense(prompts)
    rng = np.random.default_rng(0)
    sizes = [int(s) for s in args.sizes.split(",")]
    tenants = {
        held: tenant_curve(held, prompts, emb, dense, sizes, registry, args.bootstrap, rng)
        for held in args.tenants.split(",")
    }
    report = {
        "benchmark": "router_tenant",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": rd.machine(),
        "settings": {
            "orders": ORDERS,
            "bootstrap": args.bootstrap,
            "sizes": sizes,
            "routing_at_the_time": "public heads, the half with the larger predicted gain to "
            "the strong model",
        },
        "tenants": tenants,
        "seconds": round(time.perf_counter() - started, 1),
    }
    rd.write_results(args.out, "router_tenant", report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
