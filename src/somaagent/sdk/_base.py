"""What the twin clients share and that does no I/O.

Configuration (API key, base URL), request building, the retry policy, the mapping of error
responses to :mod:`somaagent.errors`, and the Server-Sent Events decoder all live here once;
:mod:`somaagent.sdk.client` and :mod:`somaagent.sdk.async_client` only send, stream and close.
"""

from __future__ import annotations

import json
import math
import os
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypedDict, TypeVar

import httpx
import pydantic

from somaagent._version import __version__
from somaagent.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    BusyError,
    ConfigurationError,
    SomaAgentError,
    error_for_status,
)
from somaagent.sdk._credentials import credentials_path, load_credentials
from somaagent.types import Message, MessageExchange, StreamEvent

API_KEY_ENV = "SOMA_API_KEY"
BASE_URL_ENV = "SOMA_BASE_URL"
DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2

# 408 is retried too: with the same Idempotency-Key a repeated POST is safe. Of the 409s only
# BusyError is (an earlier attempt with that key still in flight, a run still stopping): any
# other conflict is the same on every try.
_RETRYABLE_STATUSES = frozenset({408, 429})

T = TypeVar("T")


def resolve_api_key(api_key: str | None) -> str:
    """The API key: the argument, else ``SOMA_API_KEY``, else the key ``soma login`` stored.

    Raises:
        ConfigurationError: there is none of the three (or the stored file is unreadable).
    """
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if not key:
        key = load_credentials().get("api_key")
    if not key:
        raise ConfigurationError(
            "no SomaAgent API key: pass api_key=... to Client()/AsyncClient(), set the "
            f"{API_KEY_ENV} environment variable (keys look like soma_sk_...), or run "
            f"`soma login` (it stores the key in {credentials_path()})"
        )
    return key


def resolve_base_url(base_url: str | None) -> str:
    """The gateway's base URL: the argument, else ``SOMA_BASE_URL``, else the URL ``soma login``
    stored, else the local default."""
    url = base_url or os.environ.get(BASE_URL_ENV) or load_credentials().get("base_url")
    url = url or DEFAULT_BASE_URL
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"invalid base URL {url!r}: it must start with http:// or https:// "
            f"(for example {DEFAULT_BASE_URL})"
        )
    return url.rstrip("/")


def user_agent() -> str:
    """The ``User-Agent`` the SDK sends."""
    return f"somaagent-python/{__version__}"


def new_idempotency_key() -> str:
    """A fresh ``Idempotency-Key``: one per logical call, reused by its retries."""
    return f"soma-{uuid.uuid4().hex}"


def title_from(content: str, *, limit: int = 80) -> str:
    """A conversation title made from the first line of a message."""
    first_line = content.strip().splitlines()[0] if content.strip() else "New conversation"
    return first_line if len(first_line) <= limit else first_line[: limit - 1] + "…"


@dataclass(frozen=True)
class APICall(Generic[T]):
    """One logical API call: what to send and how to read a successful answer.

    Attributes:
        method: the HTTP method.
        path: the path under the base URL, starting with ``/``.
        parse: turns the successful response into the call's result.
        params: query parameters (``None`` values are left out).
        json: the JSON body, if any.
        idempotency_key: the ``Idempotency-Key`` for a POST; a fresh one when not given.
        stream: whether the answer is a Server-Sent Events stream.
        files: multipart files, as httpx takes them (``[(field, (name, bytes, type))]``).
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str | int | None] | None = None
    json: Any = None
    idempotency_key: str | None = None
    stream: bool = False
    files: Any = None


class RequestArgs(TypedDict):
    """Keyword arguments for ``httpx.Client.build_request`` (and its async twin)."""

    method: str
    url: str
    params: dict[str, str | int] | None
    json: Any
    files: Any
    headers: dict[str, str]
    timeout: httpx.Timeout


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry, and how long to wait first.

    Connection errors, timeouts, 408, 429, 5xx and the 409s that pass by themselves
    (:class:`~somaagent.errors.BusyError`) are retried up to ``max_retries``
    times. The wait doubles from ``initial_delay`` up to ``max_delay``, less up to a quarter of
    random jitter so that many clients do not retry in lock step. A ``Retry-After`` header is
    honoured exactly; one longer than ``max_retry_after`` is not waited for: the error is
    raised at once, carrying ``retry_after``, so the caller can decide.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    jitter: float = 0.25

    def delay(
        self,
        attempt: int,
        error: SomaAgentError,
        *,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before retrying after failed attempt ``attempt`` (0-based).

        Returns:
            The wait in seconds, or ``None`` when the error must be raised.
        """
        if attempt >= self.max_retries or not is_retryable(error):
            return None
        retry_after = parse_retry_after(error.headers) if isinstance(error, APIError) else None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        backoff = min(self.max_delay, self.initial_delay * 2.0**attempt)
        return backoff * (1 - self.jitter * rand())


