"""Per-key rate limit: 429 with Retry-After, one bucket per key."""

from __future__ import annotations

from typing import Any

import pytest

from somaagent.errors import RateLimitError
from somaagent.gateway.ratelimit import RateLimiter
from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"rate_limit_per_minute": 3}


async def test_over_the_limit_is_429_with_retry_after(gateway: Gateway) -> None:
    statuses = [(await gateway.client.get("/v1/me")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    r = await gateway.client.get("/v1/me")
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["type"] == "urn:somaagent:problem:rate-limited"
    other = await gateway.client_for(await gateway.new_key(name="other"))
    assert (await other.get("/v1/me")).status_code == 200


def test_bucket_refills_over_time() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    for _ in range(60):
        limiter.check("k")
    with pytest.raises(RateLimitError) as caught:
        limiter.check("k")
    assert caught.value.retry_after == 1.0
    now[0] += 1.0
    limiter.check("k")
    with pytest.raises(RateLimitError):
        limiter.check("k")


async def test_zero_turns_limiting_off() -> None:
    limiter = RateLimiter(0)
    for _ in range(1000):
        limiter.check("k")
