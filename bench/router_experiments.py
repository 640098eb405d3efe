"""Quick leave-one-dataset-out (LODO) experiments for the router's quality heads.

Not a benchmark of record (``bench/router.py`` is): a scratch harness to try ideas that might
carry over to datasets the router was not trained on, on the same data and protocol. Every
setting is chosen by LODO *inside* the training datasets (mean APGR), never on the held-out one.

Usage::

    nice -n 10 .venv/bin/python bench/router_experiments.py [--embeddings PATH] [--only a,b]

Prints, per variant, the held-out APGR on each dataset (and its bootstrap 95% interval with
``--bootstrap``) and the settings chosen for each fold. ``--in-dataset`` instead trains and
tests inside each dataset (5-fold CV), the reference for what the features can do on a dataset
whose labels the router has seen; ``--arena-reference`` routes arena-bench-v1 by the other
models' scores on each prompt.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _router_data as rd
import _router_methods as rm

from somaagent.llm.learned.fitting import STRONG, WEAK, public_prompts

DATASETS = ("gsm8k", "mmlu", "mt_bench", "arena")
Fit = Callable[[np.ndarray, np.ndarray, "Data", dict[str, Any]], np.ndarray]


class Data:
    """The two-model prompts: features, labels, dataset names."""

    def __init__(self, emb_path: Path) -> None:
        prompts = public_prompts()
        rows = [i for i, p in enumerate(prompts) if WEAK in p.scores and STRONG in p.scores]
        pair = [prompts[i] for i in rows]
        if emb_path == rd.DEFAULT_CACHE:
            emb = rd.embeddings(prompts, emb_path)[rows]
        else:
            saved = np.load(emb_path)
            stored = dict(zip(saved["keys"].tolist(), saved["vectors"], strict=True))
            emb = np.stack([stored[rd.key(p.prompt)] for p in pair]).astype(np.float64)
        self.inp = rm.Inputs.build([p.prompt for p in pair], rd.dense(pair), emb)
        self.ds = np.array([p.dataset for p in pair])
        self.weak = np.array([p.scores[WEAK] for p in pair])
        self.strong = np.array([p.scores[STRONG] for p in pair])
        self.inp.weak, self.inp.strong = self.weak, self.strong
        self.gain = self.strong - self.weak
        self.arena_mean = np.array([np.mean(list(p.scores.values())) for p in pair])
        self.x = self.inp.x
        self.n_dense = self.inp.dense.shape[1]
        rm._DS["ds"] = self.ds


def _ridge(x: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    w = w / w.sum()
    a = x.T @ (x * w[:, None])
    a[np.diag_indices_from(a)] += alpha
    return np.linalg.solve(a, x.T @ (w * y))  # type: ignore[no-any-return]


def _target(d: Data, rows: np.ndarray, how: str) -> np.ndarray:
    """The gain on ``rows``, centred within each dataset and rescaled as ``how`` says."""
    y = d.gain[rows].copy()
    for name in set(d.ds[rows].tolist()):
        m = d.ds[rows] == name
        v = y[m]
        if how == "rank":
            r = np.argsort(np.argsort(v, kind="stable"), kind="stable").astype(float)
            # ties share their mean rank
            _, inv = np.unique(v, return_inverse=True)
            r = np.bincount(inv, r) / np.bincount(inv)
            v = r[inv] / max(len(v) - 1, 1) - 0.5
        else:
            v = v - v.mean()
            if how == "std":
                v = v / (v.std() or 1.0)
        y[m] = v
    return y


def _centred(d: Data, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = x[rows].copy()
    for name in set(d.ds[rows].tolist()):
        m = d.ds[rows] == name
        out[m] -= out[m].mean(0)
    return out


def fe(train: np.ndarray, test: np.ndarray, d: Data, s: dict[str, Any]) -> np.ndarray:
    """Within-dataset ("fixed effects") ridge on the gain: features and target centred per
    training dataset, so only within-dataset differences are learned (a held-out dataset is
    ranked within itself, so its own offset does not matter)."""
    x = _features(d, train, s)
    rows = np.nonzero(train)[0]
    xc = _centred(d, x, rows) if s.get("centre_x", True) else x[rows]
    y = _target(d, rows, s.get("y", "raw"))
    beta = _ridge(xc, y, rm.balanced(d.ds[rows]), s["alpha"])
    return x[test] @ beta  # type: ignore[no-any-return]


def _features(d: Data, train: np.ndarray, s: dict[str, Any]) -> np.ndarray:
    k = s.get("pca")
    if k is None:
        return d.x
    emb = d.x[:, d.n_dense :]
    mu = emb[train].mean(0)
    _, _, vt = np.linalg.svd(emb[train] - mu, full_matrices=False)
    proj = (emb - mu) @ vt[:k].T
    proj /= proj[train].std(0)
    return np.hstack([d.x[:, : d.n_dense], s.get("pca_scale", 1.0) * proj])


def heads(train: np.ndarray, test: np.ndarray, d: Data, s: dict[str, Any]) -> np.ndarray:
    return rm._heads(train, test, d.inp, s)


def scaled(train: np.ndarray, test: np.ndarray, d: Data, s: dict[str, Any]) -> np.ndarray:
    """The shipped heads with the embedding block's weight (against the dense block) as a
    setting, not fixed at 3."""
    x = d.x.copy()
    x[:, d.n_dense :] *= s["scale"] / 3.0
    rows = np.nonzero(train)[0]
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = rm.balanced(d.ds[rows])
    w = w / w.sum()
    a = xb[rows].T @ (xb[rows] * w[:, None])
    pen = np.full(xb.shape[1], s["alpha"])
    pen[-1] = 0.0
    a[np.diag_indices_from(a)] += pen
    beta = np.linalg.solve(a, xb[rows].T @ (w * d.gain[rows]))
    return xb[test] @ beta  # type: ignore[no-any-return]


def cheap(train: np.ndarray, test: np.ndarray, d: Data, s: dict[str, Any]) -> np.ndarray:
    return rm._cheap(train, test, d.inp, s)


def knn(train: np.ndarray, test: np.ndarray, d: Data, s: dict[str, Any]) -> np.ndarray:
    return rm._knn(train, test, d.inp, s)


def knn_within(train: np.ndarray, test: np.ndarray, d: Data, s: dict[str, Any]) -> np.ndarray:
    """The kNN over the gain centred (or standardised) within each training dataset, so a
    neighbour's dataset base rate does not decide the ranking."""
    rows = np.nonzero(train)[0]
    k = min(s["k"], len(rows) - 1)
    gain = _target(d, rows, s["y"])
    xt, xq = d.inp.unit[rows], d.inp.unit[test]
    bw = rm.balanced(d.ds[rows])
    out = np.empty(len(xq))
    for a in range(0, len(xq), 2048):
        sim = xq[a : a + 2048] @ xt.T
        top = np.argpartition(-sim, k, axis=1)[:, :k]
        ts = np.take_along_axis(sim, top, 1)
        wt = np.exp((ts - ts.max(1, keepdims=True)) / s["tau"]) * bw[top]
        out[a : a + 2048] = (wt * gain[top]).sum(1) / wt.sum(1)
    return out


