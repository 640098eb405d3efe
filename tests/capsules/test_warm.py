"""The warm pool: calls are served by sandboxes started before the call, each used once, so
no state (module globals, files in its work folder) passes from one call to the next; a call
that fails or times out leaves the next one served as well. Real bubblewrap, no mocks."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from somaagent.capsules.catalog import catalog_package
from somaagent.capsules.manifest import Manifest
from somaagent.capsules.package import from_folder
from somaagent.capsules.service import CapsuleService, SandboxPolicy
from tests.capsules.conftest import SANDBOX_ROOT, Gateway
from tests.capsules.test_hostile import _sandbox_pids

pytestmark = pytest.mark.anyio

TOOLS = """
import os
import time

IMPORTED_AT = time.time()
CALLS = 0


def remember():
    global CALLS
    CALLS += 1
    with open("notes.txt", "a") as notes:
        notes.write("x")
    with open("notes.txt") as notes:
        lines = len(notes.read())
    return {"calls": CALLS, "notes": lines, "pid_ns_pid": os.getpid(), "imported_at": IMPORTED_AT}


def fail():
    raise RuntimeError("on purpose")


def spin():
    while True:
        pass
"""


def _capsule(folder: Path) -> Path:
    folder.mkdir()
    (folder / "tools.py").write_text(TOOLS)
    (folder / "capsule.yaml").write_text(
        "name: stateful\nversion: 1.0.0\nkind: python\nentry: tools.py\n"
        "tools: [{name: remember}, {name: fail}, {name: spin}]\n"
        "permissions: {timeout_s: 2, cpu_s: 5}\n"
    )
    return folder


async def _ready(service: CapsuleService, manifest: Manifest) -> None:
    assert service.warm is not None
    key = service.runner.warm_key(manifest)
    with anyio.fail_after(20):
        while service.warm.ready(key) < 1:
            await anyio.sleep(0.02)


async def test_warm_calls_use_a_fresh_process_each(service: CapsuleService, tmp_path: Path) -> None:
    warm = CapsuleService(service.sessions, SandboxPolicy(root=SANDBOX_ROOT, warm_pool=1))
    package = from_folder(_capsule(tmp_path / "c"))
    assert package.manifest.sha256 is not None
    await warm.install_package("acme", package)
    manifest = package.manifest
    async with warm.running():
        first = await warm.execute("acme", "stateful", tool="remember")  # cold; fills the pool
        assert not first.is_error, first.error
        seen = [first.structured]
        for _ in range(2):
            await _ready(warm, manifest)
            asked = time.time()
            ex = await warm.execute("acme", "stateful", tool="remember")
            assert not ex.is_error, ex.error
            assert ex.sandbox_tier == warm.tier
            assert ex.structured is not None
            assert ex.structured["imported_at"] < asked  # started before the call: warm
            seen.append(ex.structured)
        # No state from an earlier call: module globals and work-folder files start afresh.
        assert [(s["calls"], s["notes"]) for s in seen if s] == [(1, 1)] * 3
        assert warm.warm is not None and warm.warm.hits == 2

        # A failed call and a timeout discard their process; the next call is served warm.
        await _ready(warm, manifest)
        failed = await warm.execute("acme", "stateful", tool="fail")
        assert failed.is_error and "on purpose" in (failed.error or "")
        await _ready(warm, manifest)
        spun = await warm.execute("acme", "stateful", tool="spin")
        assert spun.is_error and "timeout" in (spun.error or "")
        await _ready(warm, manifest)
        after = await warm.execute("acme", "stateful", tool="remember")
        assert after.structured is not None and after.structured["calls"] == 1
        assert warm.warm.hits == 5
        await _ready(warm, manifest)
    # Leaving the pool kills the processes still waiting.
    with anyio.fail_after(5):
        while os.geteuid() == 0 and _sandbox_pids():
            await anyio.sleep(0.05)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"capsules_warm_pool": 1}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_gateway_keeps_a_warm_pool_when_configured(gateway: Gateway) -> None:
    service = gateway.app.state.capsules
    assert service.warm is not None and service.warm.size == 1
    await gateway.client.post("/v1/capsules", json={"id": "calculator"})
    calculator = catalog_package("calculator")
    assert calculator is not None
    for expected in (0, 1):
        if expected:
            await _ready(service, calculator.manifest)
        done = await gateway.client.post(
            "/v1/capsules/calculator/execute", json={"arguments": {"expression": "2*(3+4)"}}
        )
        assert done.json()["structured"] == {"result": 14}, done.text
        assert service.warm.hits == expected
