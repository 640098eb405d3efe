"""Fixtures for the memory tests (shared by parts A and B)."""

from __future__ import annotations

import os

import pytest

# Nothing in these tests may reach a model hub: the local model's files come from a wheel.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio (the gateway's loop)."""
    return "asyncio"
