"""What every resource module shares: the clients it sends through and the answer parsers.

A resource module builds :class:`~somaagent.sdk._base.APICall` objects (paths, parameters,
bodies, parsers: no I/O) and holds a sync and an async class that only hand those calls to
their client. The clients are seen through the two protocols here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel

from somaagent.sdk._base import APICall
from somaagent.sdk._streaming import AsyncMessageStream, MessageStream

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

__all__ = ["AsyncSender", "SyncSender", "drop_none", "model_parser", "no_content"]


class SyncSender(Protocol):
    """What the sync resources need from :class:`~somaagent.sdk.client.Client`."""

    def _call(self, call: APICall[T]) -> T: ...

    def _stream(self, call: APICall[Any]) -> MessageStream: ...


class AsyncSender(Protocol):
    """What the async resources need from :class:`~somaagent.sdk.async_client.AsyncClient`."""

    async def _call(self, call: APICall[T]) -> T: ...

    def _stream(self, call: APICall[Any]) -> AsyncMessageStream: ...


def model_parser(cls: type[M]) -> Callable[[httpx.Response], M]:
    """A parser validating a JSON answer as ``cls``."""

    def parse(response: httpx.Response) -> M:
        return cls.model_validate(response.json())

    return parse


def no_content(response: httpx.Response) -> None:
    """The parser of an answer with no body (``204 No Content``)."""
    return None


def drop_none(**fields: Any) -> dict[str, Any]:
    """The fields that were given, for a request body that leaves defaults to the gateway."""
    return {k: v for k, v in fields.items() if v is not None}
