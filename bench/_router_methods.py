"""The routers compared by ``bench/router.py``, RouteLLM's metrics, bootstrap intervals, the
many-model benchmark and decision latency."""

from __future__ import annotations

import itertools
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from somaagent.llm.learned.features import featurize
from somaagent.llm.learned.fitting import STRONG, design, fit_head
from somaagent.llm.learned.quality import EVIDENCE_PUBLIC
from somaagent.llm.learned.train import TrainConfig, fit, matrix_of

TARGET = 0.95
ROUTELLM_PRICE_RATIO = 0.24 / 24.7


# -- metrics ---------------------------------------------------------------------------------


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
    return {
        "apgr": float(np.trapezoid(pgr, share)),
        "cost_ratio_at_95": float(cs.sum() / c[best]),
        "strong_calls_at_95": float(share[best]),
        "calls_ratio_at_95_routellm_prices": float(
            1.0 / (share[best] + (1 - share[best]) * ROUTELLM_PRICE_RATIO)
        ),
    }


def random_metrics(
    weak: np.ndarray, strong: np.ndarray, cw: np.ndarray, cs: np.ndarray
) -> dict[str, float]:
    """Random routing in expectation: quality and cost linear in the strong-call share."""
    qw, qs = weak.mean(), strong.mean()
    share = min(1.0, max(0.0, (TARGET * qs - qw) / (qs - qw)))
    spent = cw.sum() + share * (cs.sum() - cw.sum())
    return {
        "apgr": 0.5,
        "cost_ratio_at_95": float(cs.sum() / spent),
        "strong_calls_at_95": share,
        "calls_ratio_at_95_routellm_prices": 1.0 / (share + (1 - share) * ROUTELLM_PRICE_RATIO),
    }


def oracle_order(
    weak: np.ndarray, strong: np.ndarray, cw: np.ndarray, cs: np.ndarray
) -> np.ndarray:
    """Strong first where it gains most per extra dollar."""
    gain_per_dollar = (strong - weak) / np.maximum(cs - cw, 1e-12)
    return np.lexsort((-gain_per_dollar, -(strong > weak).astype(float)))


