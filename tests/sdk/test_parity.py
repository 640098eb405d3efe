"""The sync and async twins expose the same methods with the same parameters."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from somaagent import AsyncClient, AsyncMessageStream, Client, MessageStream
from somaagent.sdk._capsules import AsyncCapsules, Capsules
from somaagent.sdk._conversations import AsyncConversations, Conversations
from somaagent.sdk._faults import AsyncFaults, Faults
from somaagent.sdk._memory import AsyncEmbeddings, AsyncMemory, Embeddings, Memory
from somaagent.sdk._models import AsyncModels, Models
from somaagent.sdk._prompts import AsyncPrompts, Prompts
from somaagent.sdk._workflows import AsyncWorkflows, Workflows

# Names that differ on purpose: the async spelling of closing and context management.
RENAMED = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}
# Iteration protocols differ by name; they are checked by the stream tests instead.
ITERATION = {"__iter__", "__next__", "__aiter__", "__anext__"}
# Methods that return a stream (or iterate one) are plain methods in both twins.
NOT_COROUTINES = {"stream_message", "text_deltas"}


def _public(cls: type[Any]) -> dict[str, Any]:
    names = {n for n in dir(cls) if not n.startswith("_")}
    names |= {n for n in ("__enter__", "__exit__", "__aenter__", "__aexit__") if hasattr(cls, n)}
    return {name: inspect.getattr_static(cls, name) for name in names}


def _parameters(function: Any) -> list[tuple[str, Any, Any]]:
    signature = inspect.signature(function)
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


TWINS = [
    (Client, AsyncClient),
    (Conversations, AsyncConversations),
    (Models, AsyncModels),
    (MessageStream, AsyncMessageStream),
    (Prompts, AsyncPrompts),
    (Memory, AsyncMemory),
    (Embeddings, AsyncEmbeddings),
    (Faults, AsyncFaults),
    (Workflows, AsyncWorkflows),
    (Capsules, AsyncCapsules),
]


@pytest.mark.parametrize(("sync", "async_"), TWINS, ids=lambda c: c.__name__)
def test_twins_have_the_same_methods(sync: type[Any], async_: type[Any]) -> None:
    sync_names = {RENAMED.get(n, n) for n in _public(sync)} - ITERATION
    async_names = set(_public(async_)) - ITERATION
    assert sync_names == async_names


@pytest.mark.parametrize(("sync", "async_"), TWINS, ids=lambda c: c.__name__)
def test_twins_take_the_same_parameters(sync: type[Any], async_: type[Any]) -> None:
    async_members = _public(async_)
    for name, member in _public(sync).items():
        twin = async_members[RENAMED.get(name, name)]
        if isinstance(member, property):
            assert isinstance(twin, property), name
            continue
        if not callable(member):
            continue
        assert _parameters(member) == _parameters(twin), name
        if name in NOT_COROUTINES or name in ITERATION:
            assert not inspect.iscoroutinefunction(twin), name
        elif not name.startswith("__") or name in RENAMED:
            # awaited, or iterated with `async for` (an async generator: list, stream_events)
            assert inspect.iscoroutinefunction(twin) or inspect.isasyncgenfunction(twin), name


def test_client_constructors_match() -> None:
    assert _parameters(Client.__init__) == _parameters(AsyncClient.__init__)
    assert [p[0] for p in _parameters(Client.__init__)] == [
        "self",
        "api_key",
        "base_url",
        "timeout",
        "max_retries",
        "on_retry",
        "http_client",
    ]


def test_both_clients_have_the_same_resources() -> None:
    with Client(api_key="k") as sync:
        sync_resources = {n for n, v in vars(sync).items() if not n.startswith("_")}
    sync_resources -= {"api_key", "base_url", "timeout", "max_retries", "on_retry"}
    assert sync_resources == {
        "conversations",
        "models",
        "prompts",
        "memory",
        "embeddings",
        "faults",
        "workflows",
        "capsules",
    }
    assert set(AsyncClient.__annotations__) == set(Client.__annotations__)
