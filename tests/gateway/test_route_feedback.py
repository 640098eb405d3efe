"""Tenant feedback on routed answers and training the router on it, through the real gateway
(SQLite and PostgreSQL): POST /v1/feedback (404 for an unknown id or another tenant's), POST
/v1/route/train (too little data says how much is needed; enough trains, judges on held-out
feedback and promotes only when better), GET /v1/route/report; the SDK and the CLI on top."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from somaagent.cli import main as cli_main
from somaagent.errors import NotFoundError, ValidationError
from somaagent.llm.feedback import MIN_RATED, RouteFeedback
from somaagent.llm.learned.features import dense_features
from somaagent.llm.learned.fitting import build_heads, public_prompts
from somaagent.llm.learned.quality import EVIDENCE_TENANT
from somaagent.llm.router import Router
from somaagent.sdk import AsyncClient
from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.anyio

DATA = Path(__file__).resolve().parents[1] / "data"


def hashed(texts: Sequence[str]) -> list[list[float]]:
    out = []
    for text in texts:
        v = [0.0] * 384
        for word in text.lower().split():
            v[zlib.crc32(word.encode()) % 384] += 1.0
        out.append(v if any(v) else [1.0] + [0.0] * 383)
    return out


def hashed_router(gateway: Gateway) -> Router:
    """A router over the gateway's registry whose heads were fitted on 400 vendored public
    prompts with hashed-word "embeddings" (fast, and enough for heads to learn a topic)."""
    prompts = public_prompts(DATA / "routellm", DATA / "arena-bench-v1")[:400]
    dense = np.array([dense_features([{"role": "user", "content": p.prompt}])[0] for p in prompts])
    heads = build_heads(
        prompts,
        dense,
        np.array(hashed([p.prompt for p in prompts])),
        alpha=1.0,
        gain_sd=0.3,
        embedding_model="hashed (tests)",
        training={},
    )
    return Router(gateway.state.router.registry, heads=heads, embedder=hashed)


async def reply_id(gateway: Gateway, client: httpx.AsyncClient, text: str) -> str:
    conv = (await client.post("/v1/conversations", json={})).json()["id"]
    r = await client.post(
        f"/v1/conversations/{conv}/messages", json={"content": text, "model": "auto"}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["reply"]["id"])


async def test_feedback_is_per_tenant_and_training_says_how_much_is_needed(
    gateway: Gateway,
) -> None:
    answer = await reply_id(gateway, gateway.client, "What is the capital of France?")
    ok = await gateway.client.post("/v1/feedback", json={"id": answer, "rating": "up"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["id"] == answer and ok.json()["score"] == 1.0
    again = await gateway.client.post("/v1/feedback", json={"id": answer, "score": 0.25})
    assert again.json()["score"] == 0.25  # a later rating replaces the earlier one

    other = await gateway.client_for(await gateway.new_key(tenant="globex"))
    foreign = await other.post("/v1/feedback", json={"id": answer, "rating": "down"})
    assert foreign.status_code == 404
    assert foreign.headers["content-type"].startswith("application/problem+json")
    unknown = await gateway.client.post("/v1/feedback", json={"id": "msg_nope", "rating": "up"})
    assert unknown.status_code == 404
    both = await gateway.client.post(
        "/v1/feedback", json={"id": answer, "rating": "up", "score": 1}
    )
    assert both.status_code == 422 and both.json()["errors"][0]["loc"] == ["body", "score"]
    bad = await gateway.client.post("/v1/feedback", json={"id": answer, "rating": "meh"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"][:2] == ["body", "rating"]

    completion = await gateway.client.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "Say hi"}]},
    )
    assert completion.status_code == 200, completion.text
    rated = await gateway.client.post(
        "/v1/feedback", json={"id": completion.json()["id"], "rating": "down"}
    )
    assert rated.status_code == 200 and rated.json()["score"] == 0.0
    assert (
        await other.post("/v1/feedback", json={"id": completion.json()["id"], "rating": "up"})
    ).status_code == 404

    train = await gateway.client.post("/v1/route/train")
    assert train.status_code == 422
    assert f"at least {MIN_RATED}" in train.json()["detail"]

    await reply_id(gateway, gateway.client, "And of Italy?")  # routed, kept, not rated
    report = (await gateway.client.get("/v1/route/report")).json()
    assert report["routed"] == 3 and report["rated"] == 2
    assert report["savings_realised"] is not None and 0.0 <= report["savings_realised"] <= 1.0
    assert report["heads"] is None
    assert (await other.get("/v1/route/report")).json()["routed"] == 0


async def test_the_sdk_and_the_cli(gateway: Gateway) -> None:
    answer = await reply_id(gateway, gateway.client, "Name three prime numbers.")
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app))
    async with AsyncClient(
        api_key=gateway.admin_key, base_url="http://gateway", http_client=http
    ) as client:
        result = await client.feedback(answer, "down")
        assert result.score == 0.0 and result.id == answer
        with pytest.raises(NotFoundError):
            await client.feedback("msg_missing", "up")
        with pytest.raises(ValidationError, match=f"at least {MIN_RATED}"):
            await client.route_train()
        report = await client.route_report()
        assert report.rated == 1 and report.models
    await http.aclose()


async def test_training_promotes_only_heads_that_do_better(gateway: Gateway) -> None:
    """Service level, on the gateway's database: synthetic outcomes whose score follows the
    prompt's topic train heads that beat the router's flat predictions on held-out feedback;
    outcomes the router already predicted exactly are not improved on, so nothing is promoted."""
    router = hashed_router(gateway)
    service = RouteFeedback(gateway.state.sessions, router)
    router.quality.tenant_heads = service.heads_for
    spec = router.registry.get("mixtral-8x7b")

    async def rate(tenant: str, n: int, score_of: Any) -> None:
        for i in range(n):
            maths = i % 2 == 0
            text = f"Compute {i} plus {i * 3} times 7" if maths else f"Write a poem number {i}"
            decision = router.decide([{"role": "user", "content": text}])
            await service.record(
                tenant,
                f"cmpl-{tenant}-{i}",
                decision,
                spec,
                prompt_tokens=20,
                completion_tokens=50,
                cost_usd=0.0001,
            )
            chosen = next(c for c in decision.candidates if c.spec.name == spec.name)
            await service.feedback(tenant, f"cmpl-{tenant}-{i}", score_of(maths, chosen))

    for tenant in ("acme", "steady"):
        await gateway.new_key(tenant=tenant)
    await rate("acme", 80, lambda maths, c: 0.0 if maths else 1.0)
    result = await service.train("acme")
    assert result["promoted"], result
    assert result["after"]["brier"] < result["before"]["brier"]
    assert result["models"] == {"mixtral-8x7b": result["trained_on"]}
    assert service.heads_for("acme") is not None
    decision = router.decide([{"role": "user", "content": "Write a poem number 7"}], tenant="acme")
    assert decision.estimate.evidence == EVIDENCE_TENANT
    assert f"evidence: {EVIDENCE_TENANT}" in decision.reason

    await rate("steady", 40, lambda maths, c: c.predicted_quality)
    kept = await service.train("steady")
    assert not kept["promoted"] and "not promoted" in kept["message"]
    assert service.heads_for("steady") is None
    report = await service.report("acme")
    assert report["heads"]["promoted"] is True and report["rated"] == 80

    reloaded = RouteFeedback(gateway.state.sessions, router)
    await reloaded.load()
    assert reloaded.heads_for("acme") is not None and reloaded.heads_for("steady") is None


def test_the_cli_needs_a_rating_or_a_score() -> None:
    result = CliRunner().invoke(cli_main, ["feedback", "msg_x"])
    assert result.exit_code == 2 and "give a rating" in result.output
    assert "train" in CliRunner().invoke(cli_main, ["route", "--help"]).output
