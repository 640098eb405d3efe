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


async def _claim_from_elsewhere(
    gateway: Gateway, conv_id: str, key: str, content: str, age_s: float, heartbeat: bool
) -> None:
    """A claim in flight held by a gateway on another host, last stamped ``age_s`` ago."""
    import hashlib
    from datetime import timedelta

    from somaagent import types
    from somaagent.chat.tables import IdempotencyRecord
    from somaagent.db import new_id, utcnow

    body = types.MessageCreate(content=content)
    digest = hashlib.sha256(
        (conv_id + "\n" + body.model_dump_json(exclude={"stream"})).encode()
    ).hexdigest()
    owner: dict[str, object] = {"host": "another-host", "pid": 1, "boot": "elsewhere"}
    if heartbeat:
        owner["heartbeat_s"] = 15.0
    async with gateway.state.sessions() as session:
        session.add(
            IdempotencyRecord(
                id=new_id("idem"),
                tenant_id="default",
                key=key,
                request_hash=digest,
                response={"owner": owner},
                created_at=utcnow() - timedelta(seconds=age_s),
            )
        )
        await session.commit()


async def test_a_claim_on_another_host_is_dead_once_its_heartbeats_stop(gateway: Gateway) -> None:
    """Four missed heartbeats (a minute) make another host's claim dead; a fresh one is busy;
    a claim from a gateway without heartbeats is still waited out for ten minutes."""
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    cases = [("beating", 20, True, 409), ("silent", 61, True, 201), ("old-style", 61, False, 409)]
    for key, age, heartbeat, expected in cases:
        await _claim_from_elsewhere(gateway, conv["id"], key, f"hello {key}", age, heartbeat)
        r = await gateway.client.post(
            url, json={"content": f"hello {key}"}, headers={"Idempotency-Key": key}
        )
        assert r.status_code == expected, (key, r.text)
        if expected == 409:
            assert r.json()["type"] == "urn:somaagent:problem:busy"
    stored = (await gateway.client.get(url)).json()["data"]
    assert [m["content"] for m in stored] == ["hello silent", "Echo: hello silent"]


async def test_the_request_holding_a_claim_keeps_its_stamp_fresh(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from sqlalchemy import select

    from somaagent.chat import idempotency
    from somaagent.chat.tables import IdempotencyRecord

    monkeypatch.setattr(idempotency, "HEARTBEAT", timedelta(seconds=0.05))
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    headers = {"Idempotency-Key": "held"}

    async def stamp() -> object:
        async with gateway.state.sessions() as session:
            return await session.scalar(
                select(IdempotencyRecord.created_at).where(IdempotencyRecord.key == "held")
            )

    first = asyncio.create_task(
        gateway.client.post(url, json={"content": "slow [[stall]]"}, headers=headers)
    )
    try:
        seen = []
        for _ in range(200):
            await asyncio.sleep(0.02)
            value = await stamp()
            if value is not None and (not seen or value != seen[-1]):
                seen.append(value)
            if len(seen) >= 3:
                break
        assert len(seen) >= 3, seen  # the stamp moved forward twice while the request ran
        assert seen == sorted(seen)
    finally:
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
    await asyncio.sleep(0.2)  # any heartbeat in flight lands, then they stop
    stopped = await stamp()
    await asyncio.sleep(0.3)
    assert await stamp() == stopped
    assert not idempotency._beating  # the heartbeat task ended with the request


async def test_an_answered_request_stops_its_heartbeat_at_once(gateway: Gateway) -> None:
    from somaagent.chat import idempotency

    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    sent = await gateway.client.post(url, json={"content": "hi"}, headers={"Idempotency-Key": "k"})
    assert sent.status_code == 201
    await asyncio.sleep(0.05)  # the cancelled heartbeat finishes (it would sleep 15 s)
    assert not idempotency._beating