@dataclass(frozen=True)
class RetryEvent:
    """A failed attempt that the client is about to retry, handed to ``on_retry``.

    Attributes:
        attempt: which retry comes next (1 for the first).
        delay: the seconds the client waits first.
        error: why the attempt failed.
    """

    attempt: int
    delay: float
    error: SomaAgentError

    @property
    def reason(self) -> str:
        """Why the attempt failed, in a few words."""
        if isinstance(self.error, APIError):
            if self.error.status_code == 429:
                return "rate limited"
            return f"the gateway answered {self.error.status_code}"
        if isinstance(self.error, APITimeoutError):
            return "the request timed out"
        return "the gateway could not be reached"

    def describe(self) -> str:
        """One line for a person waiting: ``rate limited, retrying in 2 s``."""
        seconds = f"{self.delay:.1f}".removesuffix(".0")
        return f"{self.reason}, retrying in {seconds} s"


RetryCallback = Callable[[RetryEvent], None]
"""Called before each retry's wait (the CLI prints :meth:`RetryEvent.describe` on stderr)."""


def is_retryable(error: SomaAgentError) -> bool:
    """Whether trying the same call again may succeed."""
    if isinstance(error, APIConnectionError):
        return True
    if isinstance(error, APIError):
        return (
            isinstance(error, BusyError)
            or error.status_code in _RETRYABLE_STATUSES
            or error.status_code >= 500
        )
    return False


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if present."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def decode_body(response: httpx.Response) -> Any:
    """A read response's body: decoded JSON when it is JSON, else its text."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def error_from_response(response: httpx.Response) -> APIError:
    """The exception for an error response whose body has been read."""
    headers = dict(response.headers)
    return error_for_status(
        response.status_code,
        decode_body(response),
        request_id=response.headers.get("x-request-id"),
        retry_after=parse_retry_after(headers),
        headers=headers,
    )


def connection_error(
    exc: httpx.TransportError, *, base_url: str, mid_stream: bool = False
) -> APIConnectionError:
    """Translate an httpx transport failure into :class:`APIConnectionError` or a timeout."""
    detail = str(exc) or type(exc).__name__
    if mid_stream:
        cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
        return cls(
            f"the message stream from {base_url} broke off ({detail}); the reply is incomplete"
        )
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"the request to the SomaAgent gateway at {base_url} timed out")
    return APIConnectionError(
        f"could not reach the SomaAgent gateway at {base_url} ({detail}); "
        "check the base URL and that the gateway is running (`soma serve`)"
    )


def parse_result(call: APICall[T], response: httpx.Response) -> T:
    """Run ``call.parse`` on a successful response, turning garbage into :class:`APIError`."""
    try:
        return call.parse(response)
    except ValueError as exc:  # json.JSONDecodeError and pydantic.ValidationError
        raise APIError(
            f"unexpected answer to {call.method} {call.path}: {exc}",
            status_code=response.status_code,
            body=decode_body(response),
            request_id=response.headers.get("x-request-id"),
        ) from exc


def check_event_stream(response: httpx.Response) -> None:
    """Raise when a successful streaming answer is not ``text/event-stream``."""
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise APIError(
            f"expected a text/event-stream answer, got {content_type or 'no content type'!r}",
            status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
        )


class BaseClient:
    """Configuration and request building shared by :class:`Client` and :class:`AsyncClient`.

    Attributes:
        api_key: the key sent as ``Authorization: Bearer``.
        base_url: the gateway's base URL, without a trailing slash.
        timeout: the timeout applied to every request.
        max_retries: how many times a failed call is retried.
        on_retry: called before each retry's wait, or ``None``.
    """

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: float | httpx.Timeout,
        max_retries: int,
        on_retry: RetryCallback | None = None,
    ) -> None:
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be 0 or more, not {max_retries}")
        self.api_key = resolve_api_key(api_key)
        self.base_url = resolve_base_url(base_url)
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.max_retries = max_retries
        self.on_retry = on_retry
        self._retry_policy = RetryPolicy(max_retries=max_retries)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _request_args(self, call: APICall[Any]) -> RequestArgs:
        """Everything needed to build the request; call once per logical call."""
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "User-Agent": user_agent(),
            "Accept": "text/event-stream" if call.stream else "application/json",
        }
        if call.method == "POST":
            headers["Idempotency-Key"] = call.idempotency_key or new_idempotency_key()
        params = {k: v for k, v in call.params.items() if v is not None} if call.params else None
        return RequestArgs(
            method=call.method,
            url=self.base_url + call.path,
            params=params or None,
            json=call.json,
            files=call.files,
            headers=headers,
            timeout=self.timeout,
        )

    def _retry_delay(self, attempt: int, error: SomaAgentError) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to raise ``error``.

        Tells ``on_retry`` about a wait before the caller sleeps.
        """
        delay = self._retry_policy.delay(attempt, error)
        if delay is not None and self.on_retry is not None:
            self.on_retry(RetryEvent(attempt=attempt + 1, delay=delay, error=error))
        return delay


