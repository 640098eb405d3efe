"""Fixtures for the ``llm`` tests: the anyio backend and adapters wired to the fake vendors."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from somaagent.http import aclose_client
from somaagent.llm.providers.anthropic import AnthropicModel
from somaagent.llm.providers.openai import OpenAIModel
from tests.fakes.fixtures import FakeVendor


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def openai_model(fake_openai: FakeVendor) -> AsyncIterator[OpenAIModel]:
    """An adapter for the fake OpenAI; the shared pool is closed after the test."""
    fake_openai.clear()
    yield OpenAIModel(api_key=fake_openai.api_key, base_url=fake_openai.base_url, timeout=10.0)
    await aclose_client()


@pytest.fixture
async def anthropic_model(fake_anthropic: FakeVendor) -> AsyncIterator[AnthropicModel]:
    """An adapter for the fake Anthropic; the shared pool is closed after the test."""
    fake_anthropic.clear()
    yield AnthropicModel(
        api_key=fake_anthropic.api_key, base_url=fake_anthropic.base_url, timeout=10.0
    )
    await aclose_client()


@pytest.fixture
async def shared_pool() -> AsyncIterator[None]:
    """For tests that build their own adapters: close the shared pool afterwards."""
    yield
    await aclose_client()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