def arena_difficulty(train: np.ndarray, test: np.ndarray, d: Data, s: dict[str, Any]) -> np.ndarray:
    """The shipped heads plus one feature: a ridge head's prediction of the prompt's mean
    score over arena-bench-v1's 15 models (fitted on the arena prompts in training only;
    without them, the plain heads)."""
    if not (train & (d.ds == "arena")).any():
        return heads(train, test, d, s)
    arena_rows = np.nonzero(train & (d.ds == "arena"))[0]
    x = d.x
    xb = np.hstack([x, np.ones((len(x), 1))])
    y = d.arena_mean[arena_rows]
    a = xb[arena_rows].T @ xb[arena_rows] / len(arena_rows)
    pen = np.full(xb.shape[1], s["alpha_d"])
    pen[-1] = 0.0
    a[np.diag_indices_from(a)] += pen
    beta = np.linalg.solve(a, xb[arena_rows].T @ y / len(arena_rows))
    diff = xb @ beta
    # arena's own training prompts: out-of-fold, so the feature is as noisy there as elsewhere
    fold = arena_rows % 5
    for f in range(5):
        tr, te = arena_rows[fold != f], arena_rows[fold == f]
        a = xb[tr].T @ xb[tr] / len(tr)
        a[np.diag_indices_from(a)] += pen
        b = np.linalg.solve(a, xb[tr].T @ d.arena_mean[tr] / len(tr))
        diff[te] = xb[te] @ b
    diff = (diff - diff[train].mean()) / (diff[train].std() or 1.0)
    x2 = np.hstack([x, s["w"] * diff[:, None]])
    w = rm.balanced(d.ds[train])
    rows = np.nonzero(train)[0]
    xb2 = np.hstack([x2, np.ones((len(x2), 1))])
    ww = w / w.sum()
    a = xb2[rows].T @ (xb2[rows] * ww[:, None])
    pen = np.full(xb2.shape[1], s["alpha"])
    pen[-1] = 0.0
    a[np.diag_indices_from(a)] += pen
    beta2 = np.linalg.solve(a, xb2[rows].T @ (ww * d.gain[rows]))
    return xb2[test] @ beta2  # type: ignore[no-any-return]


