"""Idempotency-Key on a message send: a retry returns the first result."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.gateway.conftest import Gateway
from tests.gateway.test_streaming import parse_sse

pytestmark = pytest.mark.anyio


async def test_retried_send_returns_first_result_and_stores_once(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    headers = {"Idempotency-Key": "send-1"}
    first = await gateway.client.post(url, json={"content": "once"}, headers=headers)
    second = await gateway.client.post(url, json={"content": "once"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    stored = (await gateway.client.get(url)).json()["data"]
    assert [m["content"] for m in stored] == ["once", "Echo: once"]


async def test_same_key_different_body_is_409(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    headers = {"Idempotency-Key": "send-2"}
    await gateway.client.post(url, json={"content": "a"}, headers=headers)
    r = await gateway.client.post(url, json={"content": "b"}, headers=headers)
    assert r.status_code == 409


async def test_retry_after_provider_failure_reuses_the_stored_user_message(
    gateway: Gateway,
) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    headers = {"Idempotency-Key": "send-3"}
    failed = await gateway.client.post(url, json={"content": "x [[status:503]]"}, headers=headers)
    assert failed.status_code == 503
    again = await gateway.client.post(url, json={"content": "x [[status:503]]"}, headers=headers)
    assert again.status_code == 503
    stored = (await gateway.client.get(url)).json()["data"]
    assert [m["role"] for m in stored] == ["user"]


async def test_streamed_send_replays_as_stream(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    headers = {"Idempotency-Key": "send-4"}
    body = {"content": "twice", "stream": True}
    first = parse_sse((await gateway.client.post(url, json=body, headers=headers)).text)
    second = parse_sse((await gateway.client.post(url, json=body, headers=headers)).text)
    assert first[-1]["data"] == second[-1]["data"]
    assert second[-1]["event"] == "message.completed"
    stored = (await gateway.client.get(url)).json()["data"]
    assert len(stored) == 2


async def test_a_request_still_running_is_a_busy_409_that_says_when_to_retry(
    gateway: Gateway,
) -> None:
    # The one 409 that passes by itself: the SDK retries it (after Retry-After), and no other.
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    headers = {"Idempotency-Key": "send-busy"}
    body = {"content": "take your time [[stall]]"}
    first = asyncio.create_task(gateway.client.post(url, json=body, headers=headers))
    try:
        busy = None
        for _ in range(100):  # until the first request has claimed the key
            await asyncio.sleep(0.05)
            r = await gateway.client.post(url, json=body, headers=headers)
            if r.status_code == 409:
                busy = r
                break
        assert busy is not None and not first.done()
        assert busy.json()["type"] == "urn:somaagent:problem:busy"
        assert busy.headers["retry-after"] == "1"
    finally:
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
    other = await gateway.client.post(url, json={"content": "b"}, headers={"Idempotency-Key": "x"})
    assert other.status_code == 201
    changed = await gateway.client.post(
        url, json={"content": "c"}, headers={"Idempotency-Key": "x"}
    )
    assert changed.status_code == 409
    assert changed.json()["type"] == "urn:somaagent:problem:conflict"
    assert "retry-after" not in changed.headers
