"""Message streams: iterators of :class:`StreamEvent` over an open SSE response.

A stream opens its request lazily, on ``with``/``async with`` or on the first event, so that a
stream that is never read holds no connection. Decoding and bookkeeping live in
:mod:`somaagent.sdk._base`; these twins only read lines and close.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Self

import httpx

from somaagent.errors import SomaAgentError
from somaagent.sdk._base import MessageStreamState, SSEDecoder, connection_error
from somaagent.types import Message, MessageExchange, StreamEvent


class _StreamView:
    """What both twins expose about a stream's progress."""

    _state: MessageStreamState

    @property
    def request_id(self) -> str | None:
        """The gateway's request id, once the stream is open."""
        return self._state.request_id

    @property
    def text(self) -> str:
        """The reply's text received so far."""
        return self._state.text

    @property
    def user_message(self) -> Message | None:
        """The stored user message, once ``message.created`` arrived."""
        return self._state.user_message

    @property
    def reply(self) -> Message | None:
        """The stored assistant message, once ``message.completed`` arrived."""
        return self._state.reply

    @property
    def exchange(self) -> MessageExchange | None:
        """The user message and the reply, once the stream completed."""
        return self._state.exchange


class MessageStream(_StreamView):
    """The events of one streamed message send, in order.

    Use it as a context manager so the connection is closed however the loop ends::

        with client.conversations.stream_message(conversation_id, "Hello") as stream:
            for delta in stream.text_deltas():
                print(delta, end="", flush=True)
        print(stream.reply.usage)

    Iteration raises the exception named by an ``error`` event, and
    :class:`~somaagent.errors.APIConnectionError` when the stream ends without
    ``message.completed``.
    """

    def __init__(self, open_response: Callable[[], httpx.Response], *, base_url: str) -> None:
        self._open_response = open_response
        self._base_url = base_url
        self._state = MessageStreamState()
        self._decoder = SSEDecoder()
        self._response: httpx.Response | None = None
        self._lines: Iterator[str] | None = None
        self._done = False

    def __enter__(self) -> Self:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> StreamEvent:
        if self._done:
            raise StopIteration
        lines = self._open()
        try:
            for line in lines:
                event = self._decoder.decode(line)
                if event is not None:
                    self._state.on_event(event)
                    return event
        except httpx.TransportError as exc:
            self.close()
            raise connection_error(exc, base_url=self._base_url, mid_stream=True) from exc
        except SomaAgentError:
            self.close()
            raise
        self.close()
        self._state.finish()
        raise StopIteration

    def text_deltas(self) -> Iterator[str]:
        """Yield only the text of ``message.delta`` events, as they arrive."""
        for event in self:
            if event.event == "message.delta":
                yield str(event.data.get("delta", ""))

    def final_exchange(self) -> MessageExchange:
        """Read the rest of the stream and return the user message and the reply."""
        for _ in self:
            pass
        return self._state.final_exchange()

    def close(self) -> None:
        """Close the connection; the stream yields nothing more."""
        self._done = True
        if self._lines is not None and hasattr(self._lines, "close"):
            self._lines.close()
        if self._response is not None:
            self._response.close()

    def _open(self) -> Iterator[str]:
        if self._lines is None:
            if self._done:
                return iter(())
            self._response = self._open_response()
            self._state.request_id = self._response.headers.get("x-request-id")
            self._lines = self._response.iter_lines()
        return self._lines


class AsyncMessageStream(_StreamView):
    """The events of one streamed message send, in order: the async twin of
    :class:`MessageStream`.

    ::

        async with client.conversations.stream_message(conversation_id, "Hello") as stream:
            async for delta in stream.text_deltas():
                print(delta, end="", flush=True)
    """

    def __init__(
        self, open_response: Callable[[], Awaitable[httpx.Response]], *, base_url: str
    ) -> None:
        self._open_response = open_response
        self._base_url = base_url
        self._state = MessageStreamState()
        self._decoder = SSEDecoder()
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._done = False

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._done:
            raise StopAsyncIteration
        lines = await self._open()
        try:
            async for line in lines:
                event = self._decoder.decode(line)
                if event is not None:
                    self._state.on_event(event)
                    return event
        except httpx.TransportError as exc:
            await self.aclose()
            raise connection_error(exc, base_url=self._base_url, mid_stream=True) from exc
        except SomaAgentError:
            await self.aclose()
            raise
        await self.aclose()
        self._state.finish()
        raise StopAsyncIteration

    async def text_deltas(self) -> AsyncIterator[str]:
        """Yield only the text of ``message.delta`` events, as they arrive."""
        async for event in self:
            if event.event == "message.delta":
                yield str(event.data.get("delta", ""))

    async def final_exchange(self) -> MessageExchange:
        """Read the rest of the stream and return the user message and the reply."""
        async for _ in self:
            pass
        return self._state.final_exchange()

    async def aclose(self) -> None:
        """Close the connection; the stream yields nothing more."""
        self._done = True
        aclose = getattr(self._lines, "aclose", None)
        if aclose is not None:
            await aclose()
        if self._response is not None:
            await self._response.aclose()

    async def _open(self) -> AsyncIterator[str]:
        if self._lines is None:
            if self._done:
                return _empty()
            self._response = await self._open_response()
            self._state.request_id = self._response.headers.get("x-request-id")
            self._lines = self._response.aiter_lines()
        return self._lines


async def _empty() -> AsyncIterator[str]:
    return
    yield  # pragma: no cover - makes this an async generator
