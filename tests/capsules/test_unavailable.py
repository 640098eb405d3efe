"""A sandbox folder the gateway cannot use: capsules answer 503, everything else serves."""

from __future__ import annotations

from typing import Any

import pytest

from tests.capsules.conftest import Gateway

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"capsules_dir": "/proc/no-capsules-here"}


async def test_capsules_unavailable_gateway_serves(gateway: Gateway) -> None:
    client = gateway.client
    response = await client.get("/v1/capsules")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.post("/mcp", json={})).status_code == 503
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/v1/me")).status_code == 200
