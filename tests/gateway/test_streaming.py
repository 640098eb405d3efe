"""Message streams: named SSE events with ids; a cut stream is an error event."""

from __future__ import annotations

import json

import pytest

from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.anyio


def parse_sse(text: str) -> list[dict[str, object]]:
    events = []
    for block in text.strip().split("\n\n"):
        event: dict[str, object] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            event[name] = json.loads(value) if name == "data" else value
        events.append(event)
    return events


async def test_stream_events_named_with_ids_and_reply_stored(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    r = await gateway.client.post(url, json={"content": "stream me please", "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    names = [e["event"] for e in events]
    assert names[0] == "message.created"
    assert names[-1] == "message.completed"
    assert names.count("message.delta") >= 2
    assert [e["id"] for e in events] == [str(i) for i in range(1, len(events) + 1)]
    text = "".join(e["data"]["delta"] for e in events if e["event"] == "message.delta")  # type: ignore[index]
    assert text == "Echo: stream me please"
    final = events[-1]["data"]["message"]  # type: ignore[index]
    assert final["content"] == text
    assert final["usage"]["completion_tokens"] > 0
    stored = (await gateway.client.get(url)).json()["data"]
    assert stored[-1]["content"] == text


async def test_cut_stream_ends_with_error_event_not_success(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    r = await gateway.client.post(url, json={"content": "cut me [[cut]]", "stream": True})
    events = parse_sse(r.text)
    names = [e["event"] for e in events]
    assert "message.completed" not in names
    assert names[-1] == "error"
    assert events[-1]["data"]["status"] == 502  # type: ignore[index]
    stored = (await gateway.client.get(url)).json()["data"]
    assert [m["role"] for m in stored] == ["user"]


async def test_stream_to_unknown_conversation_is_plain_404(gateway: Gateway) -> None:
    r = await gateway.client.post(
        "/v1/conversations/conv_nope/messages", json={"content": "x", "stream": True}
    )
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
