"""The embedding quality heads: fitting on the vendored public sample, the artifact, the
router's injected embedder and its cache, evidence and confidence in the reasons, and every
fallback (no artifact, a corrupt one, an embedder that fails) said in the reason, never an
error."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from somaagent.llm.learned import arena
from somaagent.llm.learned import data as routellm
from somaagent.llm.learned.embedding import EmbeddingCache
from somaagent.llm.learned.features import dense_features
from somaagent.llm.learned.fitting import (
    STRONG,
    WEAK,
    build_heads,
    dataset_weights,
    fit_head,
    public_prompts,
)
from somaagent.llm.learned.heads import DEFAULT_HEADS, Head, QualityHeads
from somaagent.llm.learned.quality import EVIDENCE_PRIOR, EVIDENCE_PUBLIC, EVIDENCE_TENANT
from somaagent.llm.registry import ModelRegistry
from somaagent.llm.router import Router

DATA = Path(__file__).resolve().parents[1] / "data"
ROUTELLM = DATA / "routellm"
ARENA = DATA / "arena-bench-v1"
GSM = (
    "A store sells pencils at 3 for $1.20 and pens at $2.35 each. Maria buys 18 pencils and "
    "some pens, pays with a $50 bill and gets $21.35 back. How many pens did she buy?"
)


def hashed_embedder(texts: Sequence[str]) -> list[list[float]]:
    """A deterministic 384-d bag of hashed words: a real (if crude) embedding, fast to run."""
    out = []
    for text in texts:
        v = [0.0] * 384
        for word in text.lower().split():
            v[zlib.crc32(word.encode()) % 384] += 1.0
        out.append(v if any(v) else [1.0] + [0.0] * 383)
    return out


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def sample_heads() -> QualityHeads:
    prompts = public_prompts(ROUTELLM, ARENA)
    dense = np.array([dense_features(user(p.prompt))[0] for p in prompts])
    emb = np.array(hashed_embedder([p.prompt for p in prompts]))
    return build_heads(
        prompts,
        dense,
        emb,
        alpha=1.0,
        gain_sd=0.3,
        embedding_model="hashed words (tests)",
        training={"data": "tests/data sample"},
    )


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry.load()


def test_the_vendored_sample_loads_without_contaminated_prompts() -> None:
    loaded = routellm.load(ROUTELLM)
    counts = {d: sum(1 for o in loaded.outcomes if o.dataset == d) for d in routellm.DATASETS}
    assert loaded.contaminated["gsm8k"] >= 1  # the sample keeps the contaminated rows to drop
    assert counts["gsm8k"] == 245 - loaded.contaminated["gsm8k"]
    assert counts["mmlu"] == 300 - loaded.contaminated["mmlu"]
    assert counts["mt_bench"] == 72
    prompts = arena.load(ARENA)
    assert len(prompts) == 120
    assert {m for p in prompts for m in p.scores} == set(arena.ARENA_MODELS)
    assert all(0.0 <= s <= 1.0 for p in prompts for s in p.scores.values())


def test_missing_arena_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(routellm.DataMissingError, match=arena.ENV_VAR):
        arena.load(tmp_path)


def test_ridge_recovers_a_linear_truth_and_a_prior_pulls() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = 0.5 + x @ np.array([0.1, -0.2, 0.0, 0.05, 0.0])
    head = fit_head(x, y, np.ones(400), alpha=1e-6)
    assert head.bias == pytest.approx(0.5, abs=1e-6)
    assert head.weights[1] == pytest.approx(-0.2, abs=1e-6)
    prior = Head(bias=0.0, weights=(1.0, 1.0, 1.0, 1.0, 1.0))
    pulled = fit_head(x, y, np.ones(400), alpha=1e3, prior=prior)
    assert all(w == pytest.approx(1.0, abs=0.01) for w in pulled.weights)
    assert dataset_weights(["a", "a", "b"]).tolist() == [0.5, 0.5, 1.0]


def test_heads_from_the_sample_round_trip_and_map_registry_models(
    sample_heads: QualityHeads, tmp_path: Path
) -> None:
    assert set(sample_heads.heads) == set(arena.ARENA_MODELS)  # RouteLLM's two are among them
    assert sample_heads.registry == {STRONG: "gpt-4-1106-preview", WEAK: "mixtral-8x7b"}
    path = tmp_path / "heads.json"
    path.write_text(json.dumps(sample_heads.to_dict()))
    loaded = QualityHeads.load(path)
    x = loaded.vector(dense_features(user(GSM))[0], hashed_embedder([GSM])[0])
    for model in (WEAK, STRONG):
        assert loaded.predict(x, model) == pytest.approx(
            sample_heads.predict(x, model),
            abs=2e-2,  # float16 weights
        )
    assert loaded.predict_registry(x, "gpt-4o") is None


def test_a_router_with_heads_says_public_evidence_and_confidence(
    sample_heads: QualityHeads, registry: ModelRegistry
) -> None:
    router = Router(registry, heads=sample_heads, embedder=hashed_embedder)
    decision = router.decide(user(GSM))
    assert decision.estimate.evidence == EVIDENCE_PUBLIC
    assert (
        decision.estimate.x is not None
        and len(decision.estimate.x) == len(sample_heads.dense_mean) + 384
    )
    assert decision.confidence is not None and 0.5 <= decision.confidence <= 1.0
    assert f"evidence: {EVIDENCE_PUBLIC}, confidence {decision.confidence:.2f}" in decision.reason
    by_name = {c.spec.name: c.predicted_quality for c in decision.candidates}
    assert decision.estimate.direct is not None
    assert by_name["gpt-4-1106-preview"] == decision.estimate.direct["gpt-4-1106-preview"]
    body = decision.as_dict()
    assert body["evidence"] == EVIDENCE_PUBLIC and body["confidence"] == round(
        decision.confidence, 3
    )


def test_the_embedding_is_computed_once_per_prompt(
    sample_heads: QualityHeads, registry: ModelRegistry
) -> None:
    calls: list[int] = []

    def counting(texts: Sequence[str]) -> list[list[float]]:
        calls.append(len(texts))
        return hashed_embedder(texts)

    router = Router(registry, heads=sample_heads, embedder=counting)
    for _ in range(3):
        router.decide(user(GSM))
    router.decide(user("Write a haiku about autumn."))
    assert calls == [1, 1]
    assert router.embeddings is not None and router.embeddings.hits == 2
    cache = EmbeddingCache(counting, size=1)
    cache.get("a")
    cache.get("b")
    assert "a" not in cache and "b" in cache and len(cache) == 1


def test_a_failing_embedder_falls_back_and_says_so(
    sample_heads: QualityHeads, registry: ModelRegistry
) -> None:
    def broken(texts: Sequence[str]) -> list[list[float]]:
        raise RuntimeError("onnx session lost")

    decision = Router(registry, heads=sample_heads, embedder=broken).decide(user(GSM))
    assert "fell back: the embedding quality heads failed (RuntimeError: onnx session lost)" in (
        decision.reason
    )
    assert decision.estimate.evidence != EVIDENCE_PUBLIC


def test_a_corrupt_or_missing_artifact_routes_on_priors_and_says_so(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    bad = tmp_path / "heads.json"
    bad.write_text('{"format": "somaagent.quality-heads/1", "heads": ')
    for path in (bad, tmp_path / "missing.json"):
        try:
            heads = QualityHeads.load(path)
        except Exception as exc:  # the router's own loader turns this into a note
            note = f"the quality-heads artifact is unusable ({exc})"
        else:  # pragma: no cover - the file is broken
            raise AssertionError(heads)
        router = Router(registry, heads=None, learned=None, embedder=hashed_embedder)
        router.quality.heads_note = note
        decision = router.decide(user(GSM))
        assert decision.estimate.evidence == EVIDENCE_PRIOR
        assert "fell back: the quality-heads artifact is unusable" in decision.reason
        assert decision.spec is not None


def test_low_confidence_with_min_quality_takes_the_safer_model(
    sample_heads: QualityHeads, registry: ModelRegistry
) -> None:
    router = Router(registry, heads=sample_heads, embedder=hashed_embedder)
    open_choice = router.decide(user(GSM), {"models": ["mixtral-8x7b", "gpt-4-1106-preview"]})
    q = {c.spec.name: c.predicted_quality for c in open_choice.candidates if c.eligible}
    low, high = sorted(q.values())
    # A floor just under the cheaper model's prediction: a close call.
    policy = {"models": ["mixtral-8x7b", "gpt-4-1106-preview"], "min_quality": low - 1e-3}
    decision = router.decide(user(GSM), policy)
    assert decision.confidence is not None and decision.confidence < 0.6
    best = max(q, key=lambda name: q[name])
    assert decision.spec.name == best
    assert "min_quality takes the safer, best-predicted model" in decision.reason
    assert "is the best-predicted model, taken for min_quality" in decision.reason
    passed = next(c for c in decision.candidates if c.spec.name == "mixtral-8x7b")
    assert "the call was close" in passed.why and not passed.chosen
    # Without the floor, the same close call goes to the cheaper model the bar allows.
    loose = router.decide(user(GSM), {"models": list(q), "max_quality_drop": high - low + 0.01})
    assert loose.spec.name == "mixtral-8x7b"


def test_tenant_heads_are_used_for_their_tenant_only(
    sample_heads: QualityHeads, registry: ModelRegistry
) -> None:
    width = len(sample_heads.dense_mean) + 384
    own = QualityHeads(
        heads={"mixtral-8x7b": Head(bias=0.99, weights=(0.0,) * width)},
        registry={"mixtral-8x7b": "mixtral-8x7b"},
        dense_mean=sample_heads.dense_mean,
        dense_std=sample_heads.dense_std,
        embedding_model="x",
        embedding_dim=384,
        embedding_scale=sample_heads.embedding_scale,
        gain_sd=0.05,
        evidence=EVIDENCE_TENANT,
        training={},
    )
    router = Router(
        registry,
        heads=sample_heads,
        embedder=hashed_embedder,
        tenant_heads=lambda tenant: own if tenant == "acme" else None,
    )
    pair = {"models": ["mixtral-8x7b", "gpt-4-1106-preview"]}
    mine = router.decide(user(GSM), pair, tenant="acme")
    other = router.decide(user(GSM), pair, tenant="globex")
    assert mine.estimate.evidence == EVIDENCE_TENANT
    assert other.estimate.evidence == EVIDENCE_PUBLIC
    assert mine.spec.name == "mixtral-8x7b"
    assert math.isclose(
        next(c.predicted_quality for c in mine.candidates if c.spec.name == "mixtral-8x7b"),
        0.99,
    )


def test_the_shipped_heads_load_and_are_small(registry: ModelRegistry) -> None:
    assert DEFAULT_HEADS.stat().st_size < 200_000
    heads = QualityHeads.load()
    assert heads.registry == {STRONG: "gpt-4-1106-preview", WEAK: "mixtral-8x7b"}
    assert len(heads.heads) == 15 and 0.0 < heads.gain_sd < 1.0
    assert heads.training["alpha_chosen_by"].startswith("leave-one-dataset-out")