def _z(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / (v.std() or 1.0)


def ensemble(train: np.ndarray, test: np.ndarray, d: Data, s: dict[str, Any]) -> np.ndarray:
    """z-scored average of the within-dataset heads and the kNN."""
    a = fe(train, test, d, {"alpha": s["alpha"], "y": s["y"]})
    b = knn(train, test, d, {"k": s["k"], "tau": 0.1})
    return _z(a) + s["w"] * _z(b)


def logistic(train: np.ndarray, test: np.ndarray, d: Data, s: dict[str, Any]) -> np.ndarray:
    """Weighted logistic regression of "strong beats weak" (ties dropped), features centred
    within each training dataset."""
    rows = np.nonzero(train)[0]
    keep = rows[d.gain[rows] != 0]
    xc = _centred(d, d.x, keep)
    y = (d.gain[keep] > 0).astype(float)
    w = rm.balanced(d.ds[keep])
    w = w / w.sum()
    beta = np.zeros(xc.shape[1])
    b = 0.0
    for _ in range(60):  # Newton steps
        z = xc @ beta + b
        p = 1 / (1 + np.exp(-z))
        r = w * (p - y)
        g = np.append(xc.T @ r + s["alpha"] * beta, r.sum())
        h_w = w * p * (1 - p)
        xb = np.hstack([xc, np.ones((len(xc), 1))])
        h = xb.T @ (xb * h_w[:, None])
        h[np.diag_indices(xc.shape[1])] += s["alpha"]
        step = np.linalg.solve(h, g)
        beta -= step[:-1]
        b -= step[-1]
        if np.abs(step).max() < 1e-6:
            break
    return d.x[test] @ beta  # type: ignore[no-any-return]


def _weighted_ridge(d: Data, rows: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    """Ridge of the gain on the features plus an unpenalised intercept; coefficients."""
    xb = np.hstack([d.x, np.ones((len(d.x), 1))])
    w = w / w.sum()
    a = xb[rows].T @ (xb[rows] * w[:, None])
    pen = np.full(xb.shape[1], alpha)
    pen[-1] = 0.0
    a[np.diag_indices_from(a)] += pen
    return np.linalg.solve(a, xb[rows].T @ (w * d.gain[rows]))


_DOMAIN: dict[tuple[bytes, bytes, float], np.ndarray] = {}


def domain_log_odds(train: np.ndarray, test: np.ndarray, d: Data, l2: float) -> np.ndarray:
    """Per prompt, the log-odds that it comes from the test prompts rather than the training
    ones: an L2 logistic domain classifier on the standardised features, the two sides
    weighted equally, fitted by Newton steps. It reads the test *prompts*, never their
    labels."""
    key = (train.tobytes(), test.tobytes(), l2)
    if key in _DOMAIN:
        return _DOMAIN[key]
    rows = np.nonzero(train | test)[0]
    mu, sd = d.x[rows].mean(0), d.x[rows].std(0) + 1e-6
    xs = (d.x - mu) / sd
    xb = np.hstack([xs[rows], np.ones((len(rows), 1))])
    y = test[rows].astype(float)
    w = np.where(y > 0, 0.5 / y.sum(), 0.5 / (1 - y).sum())
    beta = np.zeros(xb.shape[1])
    for _ in range(25):
        p = 1 / (1 + np.exp(-np.clip(xb @ beta, -30, 30)))
        g = xb.T @ (w * (p - y))
        g[:-1] += l2 * beta[:-1]
        h = xb.T @ (xb * (w * p * (1 - p))[:, None])
        h[np.diag_indices(xb.shape[1] - 1)] += l2
        step = np.linalg.solve(h + 1e-9 * np.eye(len(h)), g)
        beta -= step
        if np.abs(step).max() < 1e-6:
            break
    out = xs @ beta[:-1] + beta[-1]
    _DOMAIN[key] = out
    return out  # type: ignore[no-any-return]


def importance(train: np.ndarray, test: np.ndarray, d: Data, s: dict[str, Any]) -> np.ndarray:
    """Covariate-shift reweighting: the gain's ridge with each training prompt's dataset weight
    times (p(test | x) / p(train | x)) ** gamma, clipped at e**5. Transductive: it needs the
    test prompts (not their labels) before training, as a router adapting the public data to a
    tenant's recorded traffic would; gamma 0 is the plain ridge."""
    z = domain_log_odds(train, test, d, s["l2"])
    rows = np.nonzero(train)[0]
    w = rm.balanced(d.ds[rows]) * np.exp(s["gamma"] * np.clip(z[rows], -5.0, 5.0))
    beta = _weighted_ridge(d, rows, w, s["alpha"])
    return np.hstack([d.x[test], np.ones((int(test.sum()), 1))]) @ beta  # type: ignore[no-any-return]


def mlp(train: np.ndarray, test: np.ndarray, d: Data, s: dict[str, Any]) -> np.ndarray:
    """One ReLU hidden layer over the standardised features, two sigmoid outputs (the weak
    and the strong model's quality), dataset-balanced cross-entropy, Adam, full batch; MMLU
    sampled to 4,000 prompts. Predicted gain: strong minus weak."""
    rng = np.random.default_rng(0)
    idx = np.nonzero(train)[0]
    mmlu = idx[d.ds[idx] == "mmlu"]
    if len(mmlu) > 4000:
        keep = set(rng.choice(mmlu, 4000, replace=False).tolist())
        idx = np.array([i for i in idx if d.ds[i] != "mmlu" or i in keep])
    mu, sd = d.x[idx].mean(0), d.x[idx].std(0) + 1e-6
    xs = (d.x - mu) / sd
    x, y = xs[idx], np.stack([d.weak[idx], d.strong[idx]], 1)
    bw = rm.balanced(d.ds[idx])
    bw = bw / bw.sum()
    n_in, hidden = x.shape[1], s["hidden"]
    params = [
        rng.normal(0, 1 / np.sqrt(n_in), (n_in, hidden)),
        np.zeros(hidden),
        rng.normal(0, 1 / np.sqrt(hidden), (hidden, 2)),
        np.zeros(2),
    ]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    for t in range(1, s["steps"] + 1):
        w1, b1, w2, b2 = params
        a = x @ w1 + b1
        r = np.maximum(a, 0)
        g = (1 / (1 + np.exp(-(r @ w2 + b2))) - y) * bw[:, None]
        gr = g @ w2.T * (a > 0)
        grads = [x.T @ gr + s["wd"] * w1, gr.sum(0), r.T @ g + s["wd"] * w2, g.sum(0)]
        for i, gg in enumerate(grads):
            m1[i] = 0.9 * m1[i] + 0.1 * gg
            m2[i] = 0.999 * m2[i] + 0.001 * gg * gg
            params[i] -= 0.003 * (m1[i] / (1 - 0.9**t)) / (np.sqrt(m2[i] / (1 - 0.999**t)) + 1e-8)
    w1, b1, w2, b2 = params
    p = 1 / (1 + np.exp(-(np.maximum(xs[test] @ w1 + b1, 0) @ w2 + b2)))
    return p[:, 1] - p[:, 0]  # type: ignore[no-any-return]


def per_dataset(train: np.ndarray, test: np.ndarray, d: Data, s: dict[str, Any]) -> np.ndarray:
    """The mean of ridge coefficient vectors fitted inside each training dataset on its own
    (gain centred, or standardised with ``std``); with ``agree``, a coefficient whose sign
    differs between the datasets is dropped (an "invariant" reading of the features)."""
    rows = np.nonzero(train)[0]
    betas = []
    for name in sorted(set(d.ds[rows].tolist())):
        r = rows[d.ds[rows] == name]
        y = d.gain[r] - d.gain[r].mean()
        if s["std"]:
            y = y / (y.std() or 1.0)
        betas.append(_ridge(d.x[r] - d.x[r].mean(0), y, np.ones(len(r)), s["alpha"]))
    beta = np.mean(betas, 0)
    if s.get("agree"):
        signs = np.sign(np.array(betas))
        beta = np.where(np.all(signs == signs[0], 0), beta, 0.0)
    return d.x[test] @ beta  # type: ignore[no-any-return]


def sign_agreement(train: np.ndarray, test: np.ndarray, d: Data, s: dict[str, Any]) -> np.ndarray:
    """The within-dataset ridge on the dense features whose correlation with the gain has the
    same sign in every training dataset, plus the embedding."""
    rows = np.nonzero(train)[0]
    signs = []
    for name in sorted(set(d.ds[rows].tolist())):
        r = rows[d.ds[rows] == name]
        dense = d.x[r, : d.n_dense] - d.x[r, : d.n_dense].mean(0)
        signs.append(np.sign(dense.T @ (d.gain[r] - d.gain[r].mean())))
    agree = np.all(np.array(signs) == signs[0], 0) & (signs[0] != 0)
    keep = np.concatenate([agree, np.ones(d.x.shape[1] - d.n_dense, dtype=bool)])
    x = d.x[:, keep]
    beta = _ridge(
        _centred(d, x, rows), _target(d, rows, "raw"), rm.balanced(d.ds[rows]), s["alpha"]
    )
    return x[test] @ beta  # type: ignore[no-any-return]


ALPHAS = (0.1, 1.0, 3.0, 10.0, 30.0, 100.0)
VARIANTS: dict[str, tuple[Fit, list[dict[str, Any]]]] = {
    "heads": (heads, [{"alpha": a} for a in ALPHAS]),
    "cheap": (cheap, [{"alpha": a} for a in ALPHAS]),
    "scaled": (scaled, [{"alpha": a, "scale": c} for a in ALPHAS for c in (0.0, 1.0, 3.0, 10.0)]),
    "fe_raw": (fe, [{"alpha": a, "y": "raw"} for a in ALPHAS]),
    "fe_std": (fe, [{"alpha": a, "y": "std"} for a in ALPHAS]),
    "fe_rank": (fe, [{"alpha": a, "y": "rank"} for a in ALPHAS]),
    "fe_y": (fe, [{"alpha": a, "y": y} for a in ALPHAS for y in ("raw", "std", "rank")]),
    "std_nocentre": (fe, [{"alpha": a, "y": "std", "centre_x": False} for a in ALPHAS]),
    "fe_pca": (
        fe,
        [{"alpha": a, "y": "std", "pca": k} for a in (0.1, 1.0, 10.0) for k in (8, 32, 96)],
    ),
    "knn_within": (
        knn_within,
        [
            {"k": k, "tau": t, "y": y}
            for k in (100, 400)
            for t in (0.02, 0.1)
            for y in ("raw", "std")
        ],
    ),
    "arena_difficulty": (
        arena_difficulty,
        [
            {"alpha": a, "alpha_d": ad, "w": w}
            for a in (1.0, 10.0)
            for ad in (0.1, 1.0)
            for w in (1.0, 3.0)
        ],
    ),
    "importance": (
        importance,
        [
            {"alpha": a, "gamma": g, "l2": l2}
            for a in (1.0, 10.0, 30.0, 100.0)
            for g in (0.0, 0.5, 1.0, 2.0)
            for l2 in (0.1, 1.0)
        ],
    ),
    "mlp": (
        mlp,
        [{"hidden": 32, "wd": wd, "steps": st} for wd in (1e-3, 1e-2) for st in (150, 400)],
    ),
    "per_dataset": (
        per_dataset,
        [
            {"alpha": a, "std": st, "agree": ag}
            for a in (0.1, 1.0, 10.0, 100.0)
            for st in (False, True)
            for ag in (False, True)
        ],
    ),
    "sign_agreement": (sign_agreement, [{"alpha": a} for a in (0.1, 1.0, 10.0, 100.0)]),
    "knn": (knn, [{"k": k, "tau": t} for k in (20, 100) for t in (0.02, 0.1)]),
    "logistic": (logistic, [{"alpha": a} for a in (0.001, 0.01, 0.1)]),
    "ensemble": (
        ensemble,
        [{"alpha": 1.0, "y": "std", "k": k, "w": w} for k in (100, 400) for w in (0.5, 1.0)],
    ),
}


def apgr(d: Data, score: np.ndarray, m: np.ndarray) -> float:
    return rm.apgr(score, d.weak[m], d.strong[m])


def select(fit: Fit, grid: list[dict[str, Any]], train: np.ndarray, d: Data) -> dict[str, Any]:
    if len(grid) == 1:
        return grid[0]
    best, chosen = -np.inf, grid[0]
    for s in grid:
        found = []
        for inner in sorted(set(d.ds[train].tolist())):
            te = train & (d.ds == inner)
            tr = train & (d.ds != inner)
            found.append(apgr(d, fit(tr, te, d, s), te))
        if np.mean(found) > best:
            best, chosen = float(np.mean(found)), s
    return chosen


def _fold(d: Data, start: int) -> np.ndarray:
    return np.array([int(rd.key(t)[start : start + 8], 16) % 5 for t in d.inp.texts])


def in_dataset(fit: Fit, grid: list[dict[str, Any]], held: str, d: Data) -> np.ndarray:
    """Scores for one dataset's prompts from routers trained on *that dataset only*: 5 folds
    by prompt hash, settings by an inner 5-fold CV inside the training folds, each fold's
    scores z-scored so that fold offsets do not order the pooled ranking. What the features
    can do when the router has seen the dataset's own labels: a reference for LODO."""
    mine = d.ds == held
    outer, inner = _fold(d, 0), _fold(d, 8)
    score = np.zeros(len(d.ds))
    for f in range(5):
        te, tr = mine & (outer == f), mine & (outer != f)
        best, chosen = -np.inf, grid[0]
        for s in grid if len(grid) > 1 else []:
            found = [
                apgr(d, fit(tr & (inner != g), tr & (inner == g), d, s), tr & (inner == g))
                for g in range(5)
            ]
            if np.mean(found) > best:
                best, chosen = float(np.mean(found)), s
        sc = fit(tr, te, d, chosen)
        score[te] = (sc - sc.mean()) / (sc.std() or 1.0)
    return score[mine]  # type: ignore[no-any-return]


def arena_reference(d: Data, reps: int, rng: np.random.Generator) -> None:
    """Is the arena gain a property of the prompt at all? Route arena-bench-v1's prompts by
    what *other* models scored on them (not available at routing time: a reference for what a
    representation that knew each prompt's difficulty could reach)."""
    prompts = [p for p in public_prompts() if p.dataset == "arena"]
    models = sorted({m for p in prompts for m in p.scores})
    full = [p for p in prompts if all(m in p.scores for m in models)]
    q = np.array([[p.scores[m] for m in models] for p in full])
    weak, strong = q[:, models.index(WEAK)], q[:, models.index(STRONG)]
    others = [k for k, m in enumerate(models) if m not in (WEAK, STRONG)]
    small = [k for k, m in enumerate(models) if "7B" in m or m in ("openchat_3.5", "llama-13b")]
    rows = {
        f"the other {len(others)} models' mean score, lowest first": -q[:, others].mean(1),
        "gpt-4-0314 minus the 7B/13B models' mean": q[:, models.index("gpt-4-0314")]
        - q[:, small].mean(1),
        "gpt-4-0314 minus gpt-3.5-turbo": q[:, models.index("gpt-4-0314")]
        - q[:, models.index("gpt-3.5-turbo")],
    }
    print(f"arena-bench-v1, {len(full)} prompts scored for all {len(models)} models")
    for label, score in rows.items():
        r = rm.with_intervals(
            score, weak, strong, np.ones(len(full)), np.full(len(full), 2.0), reps, rng
        )
        print(f"  {label}: APGR {r['apgr']:.3f} {r['apgr_ci95']}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embeddings", type=Path, default=rd.DEFAULT_CACHE)
    parser.add_argument("--only", default=",".join(VARIANTS))
    parser.add_argument("--bootstrap", type=int, default=0)
    parser.add_argument(
        "--in-dataset",
        action="store_true",
        help="train and test inside each dataset (5-fold CV) instead of leaving it out",
    )
    parser.add_argument(
        "--arena-reference",
        action="store_true",
        help="route arena-bench-v1 by other models' scores (a reference) and exit",
    )
    args = parser.parse_args()
    d = Data(args.embeddings)
    rng = np.random.default_rng(0)
    if args.arena_reference:
        arena_reference(d, args.bootstrap or 1000, rng)
        return 0
    print(f"embeddings: {args.embeddings.name}" + (" (in-dataset CV)" if args.in_dataset else ""))
    for name in args.only.split(","):
        fit, grid = VARIANTS[name]
        t0 = time.perf_counter()
        row, chosen = [], {}
        for held in DATASETS:
            test = d.ds == held
            if args.in_dataset:
                score = in_dataset(fit, grid, held, d)
            else:
                s = select(fit, grid, ~test, d)
                score = fit(~test, test, d, s)
                chosen[held] = s
            if args.bootstrap:
                r = rm.with_intervals(
                    score,
                    d.weak[test],
                    d.strong[test],
                    np.ones(test.sum()),
                    np.full(test.sum(), 2.0),
                    args.bootstrap,
                    rng,
                )
                lo, hi = r["apgr_ci95"]
                row.append(f"{held} {r['apgr']:.3f} [{lo:.3f}, {hi:.3f}]")
            else:
                row.append(f"{held} {apgr(d, score, test):.3f}")
        print(
            f"{name:14s} " + "  ".join(row) + f"  ({time.perf_counter() - t0:.0f} s) {chosen}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
