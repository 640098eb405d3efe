"""The Python SDK: :class:`Client` and :class:`AsyncClient` over httpx."""

from __future__ import annotations

from somaagent.sdk._base import RetryEvent
from somaagent.sdk._identity import Identity
from somaagent.sdk._streaming import AsyncMessageStream, MessageStream
from somaagent.sdk.async_client import AsyncClient
from somaagent.sdk.client import Client

__all__ = [
    "AsyncClient",
    "AsyncMessageStream",
    "Client",
    "Identity",
    "MessageStream",
    "RetryEvent",
]
