"""The embedded Chroma store's first calls, made at once from several worker threads, all
succeed (the first start used to log ``'RustBindingsAPI' object has no attribute
'bindings'`` and lose the messages being indexed for conversation search)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from somaagent.memory.stores.chroma import ChromaStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_concurrent_first_calls_share_one_client(tmp_path: Path) -> None:
    for attempt in range(3):  # the race lost on most attempts before the fix
        store = ChromaStore(str(tmp_path / f"chroma{attempt}"))
        failures: list[BaseException] = []

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(_first_call, store, failures)
        await store.aclose()
        assert failures == [], failures


async def _first_call(store: ChromaStore, failures: list[BaseException]) -> None:
    try:
        await store.list_collections()
    except Exception as exc:  # collected: every failure is reported by the test
        failures.append(exc)