def with_intervals(
    score: np.ndarray,
    weak: np.ndarray,
    strong: np.ndarray,
    cw: np.ndarray,
    cs: np.ndarray,
    reps: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """:func:`metrics` of routing by ``score``, with percentile-bootstrap 95% intervals."""
    point = metrics(np.argsort(-score, kind="stable"), weak, strong, cw, cs)
    samples: dict[str, list[float]] = {k: [] for k in ("apgr", "cost_ratio_at_95")}
    n = len(score)
    for _ in range(reps):
        i = rng.integers(0, n, n)
        if strong[i].mean() <= weak[i].mean():
            continue  # no gap to recover in this resample
        m = metrics(np.argsort(-score[i], kind="stable"), weak[i], strong[i], cw[i], cs[i])
        for k in samples:
            samples[k].append(m[k])
    out: dict[str, Any] = {k: round(v, 4) for k, v in point.items()}
    for k, values in samples.items():
        out[f"{k}_ci95"] = [round(float(np.percentile(values, q)), 4) for q in (2.5, 97.5)]
    return out


def apgr(score: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> float:
    order = np.argsort(-score, kind="stable")
    n = len(order)
    q = (weak.sum() + np.concatenate([[0.0], np.cumsum(strong[order] - weak[order])])) / n
    return float(
        np.trapezoid((q - weak.mean()) / (strong.mean() - weak.mean()), np.arange(n + 1) / n)
    )


def balanced(ds: np.ndarray) -> np.ndarray:
    w = np.zeros(len(ds))
    for name in set(ds.tolist()):
        w[ds == name] = 1.0 / (ds == name).sum()
    return w


# -- the routers -----------------------------------------------------------------------------


@dataclass
class Inputs:
    """The two-model prompts' features and labels."""

    texts: list[str]
    dense: np.ndarray
    emb: np.ndarray
    x: np.ndarray
    unit: np.ndarray
    weak: np.ndarray = field(default_factory=lambda: np.zeros(0))
    strong: np.ndarray = field(default_factory=lambda: np.zeros(0))
    words: Any = None

    @classmethod
    def build(cls, texts: list[str], dense: np.ndarray, emb: np.ndarray) -> Inputs:
        x, _, _ = design(dense, emb)
        unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        return cls(texts, dense, emb, x, unit)


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    grid: list[dict[str, Any]]
    fit_predict: Callable[[np.ndarray, np.ndarray, Inputs, dict[str, Any]], np.ndarray]


def _ds_weights(train: np.ndarray, ds: np.ndarray) -> np.ndarray:
    return balanced(ds[train])


_DS: dict[str, np.ndarray] = {}


def _heads(
    train: np.ndarray, test: np.ndarray, inp: Inputs, s: dict[str, Any], cols: slice = slice(None)
) -> np.ndarray:
    w = balanced(_DS["ds"][train])
    x = inp.x[:, cols]
    weak = fit_head(x[train], inp.weak[train], w, s["alpha"])
    strong = fit_head(x[train], inp.strong[train], w, s["alpha"])
    xt = x[test]
    return (xt @ np.array(strong.weights) + strong.bias) - (xt @ np.array(weak.weights) + weak.bias)


def _cheap(train: np.ndarray, test: np.ndarray, inp: Inputs, s: dict[str, Any]) -> np.ndarray:
    return _heads(train, test, inp, s, slice(0, inp.dense.shape[1]))


def _knn(train: np.ndarray, test: np.ndarray, inp: Inputs, s: dict[str, Any]) -> np.ndarray:
    k = min(s["k"], int(train.sum()) - 1)
    xt, xq = inp.unit[train], inp.unit[test]
    gain = (inp.strong - inp.weak)[train]
    bw = balanced(_DS["ds"][train])
    out = np.empty(len(xq))
    for a in range(0, len(xq), 2048):
        sim = xq[a : a + 2048] @ xt.T
        top = np.argpartition(-sim, k, axis=1)[:, :k]
        ts = np.take_along_axis(sim, top, 1)
        wt = np.exp((ts - ts.max(1, keepdims=True)) / s["tau"]) * bw[top]
        out[a : a + 2048] = (wt * gain[top]).sum(1) / wt.sum(1)
    return out


def _mf(train: np.ndarray, test: np.ndarray, inp: Inputs, s: dict[str, Any]) -> np.ndarray:
    """s(m, q) = b_m + v_m . (P x_q), logistic on the soft labels of both models."""
    idx = np.nonzero(train)[0]
    ds = _DS["ds"]
    rng = np.random.default_rng(0)
    mmlu = idx[ds[idx] == "mmlu"]
    if len(mmlu) > 3000:  # the slow one: train on a sample of MMLU
        keep = set(rng.choice(mmlu, 3000, replace=False).tolist())
        idx = np.array([i for i in idx if ds[i] != "mmlu" or i in keep])
    x = inp.x[idx]
    y = np.stack([inp.weak[idx], inp.strong[idx]], 1)
    bw = balanced(ds[idx])
    bw = bw / bw.sum()
    r, d = s["rank"], x.shape[1]
    params = [rng.normal(0, 0.1, (d, r)), rng.normal(0, 0.1, (2, r)), np.zeros(2)]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    for t in range(1, s["steps"] + 1):
        p_, v_, b_ = params
        h = x @ p_
        z = 1 / (1 + np.exp(-(h @ v_.T + b_)))
        res = (z - y) * bw[:, None]
        grads = [x.T @ (res @ v_) + s["l2"] * p_, res.T @ h + s["l2"] * v_, res.sum(0)]
        for i, g in enumerate(grads):
            m1[i] = 0.9 * m1[i] + 0.1 * g
            m2[i] = 0.999 * m2[i] + 0.001 * g * g
            params[i] -= 0.02 * (m1[i] / (1 - 0.9**t)) / (np.sqrt(m2[i] / (1 - 0.999**t)) + 1e-8)
    p_, v_, b_ = params
    z = 1 / (1 + np.exp(-(inp.x[test] @ p_ @ v_.T + b_)))
    return z[:, 1] - z[:, 0]  # type: ignore[no-any-return]


def _words(train: np.ndarray, test: np.ndarray, inp: Inputs, s: dict[str, Any]) -> np.ndarray:
    config = TrainConfig()
    if inp.words is None:
        inp.words = [
            featurize([{"role": "user", "content": t}], hash_bits=config.hash_bits)
            for t in inp.texts
        ]
    idx = np.nonzero(train)[0]
    feats = [inp.words[i] for i in idx]
    matrix = matrix_of(feats, config.hash_bits)
    w = balanced(_DS["ds"][idx])
    out = []
    for y in (inp.weak[idx], inp.strong[idx]):
        head = fit(matrix, list(y), list(w), config)
        hashed = np.array(head.hashed)
        preds = []
        for i in np.nonzero(test)[0]:
            f = inp.words[i]
            z = head.bias + f.scale * hashed[list(f.hashed)].sum() + np.dot(head.dense, f.dense)
            preds.append(1 / (1 + np.exp(-z)))
        out.append(np.array(preds))
    return out[1] - out[0]  # type: ignore[no-any-return]


ALPHAS = [{"alpha": a} for a in (0.01, 0.1, 1.0, 10.0)]
METHODS = {
    "heads": Method("heads", "linear heads, dense + MiniLM (shipped)", ALPHAS, _heads),
    "knn": Method(
        "knn",
        "similarity-weighted kNN, MiniLM",
        [{"k": k, "tau": t} for k in (20, 100, 400) for t in (0.02, 0.1)],
        _knn,
    ),
    "mf": Method(
        "mf",
        "matrix factorisation (RouteLLM mf style), rank 16",
        [{"rank": 16, "l2": 0.01, "steps": 200}],
        _mf,
    ),
    "words": Method("words", "hashed-word heads (previous artifact's method)", [{}], _words),
    "cheap": Method("cheap", "linear heads, dense features only", ALPHAS, _cheap),
}


def select(method: Method, train: np.ndarray, ds: np.ndarray, inp: Inputs) -> dict[str, Any]:
    """The grid entry with the best mean APGR over leave-one-dataset-out inside ``train``."""
    _DS["ds"] = ds
    if len(method.grid) == 1:
        return method.grid[0]
    names = sorted(set(ds[train].tolist()))
    best, chosen = -np.inf, method.grid[0]
    for settings in method.grid:
        found = []
        for inner in names:
            te = train & (ds == inner)
            tr = train & (ds != inner)
            found.append(
                apgr(method.fit_predict(tr, te, inp, settings), inp.weak[te], inp.strong[te])
            )
        if np.mean(found) > best:
            best, chosen = float(np.mean(found)), settings
    return chosen


# -- many models on arena-bench-v1 -----------------------------------------------------------


def many_models(
    prompts: Sequence[Any],
    emb: np.ndarray,
    dense: np.ndarray,
    alpha: dict[str, Any],
    rd: Any,
    registry: Any,
    reps: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """The router among arena-bench-v1's 15 models on held-out prompts; see the module doc."""
    x, _, _ = design(dense, emb)
    ds = np.array([p.dataset for p in prompts])
    arena_idx = np.nonzero(ds == "arena")[0]
    models = sorted({m for i in arena_idx for m in prompts[i].scores})
    full = [i for i in arena_idx if all(m in prompts[i].scores for m in models)]
    # prices: the registry's where the model is in it, else the benchmark's table
    from somaagent.llm.learned.arena import REGISTRY_NAMES

    prices = {}
    for m in models:
        if m in REGISTRY_NAMES:
            spec = registry.get(REGISTRY_NAMES[m])
            prices[m] = (spec.input_cost_per_mtok, spec.output_cost_per_mtok)
        else:
            prices[m] = rd.ARENA_PRICES[m]
    q = np.array([[prompts[i].scores[m] for m in models] for i in full])
    c = np.array([[rd.arena_cost(prompts[i].prompt, prices[m]) for m in models] for i in full])
    fold = np.array([int(rd.key(prompts[i].prompt)[:8], 16) % 5 for i in full])
    pred = np.zeros_like(q)
    for f in range(5):
        test_rows = [full[j] for j in np.nonzero(fold == f)[0]]
        train_mask = np.ones(len(prompts), dtype=bool)
        train_mask[test_rows] = False
        for k, m in enumerate(models):
            rows = [i for i in np.nonzero(train_mask)[0] if m in prompts[i].scores]
            y = np.array([prompts[i].scores[m] for i in rows])
            head = fit_head(x[rows], y, balanced(ds[rows]), alpha["alpha"])
            pred[fold == f, k] = x[test_rows] @ np.array(head.weights) + head.bias
    best_model = models[int(np.argmax(q.mean(0)))]
    ref = models.index(STRONG)
    target = TARGET * q[:, ref].mean()
    n = len(full)

    def router(margin: float) -> np.ndarray:
        ok = pred >= pred.max(1, keepdims=True) - margin
        return np.argmin(np.where(ok, c, np.inf), 1)  # type: ignore[no-any-return]

    margins = np.linspace(0, 1, 401)
    curve_pts = []
    for margin in margins:
        pick = router(margin)
        curve_pts.append(
            (float(q[np.arange(n), pick].mean()), float(c[np.arange(n), pick].sum()), float(margin))
        )
    reach = [p for p in curve_pts if p[0] >= target - 1e-12]
    router_pt = min(reach, key=lambda p: p[1]) if reach else None
    pick = router(router_pt[2]) if router_pt else None
    singles = {m: (float(q[:, k].mean()), float(c[:, k].sum())) for k, m in enumerate(models)}
    mix = None
    for a, b in itertools.combinations(models, 2):
        (qa, ca), (qb, cb) = singles[a], singles[b]
        for share in np.linspace(0, 1, 1001):
            qq, cc = share * qa + (1 - share) * qb, share * ca + (1 - share) * cb
            if qq >= target - 1e-12 and (mix is None or cc < mix["cost_usd"]):
                mix = {
                    "models": [a, b],
                    "share_first": round(float(share), 3),
                    "quality": round(qq, 4),
                    "cost_usd": round(cc, 4),
                }
    # oracle: per prompt the cheapest model reaching a per-prompt bar, the bar swept
    oracle = None
    for lam in np.linspace(0, 200, 801):
        opick = np.argmax(q - lam * c, 1)
        qq, cc = q[np.arange(n), opick].mean(), c[np.arange(n), opick].sum()
        if qq >= target - 1e-12 and (oracle is None or cc < oracle["cost_usd"]):
            oracle = {"quality": round(float(qq), 4), "cost_usd": round(float(cc), 4)}
    cheapest = min(models, key=lambda m: singles[m][1])
    out: dict[str, Any] = {
        "prompts": n,
        "models": len(models),
        "target": f"95% of {STRONG}'s mean score ({target:.4f})",
        "always_best": {
            "model": best_model,
            "quality": round(singles[best_model][0], 4),
            "cost_usd": round(singles[best_model][1], 4),
        },
        "always_strong": {
            "model": STRONG,
            "quality": round(singles[STRONG][0], 4),
            "cost_usd": round(singles[STRONG][1], 4),
        },
        "always_cheapest": {
            "model": cheapest,
            "quality": round(singles[cheapest][0], 4),
            "cost_usd": round(singles[cheapest][1], 4),
        },
        "random": {
            "quality": round(float(q.mean()), 4),
            "cost_usd": round(float(c.mean(1).sum()), 4),
        },
        "oracle": oracle,
        "best_static_mix": mix,
        "prices_per_mtok": prices,
    }
    if router_pt is not None and pick is not None:
        boot_q, boot_c = [], []
        for _ in range(reps):
            i = rng.integers(0, n, n)
            boot_q.append(q[i, pick[i]].mean() / q[i, ref].mean())
            boot_c.append(c[i, ref].sum() / c[i, pick[i]].sum())
        out["router"] = {
            "quality": round(router_pt[0], 4),
            "cost_usd": round(router_pt[1], 4),
            "margin": router_pt[2],
            "quality_vs_strong_ci95": [
                round(float(np.percentile(boot_q, p)), 4) for p in (2.5, 97.5)
            ],
            "cost_ratio_to_strong_ci95": [
                round(float(np.percentile(boot_c, p)), 4) for p in (2.5, 97.5)
            ],
            "models_used": {models[k]: int((pick == k).sum()) for k in np.unique(pick)},
        }
    out["curve"] = [(round(a, 4), round(b, 4)) for a, b, _ in curve_pts[::20]]
    return out


# -- latency ---------------------------------------------------------------------------------


def decision_latency(registry: Any, texts: Sequence[str], sample: int, rd: Any) -> dict[str, Any]:
    """Process-CPU and wall milliseconds of ``Router.decide`` with the shipped heads, the
    embedding cached and not (a fresh text each time; the embedding is the product's MiniLM,
    one ONNX Runtime thread, called as the gateway calls it: ``embed_sync`` in the deciding
    thread; process CPU time counts the runtime's threads too)."""
    from somaagent.llm.router import Router

    embedder, _ = rd.local_embedder(threads=1)
    router = Router(registry, embedder=embedder.embed_sync)
    router.warm_up()
    picked = random.Random(0).sample(list(texts), min(sample, len(texts)))
    out: dict[str, Any] = {}
    for label in ("uncached", "cached"):
        wall, cpu = [], []
        for t in picked:
            msgs = [{"role": "user", "content": t}]
            w0, c0 = time.perf_counter(), time.process_time()
            decision = router.decide(msgs)  # type: ignore[arg-type]
            cpu.append((time.process_time() - c0) * 1000.0)
            wall.append((time.perf_counter() - w0) * 1000.0)
            assert decision.estimate.evidence == EVIDENCE_PUBLIC, decision.reason
        out[label] = _percentiles(wall, cpu)
    return out


def _percentiles(wall: list[float], cpu: list[float]) -> dict[str, float]:
    def p(values: list[float], q: float) -> float:
        values = sorted(values)
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {
        "p50_ms": round(statistics.median(wall), 3),
        "p99_ms": p(wall, 0.99),
        "cpu_p50_ms": round(statistics.median(cpu), 3),
        "cpu_p99_ms": p(cpu, 0.99),
        "n": len(wall),
    }
