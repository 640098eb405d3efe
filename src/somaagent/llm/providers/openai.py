"""The OpenAI chat-completions wire: OpenAI itself and every compatible server.

:class:`OpenAIModel` speaks ``POST {base_url}/chat/completions`` with bearer auth, streaming
or not. The same class serves vLLM, Ollama, llama.cpp's server and other OpenAI-compatible
endpoints: point ``base_url`` at them (an API key is then often optional).

Connections, transport errors and HTTP error statuses are handled by
:mod:`somaagent.http`; this module owns only the wire format.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any, NotRequired, TypedDict

import aiohttp

from somaagent.errors import ProviderResponseError
from somaagent.http import (
    aiter_sse,
    check_base_url,
    encode_json,
    env_proxy,
    error_from_response,
    get_session,
    map_transport_errors,
    post_json,
    request_timeout,
    vendor_error,
)
from somaagent.llm.base import ChatMessage, ChatRequest, Completion, Model, StreamChunk
from somaagent.types import Usage

__all__ = ["DEFAULT_BASE_URL", "OpenAIModel"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class _StreamOptions(TypedDict):
    include_usage: bool


class _ChatBody(TypedDict):
    model: str
    messages: list[ChatMessage]
    stream: bool
    max_tokens: NotRequired[int]
    temperature: NotRequired[float]
    stop: NotRequired[list[str]]
    stream_options: NotRequired[_StreamOptions]


class OpenAIModel(Model):
    """A model behind an OpenAI-compatible chat-completions endpoint.

    One instance serves one endpoint; each :class:`ChatRequest` names the endpoint's model id
    (``gpt-4o-mini``, ``meta-llama/Llama-3.1-8B-Instruct``, ...). Requests go through the
    process-wide connection pool of :mod:`somaagent.http` (an aiohttp session per event
    loop) unless ``http_client`` is given.

    Args:
        api_key: sent as ``Authorization: Bearer``; optional, since local servers often need none.
        base_url: the API root, including ``/v1``; defaults to OpenAI's.
        timeout: seconds allowed to connect and for each read, unless a request sets its own.
        provider: the provider id recorded on answers and errors (e.g. ``vllm`` for a vLLM server).
        http_client: an :class:`aiohttp.ClientSession` to send with instead of the shared
            pool (its own settings then apply, proxies included); the caller closes it.

    Raises:
        ConfigurationError: ``base_url`` is not an absolute http(s) URL.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        provider: str = "openai",
        http_client: aiohttp.ClientSession | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = check_base_url(base_url or DEFAULT_BASE_URL, setting="base_url")
        self.timeout = timeout
        self._api_key = api_key
        self._http_client = http_client
        self._url = f"{self.base_url}/chat/completions"
        # The shared session reads no proxy settings per request; an own session has its own.
        self._proxy = env_proxy(self._url) if http_client is None else None
        # Built once: the same headers go with every request of this instance.
        self._json_headers = self._headers(stream=False)
        self._sse_headers = self._headers(stream=True)

    def __repr__(self) -> str:
        return f"OpenAIModel(provider={self.provider!r}, base_url={self.base_url!r})"

    @property
    def _client(self) -> aiohttp.ClientSession:
        return self._http_client if self._http_client is not None else get_session()

    def _headers(self, *, stream: bool) -> dict[str, str]:
        headers = {
            "accept": "text/event-stream" if stream else "application/json",
            "content-type": "application/json",
        }
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    def _body(self, request: ChatRequest, *, stream: bool) -> _ChatBody:
        body: _ChatBody = {
            "model": request.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in request.messages],
            "stream": stream,
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop"] = list(request.stop)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(self, request: ChatRequest) -> Completion:
        """Ask for the whole answer in one response.

        Raises:
            ProviderError: a subclass for each failure; see :mod:`somaagent.errors`.
        """
        timeout = request_timeout(request.timeout if request.timeout is not None else self.timeout)
        data = await post_json(
            self._client,
            self._url,
            self._body(request, stream=False),
            provider=self.provider,
            headers=self._json_headers,
            timeout=timeout,
            proxy=self._proxy,
        )
        return self._completion(data, request)

    def _completion(self, data: Any, request: ChatRequest) -> Completion:
        if not isinstance(data, dict):
            raise self._bad("the answer is not a JSON object", data)
        if data.get("error"):
            message, _ = vendor_error(data)
            raise self._bad(f"the provider answered an error: {message}", data)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._bad("the answer has no choices", data)
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise self._bad("the answer's first choice has no message", data)
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise self._bad("the answer's content is not text", data)
        finish = choices[0].get("finish_reason")
        model = data.get("model")
        return Completion(
            content=content or "",
            model=model if isinstance(model, str) and model else request.model,
            provider=self.provider,
            usage=_usage(data.get("usage")) or Usage(),
            finish_reason=finish if isinstance(finish, str) else None,
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        """Yield the answer's text as it arrives, then one chunk with finish reason and usage.

        The stream is complete only when the server sent a ``finish_reason`` and then
        ``data: [DONE]``; anything short of that raises after the deltas already yielded.

        Raises:
            ProviderError: a subclass for each failure; a stream cut short, an ``error`` object
                in the stream, or a chunk that is not JSON raise ``ProviderResponseError``.
        """
        timeout = request_timeout(request.timeout if request.timeout is not None else self.timeout)
        finish_reason: str | None = None
        usage: Usage | None = None
        done = False
        received = 0
        with map_transport_errors(self.provider, method="POST", url=self._url):
            async with self._client.post(
                self._url,
                data=encode_json(self._body(request, stream=True)),
                headers=self._sse_headers,
                timeout=timeout,
                proxy=self._proxy,
                allow_redirects=False,
            ) as response:
                if not 200 <= response.status < 300:
                    raise await error_from_response(response, provider=self.provider)
                async for event in aiter_sse(response):
                    if event.data.strip() == "[DONE]":
                        done = True
                        break
                    chunk = self._chunk(event.data)
                    received += 1
                    usage = _usage(chunk.get("usage")) or usage
                    delta, finish = self._choice(chunk)
                    finish_reason = finish or finish_reason
                    if delta:
                        yield StreamChunk(delta=delta)
        if not done or finish_reason is None:
            missing = "data: [DONE]" if finish_reason is not None else "a finish_reason"
            raise self._bad(f"the stream ended after {received} chunk(s) without {missing}")
        yield StreamChunk(finish_reason=finish_reason, usage=usage)

    def _chunk(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self._bad(f"a stream chunk is not JSON: {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise self._bad(f"a stream chunk is not a JSON object: {data[:200]!r}")
        if chunk.get("error"):
            message, kind = vendor_error(chunk)
            detail = f" [{kind}]" if kind else ""
            raise self._bad(f"the provider sent an error in the stream: {message}{detail}", chunk)
        return chunk

    def _choice(self, chunk: dict[str, Any]) -> tuple[str, str | None]:
        """``(delta text, finish_reason)`` of a chunk's first choice; empty for a usage chunk."""
        choices = chunk.get("choices")
        if choices is None or choices == []:
            return "", None
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise self._bad("a stream chunk has malformed choices", chunk)
        delta = choices[0].get("delta") or {}
        content = delta.get("content") if isinstance(delta, dict) else None
        finish = choices[0].get("finish_reason")
        return (
            content if isinstance(content, str) else "",
            finish if isinstance(finish, str) else None,
        )

    def _bad(self, message: str, body: Any = None) -> ProviderResponseError:
        return ProviderResponseError(message, provider=self.provider, body=body)


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = _int(raw.get("prompt_tokens"))
    completion = _int(raw.get("completion_tokens"))
    total = _int(raw.get("total_tokens")) or prompt + completion
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
