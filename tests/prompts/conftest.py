"""Fixtures for the prompt engine's tests."""

from __future__ import annotations

import pytest

from somaagent.prompts.engine import PromptEngine


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def engine() -> PromptEngine:
    """An engine with the default limits (its compile cache is shared, as in the gateway)."""
    return PromptEngine()
