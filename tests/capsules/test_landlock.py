"""The ``landlock`` tier (Landlock + seccomp, no namespaces): the hostile capsule's attempts
end as errors there too, and the tier is recorded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from somaagent.capsules.package import from_folder
from somaagent.capsules.service import CapsuleService, SandboxPolicy
from tests.capsules.conftest import SANDBOX_ROOT

pytestmark = pytest.mark.anyio

HOSTILE = Path(__file__).parent / "hostile"


@pytest.fixture
async def confined(service: CapsuleService) -> CapsuleService:
    if os.geteuid() != 0:
        pytest.skip("runs as root (as CI does): per-execution uids")
    landlock = CapsuleService(service.sessions, SandboxPolicy(root=SANDBOX_ROOT, tier="landlock"))
    await landlock.install_package("acme", from_folder(HOSTILE))
    return landlock


async def _error(service: CapsuleService, tool: str, **arguments: object) -> str:
    ex = await service.execute("acme", "hostile", tool=tool, arguments=dict(arguments))
    assert ex.is_error, f"{tool} succeeded under landlock: {ex.text}"
    assert ex.sandbox_tier == "landlock"
    return ex.error or ""


async def test_landlock_tier_confines(confined: CapsuleService, tmp_path: Path) -> None:
    ok = await confined.execute("acme", "hostile", tool="ok")
    assert not ok.is_error, ok.error
    assert ok.sandbox_tier == "landlock" and ok.structured is not None
    assert ok.structured["uid"] != 0
    assert "Permission denied" in await _error(confined, "connect", host="1.1.1.1", port=80)
    assert "Permission denied" in await _error(confined, "connect", host="127.0.0.1", port=22)
    assert "Permission denied" in await _error(confined, "write_file", path="/etc/capsule-x")
    assert "Permission denied" in await _error(confined, "write_file", path="/tmp/capsule-x")
    database = tmp_path / "capsules.db"
    assert "Permission denied" in await _error(confined, "read_file", path=str(database))
    assert "Permission denied" in await _error(confined, "read_file", path="/etc/passwd")
    assert "MemoryError" in await _error(confined, "allocate", mb=2048)
    assert not Path("/etc/capsule-x").exists() and not Path("/tmp/capsule-x").exists()
    env = await confined.execute("acme", "hostile", tool="env")
    assert env.structured is not None
    assert not any(k.startswith("SOMA_") for k in env.structured["environ"])
