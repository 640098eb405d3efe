"""The hostile suite: a capsule that tries to escape, starve or lie ends as ``is_error`` with
a clear reason, within its limits, and leaves nothing behind. Real sandbox, no mocks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import pytest

from somaagent.capsules.package import from_folder
from somaagent.capsules.sandbox import _UID_BASE, _UID_POOL
from somaagent.capsules.service import CapsuleService

pytestmark = pytest.mark.anyio

HOSTILE = Path(__file__).parent / "hostile"


def _sandbox_pids() -> list[int]:
    """Processes still running under any execution uid."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                uid = entry.stat().st_uid
            except OSError:
                continue
            if _UID_BASE <= uid < _UID_BASE + _UID_POOL:
                pids.append(int(entry.name))
    return pids


@pytest.fixture
async def hostile(service: CapsuleService) -> CapsuleService:
    if os.geteuid() != 0:
        pytest.skip("the hostile suite runs as root (as CI does): per-execution uids")
    await service.install_package("acme", from_folder(HOSTILE))
    await service.install("globex", capsule_id="calculator")
    return service


async def _run(service: CapsuleService, tool: str, **arguments: object) -> tuple[bool, str, float]:
    started = time.monotonic()
    ex = await service.execute("acme", "hostile", tool=tool, arguments=dict(arguments))
    return ex.is_error, ex.error or ex.text, time.monotonic() - started


async def test_the_sandbox_is_the_strong_tier_here(hostile: CapsuleService) -> None:
    assert hostile.tier == "bwrap"
    ex = await hostile.execute("acme", "hostile", tool="ok")
    assert not ex.is_error, ex.error
    assert ex.sandbox_tier == "bwrap"
    assert ex.structured is not None
    assert ex.structured["uid"] != 0 and ex.structured["cwd"] == "/work"


async def test_no_network(hostile: CapsuleService) -> None:
    failed, reason, _ = await _run(hostile, "connect", host="1.1.1.1", port=80)
    assert failed and "Network is unreachable" in reason
    failed, reason, _ = await _run(hostile, "connect", host="127.0.0.1", port=22)
    assert failed and "refused" in reason.lower()  # its own loopback, nothing of the host's


async def test_cannot_write_outside_its_folder(hostile: CapsuleService) -> None:
    failed, reason, _ = await _run(hostile, "write_file", path="/etc/capsule-was-here")
    assert failed and "Read-only file system" in reason
    failed, reason, _ = await _run(hostile, "write_file", path="/usr/capsule-was-here")
    assert failed and "Read-only file system" in reason
    assert not Path("/etc/capsule-was-here").exists()
    assert not Path("/usr/capsule-was-here").exists()


async def test_cannot_read_the_gateway_database_or_other_capsules(
    hostile: CapsuleService, tmp_path: Path
) -> None:
    database = tmp_path / "capsules.db"
    assert database.exists()
    failed, reason, _ = await _run(hostile, "read_file", path=str(database))
    assert failed and "No such file or directory" in reason
    # globex's calculator is unpacked on the host, but nothing of it is inside acme's sandbox
    await hostile.execute("globex", "calculator", arguments={"expression": "1+1"})
    code = next(
        p
        for p in (hostile.policy.root / "code").iterdir()
        if (p / "tools.py").is_file() and "A calculator" in (p / "tools.py").read_text()
    )
    failed, reason, _ = await _run(hostile, "read_file", path=str(code / "tools.py"))
    assert failed and "No such file or directory" in reason
    failed, reason, _ = await _run(hostile, "list_dir", path="/")
    assert not failed
    assert "root" not in reason and "home" not in reason and "work" in reason


async def test_no_secrets_in_the_environment(
    hostile: CapsuleService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-should-not-leak")
    monkeypatch.setenv("SOMA_DATABASE_URL", "postgresql://secret@db/prod")
    ex = await hostile.execute("acme", "hostile", tool="env")
    assert not ex.is_error
    assert ex.structured is not None
    environ = ex.structured["environ"]
    assert "sk-test-should-not-leak" not in ex.text and "secret@db" not in ex.text
    assert not any(k.startswith("SOMA_") or k.endswith("_API_KEY") for k in environ)
    failed, reason, _ = await _run(hostile, "read_file", path="/proc/1/environ")
    assert not failed or "sk-test" not in reason  # pid 1 is the sandbox's own init


async def test_memory_limit(hostile: CapsuleService) -> None:
    failed, reason, _ = await _run(hostile, "allocate", mb=2048)
    assert failed and "MemoryError" in reason


async def test_cpu_limit_ends_an_infinite_loop(hostile: CapsuleService) -> None:
    failed, reason, took = await _run(hostile, "spin")
    assert failed and ("CPU time" in reason or "timeout" in reason)
    assert took < 6


async def test_output_limits(hostile: CapsuleService) -> None:
    failed, reason, _ = await _run(hostile, "flood", mb=100)
    assert failed and ("limit" in reason or "MemoryError" in reason)
    failed, reason, _ = await _run(hostile, "shout", mb=100)
    assert failed and "output went over the 256 KiB limit" in reason


async def test_output_must_match_the_schema(hostile: CapsuleService) -> None:
    failed, reason, _ = await _run(hostile, "bad_output")
    assert failed and "schema" in reason and "count" in reason


async def test_fork_bomb_is_contained_and_others_keep_running(hostile: CapsuleService) -> None:
    done: dict[str, float] = {}
    results: dict[str, tuple[bool, str, float]] = {}

    async def bomb() -> None:
        results["bomb"] = await _run(hostile, "fork_bomb")
        done["bomb"] = time.monotonic()

    async def neighbour() -> None:
        await anyio.sleep(0.8)  # while the bomb is going off
        ex = await hostile.execute("globex", "calculator", arguments={"expression": "6*7"})
        done["neighbour"] = time.monotonic()
        results["neighbour"] = (ex.is_error, ex.text, 0.0)

    async with anyio.create_task_group() as group:
        group.start_soon(bomb)
        group.start_soon(neighbour)
    failed, reason, took = results["bomb"]
    assert failed and "timeout" in reason, reason
    assert took < 6
    assert results["neighbour"][:2] == (False, "42")
    assert done["neighbour"] < done["bomb"]  # not starved: it finished while the bomb ran
    # the kernel tears a PID namespace down in the background: give it a few seconds
    deadline = time.monotonic() + 6
    while _sandbox_pids() and time.monotonic() < deadline:
        await anyio.sleep(0.2)
    assert _sandbox_pids() == []
