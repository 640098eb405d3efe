"""Capsule execute latency: a cold sandboxed process per call, by sandbox tier, against
running the same function in-process; and the sandbox's own start-up cost.

What is timed, interleaved round by round so load drifts hit every variant alike:

* ``in-process``: the calculator's ``evaluate("2*(3+4)")`` imported and called directly.
* ``runner/<tier>`` (``bwrap``, ``landlock``, ``rlimits``: those that work here): one cold
  call through :class:`somaagent.capsules.runner.Runner`: unpack check, a fresh uid and work
  folder, ``prlimit`` + ``setpriv`` (+ ``bwrap``, or the Landlock and seccomp launcher), a bare
  ``python -I -S`` running the stdlib MCP server, the official ``mcp`` client's handshake,
  ``tools/call``, the output-schema check, and the teardown.
* ``runner/<tier> warm``: the same call served by a sandbox the warm pool started before the
  call (``SOMA_CAPSULES_WARM_POOL``; each process serves one call, then is discarded and
  replaced in the background). The harness waits, untimed, until one is ready.
* ``runner/bwrap +egress``: a cold call of the same capsule with a network allow-list, so the
  egress proxy's Unix socket, the relay inside the sandbox and the proxy environment are set
  up (the tool itself uses no network).
* ``service/bwrap``: the same through :class:`CapsuleService.execute` on SQLite (argument
  check, version lookup, execution record).
* ``start/<tier>``: the sandbox alone: ``/bin/true`` in it, and ``python -I -S -c pass`` in it.
* ``python+mcp import``: a fresh interpreter importing the official ``mcp`` server modules,
  the cost a child built on the ``mcp`` package would pay on every cold call.

Target: cold median under 150 ms.

Usage (as root, as CI runs, for per-execution uids)::

    .venv/bin/python bench/capsules.py [--runs 40]

Writes ``bench/results/capsules.{json,md}`` with the machine, load average and settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from somaagent.capsules import sandbox as sandbox_module
from somaagent.capsules.catalog import CATALOG_DIR, catalog_package
from somaagent.capsules.runner import Runner
from somaagent.capsules.sandbox import (
    CONFINE_NAME,
    Limits,
    SandboxSpec,
    build_command,
    detect_tier,
    take_uid,
)
from somaagent.capsules.service import CapsuleService, SandboxPolicy
from somaagent.capsules.warm import WarmPool
from somaagent.db import make_engine, make_sessionmaker, migrate
from somaagent.db.base import Tenant

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_MS = 150.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values), 3),
        "p95_ms": round(_percentile(values, 0.95), 3),
        "min_ms": round(min(values), 3),
        "runs": len(values),
    }


def _spawn(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return (time.perf_counter() - started) * 1000


async def main(runs: int) -> dict[str, Any]:
    root = Path(tempfile.gettempdir()) / "somaagent-capsules-bench"
    shutil.rmtree(root, ignore_errors=True)
    tier = detect_tier(root)
    order = ["bwrap", "landlock", "rlimits"]
    tiers = order[order.index(tier) :]
    package = catalog_package("calculator")
    assert package is not None
    archive = package.to_archive()
    tool = package.manifest.tool(None)
    arguments = {"expression": "2*(3+4)"}
    runners = {name: Runner(root, name) for name in tiers}  # type: ignore[arg-type]
    pools = {name: WarmPool(1) for name in tiers}
    warm_runners = {
        name: Runner(root, name, warm=pools[name])  # type: ignore[arg-type]
        for name in tiers
    }
    permissions = package.manifest.permissions.model_copy(update={"network": ["example.com"]})
    networked = package.manifest.model_copy(
        update={
            "permissions": permissions,
            "sha256": hashlib.sha256(b"egress:" + archive).hexdigest(),
        }
    )

    spec = importlib.util.spec_from_file_location("calc", CATALOG_DIR / "calculator" / "tools.py")
    assert spec is not None and spec.loader is not None
    calc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calc)

    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite+aiosqlite:///{folder}/bench.db")
        await migrate(engine)
        sessions = make_sessionmaker(engine)
        async with sessions() as session, session.begin():
            session.add(Tenant(id="bench"))
        service = CapsuleService(sessions, SandboxPolicy(root=root, tier=tier))
        await service.install("bench", capsule_id="calculator")

        python = sys.executable
        work = root / "work" / "start"
        work.mkdir(parents=True, exist_ok=True)
        os.chmod(work, 0o777)
        launcher = Path(sandbox_module.__file__).with_name("_confine.py")
        shutil.copyfile(launcher, work / CONFINE_NAME)
        os.chmod(work / CONFINE_NAME, 0o644)

        def start(tier_name: str, argv: list[str]) -> Callable[[], float]:
            def run() -> float:
                uid = take_uid()
                sandbox = SandboxSpec(
                    argv=argv, code_dir=work, work_dir=work, limits=Limits(), uid=uid
                )
                return _spawn(build_command(sandbox, tier_name))  # type: ignore[arg-type]

            return run

        from somaagent.capsules.sandbox import sandbox_python

        bare_python, _ = sandbox_python()
        sync_variants: dict[str, Callable[[], float]] = {}
        for name in tiers:
            sync_variants[f"start/{name}: /bin/true"] = start(name, ["/bin/true"])
            sync_variants[f"start/{name}: python -I -S -c pass"] = start(
                name, [bare_python, "-I", "-S", "-c", "pass"]
            )
        sync_variants["python+mcp import (no sandbox)"] = lambda: _spawn(
            [python, "-c", "import mcp.server.lowlevel, mcp.server.stdio"]
        )

        def in_process() -> float:
            started = time.perf_counter()
            assert calc.evaluate("2*(3+4)") == 14
            return (time.perf_counter() - started) * 1000

        async def through(runner: Runner) -> float:
            started = time.perf_counter()
            outcome = await runner.call(package.manifest, archive, tool, arguments)
            assert not outcome.is_error and outcome.structured == {"result": 14}, outcome.error
            return (time.perf_counter() - started) * 1000

        async def warm_call(runner: Runner) -> float:
            assert runner.warm is not None
            key = runner.warm_key(package.manifest)
            runner.warm.refill(key, lambda: runner._open_warm(package.manifest, archive))
            while runner.warm.ready(key) < 1:  # untimed: the pool refills between calls
                await asyncio.sleep(0.005)
            hits = runner.warm.hits
            elapsed = await through(runner)
            assert runner.warm.hits == hits + 1
            # untimed: let the replacement start now, not during the next variant's timing
            while runner.warm.ready(key) < 1:
                await asyncio.sleep(0.005)
            return elapsed

        async def egress_call() -> float:
            started = time.perf_counter()
            outcome = await runners["bwrap"].call(networked, archive, tool, arguments)
            assert not outcome.is_error and outcome.structured == {"result": 14}, outcome.error
            return (time.perf_counter() - started) * 1000

        async def via_service() -> float:
            started = time.perf_counter()
            done = await service.execute("bench", "calculator", arguments=arguments)
            assert not done.is_error, done.error
            return (time.perf_counter() - started) * 1000

        async_variants: dict[str, Callable[[], Awaitable[float]]] = {
            f"runner/{name}": functools.partial(through, runners[name]) for name in tiers
        }
        for name in tiers:
            async_variants[f"runner/{name} warm"] = functools.partial(warm_call, warm_runners[name])
        if "bwrap" in tiers:
            async_variants["runner/bwrap +egress"] = egress_call
        async_variants[f"service/{tier}"] = via_service
        pooling = contextlib.AsyncExitStack()
        for pool in pools.values():
            await pooling.enter_async_context(pool.running())

        samples: dict[str, list[float]] = {"in-process": []}
        for key in [*async_variants, *sync_variants]:
            samples[key] = []
        for name in async_variants:  # warm the code cache and imports: not timed
            await async_variants[name]()
        load_before = os.getloadavg()
        for _ in range(runs):
            samples["in-process"].append(in_process())
            for name, variant in async_variants.items():
                samples[name].append(await variant())
            for name, sync_variant in sync_variants.items():
                samples[name].append(sync_variant())
        load_after = os.getloadavg()
        await pooling.aclose()
        await engine.dispose()

    figures = {name: _summary(values) for name, values in samples.items()}
    cold = figures[f"runner/{tier}"]["median_ms"]
    warm = figures[f"runner/{tier} warm"]["median_ms"]
    return {
        "benchmark": "capsules",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sandbox_python": bare_python,
            "bwrap": shutil.which("bwrap") is not None,
            "euid": os.geteuid(),
        },
        "load_average": {"before": load_before, "after": load_after},
        "settings": {"runs": runs, "tool": "calculator.evaluate", "arguments": arguments},
        "detected_tier": tier,
        "target_cold_median_ms": TARGET_MS,
        "meets_target": cold < TARGET_MS,
        "warm_median_ms": warm,
        "figures": figures,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Capsule execute latency",
        "",
        f"Taken {result['when']} on {result['machine']['platform']}, "
        f"{result['machine']['cpus']} CPUs (shared), load average "
        f"{result['load_average']['before'][0]:.2f} before and "
        f"{result['load_average']['after'][0]:.2f} after; {result['settings']['runs']} runs of "
        'each variant, interleaved. Tool: `calculator.evaluate("2*(3+4)")`.',
        "",
        "| variant | median ms | p95 ms | min ms |",
        "|---|---:|---:|---:|",
    ]
    for name, row in result["figures"].items():
        lines.append(f"| {name} | {row['median_ms']} | {row['p95_ms']} | {row['min_ms']} |")
    verdict = "meets" if result["meets_target"] else "misses"
    lines += [
        "",
        f"The cold median through the runner ({result['detected_tier']} tier) {verdict} the "
        f"{result['target_cold_median_ms']:.0f} ms target. `runner/*` is a fresh sandboxed "
        "process per call with the MCP handshake and call by the official client; `service/*` "
        "adds the argument check, the version lookup and the execution record on SQLite; "
        "`start/*` is the sandbox alone. `python+mcp import` is what a child importing the "
        "official `mcp` server package would pay on every cold call, which is why the child "
        "speaks MCP with the standard library. `runner/* warm` is the same call served by a "
        "sandbox the warm pool started beforehand (single use: discarded after the call); "
        "`runner/bwrap +egress` is a cold call with the egress proxy and relay set up for a "
        "network allow-list.",
        "",
        "Run: `.venv/bin/python bench/capsules.py --runs N` (as root for per-execution uids).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=40)
    options = parser.parse_args()
    outcome = asyncio.run(main(options.runs))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "capsules.json").write_text(json.dumps(outcome, indent=2) + "\n")
    (RESULTS / "capsules.md").write_text(render(outcome))
    print(render(outcome))
