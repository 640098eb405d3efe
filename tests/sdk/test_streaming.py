"""Server-Sent Events: the decoder's edge cases and message streams, sync and async."""

from __future__ import annotations

import json

import httpx
import pytest

from somaagent import (
    APIConnectionError,
    APIError,
    AsyncClient,
    Client,
    NotFoundError,
    StreamEvent,
    UpstreamError,
)
from somaagent.sdk._base import SSEDecoder
from tests.sdk.stub_gateway import StubGateway


def _decode(text: str) -> list[StreamEvent]:
    decoder = SSEDecoder()
    events = [decoder.decode(line) for line in text.splitlines()]
    return [event for event in events if event is not None]


def test_named_events_with_ids_and_json_data() -> None:
    events = _decode('event: message.delta\nid: 7\ndata: {"delta": "Hi"}\n\n')
    assert events == [StreamEvent(event="message.delta", id="7", data={"delta": "Hi"})]


def test_multi_line_data_is_joined_with_newlines() -> None:
    (event,) = _decode('event: x\ndata: {"a":\ndata: 1,\ndata:  "b": 2}\n\n')
    assert event.data == {"a": 1, "b": 2}


def test_comments_and_unknown_fields_are_ignored() -> None:
    text = ": keep-alive\nretry: 1000\nfoo: bar\nevent: ping\ndata: {}\n\n: bye\n\n"
    assert _decode(text) == [StreamEvent(event="ping", data={})]


def test_the_space_after_the_colon_is_optional() -> None:
    (event,) = _decode('event:message.delta\ndata:{"delta": " lead"}\n\n')
    assert event.event == "message.delta"
    assert event.data == {"delta": " lead"}


def test_an_event_without_data_is_not_dispatched() -> None:
    assert _decode("event: nothing\nid: 3\n\n") == []


def test_an_unnamed_event_is_a_message_event() -> None:
    (event,) = _decode('data: {"x": 1}\n\n')
    assert event.event == "message"
    assert event.id is None


def test_the_last_id_carries_over_to_later_events() -> None:
    events = _decode("id: 5\ndata: {}\n\ndata: {}\n\n")
    assert [e.id for e in events] == ["5", "5"]


def test_a_leading_byte_order_mark_is_skipped() -> None:
    (event,) = _decode("\ufeffevent: a\ndata: {}\n\n")
    assert event.event == "a"


def test_an_event_cut_off_before_its_blank_line_is_dropped() -> None:
    assert _decode('event: message.completed\ndata: {"message": {}}') == []


@pytest.mark.parametrize("data", ["not json", "[1, 2]", '"text"'])
def test_data_that_is_not_a_json_object_is_an_error(data: str) -> None:
    with pytest.raises(APIError, match=r"malformed 'message\.delta' event"):
        _decode(f"event: message.delta\ndata: {data}\n\n")


def test_crlf_and_cr_line_endings_are_understood() -> None:
    message = {
        "id": "m1",
        "conversation_id": "c1",
        "role": "assistant",
        "content": "ok",
        "created_at": "2025-01-01T00:00:00Z",
    }
    body = (
        f"event: message.created\r\ndata: {json.dumps({'message': {**message, 'role': 'user'}})}"
        "\r\n\r\n"
        'event: message.delta\rdata: {"delta": "ok"}\r\r'
        f"event: message.completed\r\ndata: {json.dumps({'message': message})}\r\n\r\n"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Client(api_key="k", http_client=http) as client:
        stream = client.conversations.stream_message("c1", "hi")
        assert [e.event for e in stream] == [
            "message.created",
            "message.delta",
            "message.completed",
        ]
    assert stream.exchange is not None
    assert stream.exchange.reply.content == "ok"


# -- streams against the stub gateway ---------------------------------------------------


@pytest.fixture
def conversation_id(client: Client) -> str:
    return client.conversations.create("streams").id


def test_a_stream_yields_created_deltas_and_completed(client: Client, conversation_id: str) -> None:
    with client.conversations.stream_message(conversation_id, "one two three") as stream:
        events = list(stream)
    assert events[0].event == "message.created"
    assert events[-1].event == "message.completed"
    deltas = [e.data["delta"] for e in events if e.event == "message.delta"]
    assert "".join(deltas) == "Echo: one two three"
    assert [e.id for e in events] == [str(i) for i in range(1, len(events) + 1)]
    assert stream.text == "Echo: one two three"
    assert stream.reply is not None
    assert stream.reply.usage is not None
    assert stream.request_id is not None and stream.request_id.startswith("req_")
    assert stream.user_message is not None and stream.user_message.content == "one two three"


def test_text_deltas_and_final_exchange(client: Client, conversation_id: str) -> None:
    with client.conversations.stream_message(conversation_id, "hello") as stream:
        assert list(stream.text_deltas()) == ["Echo: ", "hello"]
        exchange = stream.final_exchange()
    assert exchange.reply.content == "Echo: hello"
    stored = client.conversations.messages(conversation_id).data
    assert [m.id for m in stored] == [exchange.message.id, exchange.reply.id]


def test_a_stream_is_also_a_plain_iterator(client: Client, conversation_id: str) -> None:
    events = list(client.conversations.stream_message(conversation_id, "x"))
    assert events[-1].event == "message.completed"


def test_an_error_event_raises_its_problem(client: Client, conversation_id: str) -> None:
    with client.conversations.stream_message(conversation_id, "please !error") as stream:
        seen: list[str] = []
        with pytest.raises(UpstreamError, match="mid-stream") as info:
            for event in stream:
                seen.append(event.event)
    assert seen[0] == "message.created"
    assert "message.completed" not in seen
    assert info.value.status_code == 502
    assert info.value.request_id == stream.request_id


def test_a_stream_ending_without_completed_raises(client: Client, conversation_id: str) -> None:
    with client.conversations.stream_message(conversation_id, "cut !truncate") as stream:
        with pytest.raises(APIConnectionError, match=r"message\.completed"):
            for _ in stream:
                pass
        assert stream.text == "Echo: cut !truncate"
        assert stream.reply is None


def test_a_dropped_connection_raises(client: Client, conversation_id: str) -> None:
    with (
        client.conversations.stream_message(conversation_id, "a b !drop c d") as stream,
        pytest.raises(APIConnectionError, match="broke off"),
    ):
        list(stream.text_deltas())


def test_a_stream_that_fails_to_open_raises_the_problem(client: Client) -> None:
    stream = client.conversations.stream_message("conv_missing", "hi")
    with pytest.raises(NotFoundError):
        stream.__enter__()


def test_a_non_sse_answer_to_a_stream_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"message": {}, "reply": {}})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with (
        Client(api_key="k", http_client=http) as client,
        pytest.raises(APIError, match="text/event-stream"),
    ):
        list(client.conversations.stream_message("c1", "hi"))


