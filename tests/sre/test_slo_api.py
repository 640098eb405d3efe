"""``GET /v1/slo`` on a real gateway app, against a real Prometheus, a missing one, and none."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from somaagent.gateway.app import create_app
from somaagent.gateway.routes import slo as slo_routes
from tests.sre.conftest import SLOStack, gateway_settings

pytestmark = pytest.mark.anyio


def _with_slo_router(app: FastAPI) -> FastAPI:
    # Until the app factory includes the router itself.
    if not any(getattr(route, "path", "") == "/v1/slo" for route in app.routes):
        app.include_router(slo_routes.router)
    return app


@pytest.fixture
async def client_for(
    tmp_path: Path, fake_openai: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Any]]:
    """``await client_for(prometheus_url=None, **env)``: a client for a fresh gateway app."""
    opened: list[tuple[Any, httpx.AsyncClient]] = []

    async def make(prometheus_url: str | None, **env: str) -> httpx.AsyncClient:
        monkeypatch.delenv("SOMA_PROMETHEUS_URL", raising=False)
        if prometheus_url is not None:
            monkeypatch.setenv("SOMA_PROMETHEUS_URL", prometheus_url)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        admin: list[str] = []
        settings = gateway_settings(tmp_path / f"gw{len(opened)}", fake_openai)
        app = _with_slo_router(create_app(settings, on_admin_key=admin.append))
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://gateway",
            headers={"Authorization": f"Bearer {admin[0]}"},
        )
        opened.append((lifespan, client))
        return client

    yield make
    for lifespan, client in reversed(opened):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_without_prometheus_the_problem_names_the_setting(client_for: Any) -> None:
    client = await client_for(None)
    response = await client.get("/v1/slo")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == "urn:somaagent:problem:unavailable"
    assert "SOMA_PROMETHEUS_URL" in problem["detail"]


async def test_it_needs_an_api_key(client_for: Any) -> None:
    client = await client_for("http://127.0.0.1:9")
    response = await client.get("/v1/slo", headers={"Authorization": ""})
    assert response.status_code == 401


async def test_prometheus_down_is_a_status_not_an_error(client_for: Any) -> None:
    client = await client_for("http://127.0.0.1:9")
    response = await client.get("/v1/slo")
    assert response.status_code == 200
    body = response.json()
    assert body["prometheus_url"] == "http://127.0.0.1:9"
    assert [s["status"] for s in body["slos"]] == ["unknown"] * 9
    assert all("unreachable" in s["error"] for s in body["slos"])


async def test_statuses_from_a_real_prometheus(
    client_for: Any, slo_stack: Callable[..., SLOStack]
) -> None:
    stack = slo_stack()  # scraped at least once: the gateway was up
    client = await client_for(stack.prometheus.url)
    body = (await client.get("/v1/slo")).json()
    statuses = {s["name"]: s["status"] for s in body["slos"]}
    assert statuses["gateway-availability"] == "healthy"
    assert statuses["constitution-availability"] == "no-data"
    one = await client.get("/v1/slo/gateway-availability")
    assert one.status_code == 200
    assert one.json()["budget"]["consumed"] == 0
    missing = await client.get("/v1/slo/nope")
    assert missing.status_code == 404
    assert "gateway-availability" in missing.json()["detail"]


async def test_a_custom_slo_file_and_a_broken_one(client_for: Any, tmp_path: Path) -> None:
    specs = tmp_path / "slos.yaml"
    specs.write_text(
        "slos:\n  - {name: only, service: api, objective: 99, sli: {kind: uptime}}\n",
        encoding="utf-8",
    )
    client = await client_for("http://127.0.0.1:9", SOMA_SLO_FILE=str(specs))
    assert [s["name"] for s in (await client.get("/v1/slo")).json()["slos"]] == ["only"]
    specs.write_text("slos:\n  - {name: only, objective: 150}\n", encoding="utf-8")
    broken = await client.get("/v1/slo")
    assert broken.status_code == 503
    assert "SOMA_SLO_FILE" in broken.json()["detail"]