@dataclass
class SSEDecoder:
    """Turns the lines of a ``text/event-stream`` into :class:`StreamEvent` objects.

    Follows the WHATWG rules: ``field: value`` lines (one optional space after the colon),
    ``data`` lines joined with newlines, comments (lines starting with ``:``) ignored, and an
    event dispatched at a blank line. An event cut off before its blank line is never
    dispatched. Each event's data must be a JSON object.
    """

    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None
    _started: bool = False

    def decode(self, line: str) -> StreamEvent | None:
        """Feed one line (without its line ending); returns an event when one is complete."""
        if not self._started:
            self._started = True
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None  # "retry" and unknown fields are ignored

    def _dispatch(self) -> StreamEvent | None:
        event, data, self._event, self._data = self._event or "message", self._data, "", []
        if not data:
            return None
        raw = "\n".join(data)
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise APIError(
                f"the gateway sent a malformed {event!r} event: its data is not a JSON object"
                f" ({raw[:200]!r})",
                status_code=200,
                body=raw,
            )
        return StreamEvent(event=event, id=self._id, data=payload)


_TRUNCATED = (
    "the message stream ended before `message.completed`: the connection was cut or the "
    "gateway stopped mid-answer, so the reply is incomplete"
)


class MessageStreamState:
    """Follows a message stream: collects the text and the stored messages, raises on errors.

    Attributes:
        request_id: the gateway's request id for the stream, when known.
        user_message: the stored user message, from ``message.created``.
        reply: the stored assistant message, from ``message.completed``.
    """

    def __init__(self, *, request_id: str | None = None) -> None:
        self.request_id = request_id
        self.user_message: Message | None = None
        self.reply: Message | None = None
        self._parts: list[str] = []

    @property
    def text(self) -> str:
        """The reply's text received so far."""
        return "".join(self._parts)

    @property
    def exchange(self) -> MessageExchange | None:
        """The user message and the reply, once the stream completed."""
        if self.user_message is None or self.reply is None:
            return None
        return MessageExchange(message=self.user_message, reply=self.reply)

    def on_event(self, event: StreamEvent) -> None:
        """Record one event; an ``error`` event raises the exception its problem body names."""
        try:
            if event.event == "message.created":
                self.user_message = Message.model_validate(event.data.get("message"))
            elif event.event == "message.delta":
                self._parts.append(str(event.data.get("delta", "")))
            elif event.event == "message.completed":
                self.reply = Message.model_validate(event.data.get("message"))
        except pydantic.ValidationError as exc:
            raise APIError(
                f"the gateway sent a malformed {event.event!r} event: {exc}",
                status_code=200,
                body=event.data,
                request_id=self.request_id,
            ) from exc
        if event.event == "error":
            status = event.data.get("status")
            raise error_for_status(
                status if isinstance(status, int) and status >= 400 else 502,
                event.data,
                request_id=self.request_id,
            )

    def finish(self) -> None:
        """Call at the end of the stream: raises unless ``message.completed`` arrived."""
        if self.reply is None:
            raise APIConnectionError(_TRUNCATED)

    def final_exchange(self) -> MessageExchange:
        """The exchange of a finished stream; raises when the stream did not complete."""
        self.finish()
        if self.user_message is None or self.reply is None:
            raise APIError(
                "the message stream completed without `message.created`",
                status_code=200,
                request_id=self.request_id,
            )
        return MessageExchange(message=self.user_message, reply=self.reply)