def test_leaving_the_block_early_closes_the_stream(client: Client, conversation_id: str) -> None:
    with client.conversations.stream_message(conversation_id, "a b c d e f") as stream:
        next(iter(stream))
    assert stream._response is not None and stream._response.is_closed
    assert list(stream) == []


def test_an_unread_stream_sends_nothing(client: Client, stub: StubGateway) -> None:
    before = len(stub.requests)
    client.conversations.stream_message("conv_x", "never sent")
    assert len(stub.requests) == before


def test_chat_streams_into_a_new_conversation(client: Client) -> None:
    with client.chat("stream this", stream=True) as stream:
        text = "".join(stream.text_deltas())
    assert text == "Echo: stream this"
    assert stream.reply is not None
    conversation = client.conversations.get(stream.reply.conversation_id)
    assert conversation.title == "stream this"


# -- async ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_stream_over_http(live_async_client: AsyncClient) -> None:
    conversation = await live_async_client.conversations.create()
    async with live_async_client.conversations.stream_message(conversation.id, "a b") as stream:
        deltas = [delta async for delta in stream.text_deltas()]
    assert deltas == ["Echo: ", "a ", "b"]
    assert stream.exchange is not None
    assert stream.exchange.reply.content == "Echo: a b"


@pytest.mark.anyio
async def test_async_stream_through_asgi(async_client: AsyncClient) -> None:
    conversation = await async_client.conversations.create()
    stream = async_client.conversations.stream_message(conversation.id, "hi")
    events = [event.event async for event in stream]
    assert events == ["message.created", "message.delta", "message.delta", "message.completed"]
    exchange = await stream.final_exchange()
    assert exchange.reply.content == "Echo: hi"


@pytest.mark.anyio
async def test_async_error_event_and_truncation(live_async_client: AsyncClient) -> None:
    conversation = await live_async_client.conversations.create()
    async with live_async_client.conversations.stream_message(conversation.id, "!error") as s:
        with pytest.raises(UpstreamError):
            async for _ in s:
                pass
    async with live_async_client.conversations.stream_message(conversation.id, "!truncate") as s:
        with pytest.raises(APIConnectionError, match=r"message\.completed"):
            await s.final_exchange()


@pytest.mark.anyio
async def test_async_dropped_connection(live_async_client: AsyncClient) -> None:
    conversation = await live_async_client.conversations.create()
    async with live_async_client.conversations.stream_message(conversation.id, "a !drop c") as s:
        with pytest.raises(APIConnectionError, match="broke off"):
            async for _ in s:
                pass


@pytest.mark.anyio
async def test_async_early_exit_closes(live_async_client: AsyncClient) -> None:
    conversation = await live_async_client.conversations.create()
    async with live_async_client.conversations.stream_message(conversation.id, "a b c d") as s:
        await s.__anext__()
    assert s._response is not None and s._response.is_closed


@pytest.mark.anyio
async def test_async_chat_stream(async_client: AsyncClient) -> None:
    stream = await async_client.chat("hello async", stream=True)
    async with stream:
        exchange = await stream.final_exchange()
    assert exchange.reply.content == "Echo: hello async"
