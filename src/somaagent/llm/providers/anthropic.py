"""The Anthropic Messages wire.

:class:`AnthropicModel` speaks ``POST {base_url}/v1/messages`` with ``x-api-key`` and
``anthropic-version`` headers, streaming or not. System messages travel in the top-level
``system`` field, ``max_tokens`` is always sent (Anthropic requires it), and Anthropic's
``stop_reason`` values are translated to the OpenAI-style ``finish_reason`` the rest of
SomaAgent uses.

Connections, transport errors and HTTP error statuses are handled by
:mod:`somaagent.http`; this module owns only the wire format.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any, Literal, NotRequired, TypedDict

import aiohttp

from somaagent.errors import (
    ConfigurationError,
    ProviderAuthenticationError,
    ProviderBadRequestError,
    ProviderError,
    ProviderOverloadedError,
    ProviderRateLimitError,
    ProviderResponseError,
)
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
from somaagent.llm.base import ChatRequest, Completion, Model, StreamChunk
from somaagent.types import Usage

__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "DEFAULT_MAX_TOKENS", "AnthropicModel"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024

# Anthropic's stop reasons, as the OpenAI-style finish reasons the rest of SomaAgent uses.
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# An ``error`` event arrives after a 200, so only its type says what went wrong.
_STREAM_ERRORS: dict[str, type[ProviderError]] = {
    "overloaded_error": ProviderOverloadedError,
    "rate_limit_error": ProviderRateLimitError,
    "authentication_error": ProviderAuthenticationError,
    "permission_error": ProviderAuthenticationError,
    "invalid_request_error": ProviderBadRequestError,
}


class _Message(TypedDict):
    role: Literal["user", "assistant"]
    content: str


class _MessagesBody(TypedDict):
    model: str
    max_tokens: int
    messages: list[_Message]
    stream: bool
    system: NotRequired[str]
    temperature: NotRequired[float]
    stop_sequences: NotRequired[list[str]]


class AnthropicModel(Model):
    """A Claude model behind the Anthropic Messages API.

    One instance serves one endpoint; each :class:`ChatRequest` names the model id
    (``claude-haiku-4-5``, ...). Requests go through the process-wide connection pool of
    :mod:`somaagent.http` (an aiohttp session per event loop) unless ``http_client`` is
    given.

    Args:
        api_key: sent as ``x-api-key``; required.
        base_url: the API root without ``/v1``; defaults to Anthropic's.
        timeout: seconds allowed to connect and for each read, unless a request sets its own.
        default_max_tokens: ``max_tokens`` for requests that set none (Anthropic requires one).
        provider: the provider id recorded on answers and errors.
        http_client: an :class:`aiohttp.ClientSession` to send with instead of the shared
            pool (its own settings then apply, proxies included); the caller closes it.

    Raises:
        ConfigurationError: no API key, or ``base_url`` is not an absolute http(s) URL.
    """

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None = None,
        timeout: float = 60.0,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        provider: str = "anthropic",
        http_client: aiohttp.ClientSession | None = None,
    ) -> None:
        if not api_key:
            raise ConfigurationError(
                "an Anthropic API key is required: pass api_key= or set SOMA_ANTHROPIC_API_KEY"
            )
        self.provider = provider
        self.base_url = check_base_url(base_url or DEFAULT_BASE_URL, setting="base_url")
        self.timeout = timeout
        self.default_max_tokens = default_max_tokens
        self._api_key = api_key
        self._http_client = http_client
        self._url = f"{self.base_url}/v1/messages"
        # The shared session reads no proxy settings per request; an own session has its own.
        self._proxy = env_proxy(self._url) if http_client is None else None
        # Built once: the same headers go with every request of this instance.
        self._json_headers = self._headers(stream=False)
        self._sse_headers = self._headers(stream=True)

    def __repr__(self) -> str:
        return f"AnthropicModel(provider={self.provider!r}, base_url={self.base_url!r})"

    @property
    def _client(self) -> aiohttp.ClientSession:
        return self._http_client if self._http_client is not None else get_session()

    def _headers(self, *, stream: bool) -> dict[str, str]:
        return {
            "x-api-key": self._api_key,
            "anthropic-version": API_VERSION,
            "accept": "text/event-stream" if stream else "application/json",
            "content-type": "application/json",
        }

    def _body(self, request: ChatRequest, *, stream: bool) -> _MessagesBody:
        system = [m["content"] for m in request.messages if m["role"] == "system"]
        messages: list[_Message] = []
        for m in request.messages:
            if m["role"] == "user":
                messages.append({"role": "user", "content": m["content"]})
            elif m["role"] == "assistant":
                messages.append({"role": "assistant", "content": m["content"]})
        body: _MessagesBody = {
            "model": request.model,
            "max_tokens": request.max_tokens or self.default_max_tokens,
            "messages": messages,
            "stream": stream,
        }
        if system:
            body["system"] = "\n\n".join(system)
        if request.temperature is not None:
            # Anthropic accepts 0..1 where OpenAI accepts 0..2; clamp so that a request that
            # falls back from one provider to the other is not refused for its temperature.
            body["temperature"] = min(request.temperature, 1.0)
        if request.stop:
            body["stop_sequences"] = list(request.stop)
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
        if data.get("type") == "error":
            raise self._stream_error(data)
        content = data.get("content")
        if data.get("type") != "message" or not isinstance(content, list):
            raise self._bad("the answer is not a message", data)
        text = "".join(
            block["text"]
            for block in content
            if isinstance(block, dict)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
        )
        model = data.get("model")
        usage = data.get("usage")
        prompt, completion = _tokens(usage if isinstance(usage, dict) else {})
        return Completion(
            content=text,
            model=model if isinstance(model, str) and model else request.model,
            provider=self.provider,
            usage=Usage(
                prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
            ),
            finish_reason=_finish_reason(data.get("stop_reason")),
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        """Yield the answer's text as it arrives, then one chunk with finish reason and usage.

        The stream is complete only at ``message_stop``; anything short of that raises after
        the deltas already yielded.

        Raises:
            ProviderError: a subclass for each failure; an ``error`` event is mapped by its type
                (``overloaded_error`` → ``ProviderOverloadedError``, ...); a stream cut short or
                an event that is not JSON raises ``ProviderResponseError``.
        """
        timeout = request_timeout(request.timeout if request.timeout is not None else self.timeout)
        prompt_tokens = completion_tokens = 0
        stop_reason: Any = None
        done = False
        events = 0
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
                async for sse in aiter_sse(response):
                    event = self._event(sse.data)
                    events += 1
                    kind = event.get("type") or sse.event
                    if kind == "message_start":
                        message = event.get("message")
                        usage = message.get("usage") if isinstance(message, dict) else None
                        prompt_tokens, completion_tokens = _tokens(
                            usage if isinstance(usage, dict) else {}
                        )
                    elif kind in ("content_block_start", "content_block_delta"):
                        text = _text(event)
                        if text:
                            yield StreamChunk(delta=text)
                    elif kind == "message_delta":
                        delta = event.get("delta")
                        if isinstance(delta, dict) and delta.get("stop_reason"):
                            stop_reason = delta["stop_reason"]
                        usage = event.get("usage")
                        if isinstance(usage, dict):
                            # Counts in message_delta are cumulative; input counts may be absent.
                            prompt, completion = _tokens(usage)
                            prompt_tokens = prompt or prompt_tokens
                            completion_tokens = completion or completion_tokens
                    elif kind == "message_stop":
                        done = True
                        break
                    elif kind == "error":
                        raise self._stream_error(event)
                    # ping, content_block_stop and event types added later carry nothing we use.
        if not done:
            raise self._bad(f"the stream ended after {events} event(s) without message_stop")
        yield StreamChunk(
            finish_reason=_finish_reason(stop_reason) or "stop",
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            ),
        )

    def _event(self, data: str) -> dict[str, Any]:
        try:
            event = json.loads(data)
        except ValueError:
            raise self._bad(f"a stream event is not JSON: {data[:200]!r}") from None
        if not isinstance(event, dict):
            raise self._bad(f"a stream event is not a JSON object: {data[:200]!r}")
        return event

    def _stream_error(self, body: dict[str, Any]) -> ProviderError:
        message, kind = vendor_error(body)
        cls = _STREAM_ERRORS.get(kind or "", ProviderResponseError)
        detail = f" [{kind}]" if kind else ""
        return cls(
            f"{message or 'the provider sent an error'}{detail}", provider=self.provider, body=body
        )

    def _bad(self, message: str, body: Any = None) -> ProviderResponseError:
        return ProviderResponseError(message, provider=self.provider, body=body)


def _text(event: dict[str, Any]) -> str:
    """The text a ``content_block_start`` or ``content_block_delta`` event adds, if any."""
    part = event.get("delta") if event.get("type") == "content_block_delta" else None
    if part is None:
        part = event.get("content_block")
    if not isinstance(part, dict) or part.get("type") not in ("text_delta", "text"):
        return ""
    text = part.get("text")
    return text if isinstance(text, str) else ""


def _tokens(usage: dict[str, Any]) -> tuple[int, int]:
    """``(prompt, completion)`` tokens; prompt-cache reads and writes count as prompt tokens."""
    prompt = sum(
        _int(usage.get(key))
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return prompt, _int(usage.get("output_tokens"))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _finish_reason(stop_reason: Any) -> str | None:
    if not isinstance(stop_reason, str):
        return None
    return _FINISH_REASONS.get(stop_reason, stop_reason)
