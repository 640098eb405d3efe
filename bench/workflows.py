"""Durable workflows: what the DBOS engine costs per step, ``batch_chat`` against a plain loop,
and crash trials (``kill -9`` at a random step, restart).

* ``overhead``: a workflow of ``--steps`` trivial steps (``await asyncio.sleep(0)``) through
  :class:`somaagent.workflows.dbos.DBOSEngine`, on SQLite (a file on disk) and on PostgreSQL
  (a throwaway cluster from ``tests/pg.py``, when its binaries exist), against the same
  awaits in a plain loop. Reported: milliseconds per step, engine minus plain.
* ``batch``: ``batch_chat`` of ``--items`` prompts at concurrency 4 through a real gateway
  (in-process uvicorn) and the OpenAI-wire fake, against a plain loop of the same
  ``/v1/chat/completions`` calls, 4 at a time, to the same gateway.
* ``crash``: ``--trials`` runs of ``document_ingest`` (12 batches) in a real gateway process
  (``tests/workflows/_gateway_proc.py``, slowed embedder), each killed with ``kill -9`` after a
  random number of finished batches and started again. Reported: runs lost (not ``succeeded``),
  finished batches embedded again, batches cut short that ran again, seconds from the restart
  (process start) to the run's next step event.

Usage::

    .venv/bin/python bench/workflows.py [--only overhead,batch,crash] [--trials 20]

Writes ``bench/results/workflows.{json,md}`` with the machine, load average and settings. A
run of some parts (``--only batch``) keeps the other parts' last results from the JSON, and
each part records when, under what load and with which settings it was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from somaagent.workflows.dbos import DBOSEngine, EngineConfig  # noqa: E402
from somaagent.workflows.engine import (  # noqa: E402
    NO_RETRY,
    RunContext,
    WorkflowRegistry,
    WorkflowTypeSpec,
)

RESULTS = ROOT / "bench" / "results"


class Steps(BaseModel):
    steps: int


async def _noop() -> int:
    await asyncio.sleep(0)
    return 1


async def _many(ctx: RunContext, body: Steps) -> int:
    total = 0
    for i in range(body.steps):
        total += await ctx.step(f"s-{i}", _noop, policy=NO_RETRY)
    return total


async def _engine_ms_per_step(url: str, steps: int, runs: int) -> dict[str, float]:
    registry = WorkflowRegistry()
    registry.register(WorkflowTypeSpec(name="bench_steps", input_model=Steps, run=_many))
    engine = DBOSEngine(
        registry,
        EngineConfig(system_database_url=url, polling_interval_s=0.01, maintenance_interval_s=60),
    )
    await engine.open()
    per_step: list[float] = []
    plain: list[float] = []
    try:
        for run in range(runs + 1):
            await engine.start("bench", "bench_steps", {"steps": steps}, id=f"r{run}")
            async for event in engine.events("bench", f"r{run}"):
                if event.type == "run.started":
                    first = time.perf_counter()  # queueing aside: the steps alone
            elapsed = time.perf_counter() - first
            begin = time.perf_counter()
            for _ in range(steps):
                await _noop()
            plain_elapsed = time.perf_counter() - begin
            if run:  # the first run warms up
                per_step.append(elapsed / steps * 1000)
                plain.append(plain_elapsed / steps * 1000)
    finally:
        await engine.aclose()
    return {
        "engine_ms_per_step": round(statistics.median(per_step), 3),
        "plain_ms_per_step": round(statistics.median(plain), 4),
        "overhead_ms_per_step": round(statistics.median(per_step) - statistics.median(plain), 3),
        "runs": runs,
        "steps": steps,
    }


def overhead(steps: int, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'wf.sqlite'}"
        out["sqlite"] = asyncio.run(_engine_ms_per_step(url, steps, runs))
    from tests.pg import find_bindir, start_cluster

    if find_bindir() is None:
        out["postgres"] = "skipped: no PostgreSQL server binaries here"
        return out
    cluster = start_cluster()
    try:
        url = cluster.create_database("bench_" + secrets.token_hex(4))
        out["postgres"] = asyncio.run(_engine_ms_per_step(url, steps, runs))
    finally:
        cluster.stop()
    return out


def batch(items: int) -> dict[str, Any]:
    from tests.fakes._server import run_asgi
    from tests.fakes.openai_server import FakeOpenAI

    from somaagent.gateway.app import create_app
    from somaagent.gateway.settings import Settings

    fake = FakeOpenAI()
    with tempfile.TemporaryDirectory() as tmp, run_asgi(fake.app) as fake_url:
        settings = Settings(
            data_dir=Path(tmp),
            openai_base_url=fake_url + "/v1",
            openai_api_key=fake.api_key,
            default_model="gpt-4o-mini",
            rate_limit_per_minute=0,
        )
        admin: list[str] = []
        os.environ["SOMA_WORKFLOW_POLLING_INTERVAL_S"] = "0.02"
        app = create_app(settings, on_admin_key=admin.append)
        with run_asgi(app, lifespan="on") as url:
            headers = {"Authorization": f"Bearer {admin[0]}"}
            prompts = [f"question number {i}" for i in range(items)]
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                body = {"input": {"items": [{"prompt": p} for p in prompts], "concurrency": 4}}
                warm = http.post(
                    "/v1/workflows/batch_chat/runs", json={"input": {"items": [{"prompt": "warm"}]}}
                ).json()["id"]
                while http.get(f"/v1/workflow-runs/{warm}").json()["status"] != "succeeded":
                    time.sleep(0.01)  # the engine launched and the model warm, not overlapping
                started = time.perf_counter()
                run_id = http.post("/v1/workflows/batch_chat/runs", json=body).json()["id"]
                while http.get(f"/v1/workflow-runs/{run_id}").json()["status"] != "succeeded":
                    time.sleep(0.01)
                workflow_s = time.perf_counter() - started

            async def plain() -> float:
                limit = asyncio.Semaphore(4)
                async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:

                    async def one(prompt: str) -> None:
                        async with limit:
                            r = await client.post(
                                "/v1/chat/completions",
                                json={
                                    "model": "gpt-4o-mini",
                                    "messages": [{"role": "user", "content": prompt}],
                                },
                            )
                            r.raise_for_status()

                    begin = time.perf_counter()
                    await asyncio.gather(*(one(p) for p in prompts))
                    return time.perf_counter() - begin

            plain_s = asyncio.run(plain())
    return {
        "items": items,
        "concurrency": 4,
        "batch_chat_s": round(workflow_s, 3),
        "batch_chat_items_per_s": round(items / workflow_s, 1),
        "plain_loop_s": round(plain_s, 3),
        "plain_items_per_s": round(items / plain_s, 1),
        "ratio": round(workflow_s / plain_s, 2),
        "scheduler": "sliding pool (RunContext.pool)",
    }


def crash(trials: int, seed: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.workflows.test_crash import docs, embedded, gateway

    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for trial in range(trials):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            url = f"sqlite+aiosqlite:///{data / 'soma.db'}"
            kill_after = rng.randint(1, 10)
            body = {
                "id": "t",
                "input": {"collection": "kb", "documents": docs(24), "batch_size": 2},
            }
            with gateway(data, url) as first:
                key = (data / "admin.key").read_text()
                headers = {"Authorization": f"Bearer {key}"}
                with httpx.Client(base_url=first.url, headers=headers, timeout=30) as http:
                    http.post("/v1/workflows/document_ingest/runs", json=body)
                    last = -1
                    with http.stream("GET", "/v1/workflow-runs/t/events") as stream:
                        for line in stream.iter_lines():
                            if line.startswith("data: "):
                                event = json.loads(line[6:])
                                last = event["seq"]
                                if (
                                    event["type"] == "run.progress"
                                    and event["data"]["done"] >= kill_after
                                ):
                                    break
                first.kill()
                killed = time.perf_counter()
            first_pid = first.popen.pid
            restart = time.perf_counter()
            with (
                gateway(data, url) as second,
                httpx.Client(base_url=second.url, headers=headers, timeout=60) as http,
            ):
                ready_s = time.perf_counter() - restart
                resumed_s = None
                with http.stream(
                    "GET", "/v1/workflow-runs/t/events", params={"after": last}
                ) as stream:
                    for line in stream.iter_lines():
                        if line.startswith("data: ") and resumed_s is None:
                            resumed_s = time.perf_counter() - restart
                for _ in range(600):
                    run = http.get("/v1/workflow-runs/t").json()
                    if run["status"] in ("succeeded", "failed", "cancelled"):
                        break
                    time.sleep(0.05)
            by_doc: dict[str, list[int]] = {}
            for entry in embedded(data):
                by_doc.setdefault(entry["text"].split(" ", 1)[0], []).append(entry["pid"])
            finished_docs = {f"doc-{i}" for i in range(2 * kill_after)}
            again = sorted({d for d in finished_docs if len(by_doc.get(d, [])) > 1})
            cut_short = sorted(
                {
                    d
                    for d, pids in by_doc.items()
                    if d not in finished_docs and pids.count(first_pid) and len(pids) > 1
                }
            )
            rows.append(
                {
                    "trial": trial,
                    "killed_after_batches": kill_after,
                    "status": run["status"],
                    "finished_docs_embedded_again": len(again),
                    "cut_short_docs_embedded_again": len(cut_short),
                    "restart_to_resumed_s": round(resumed_s or float("nan"), 2),
                    "restart_to_ready_s": round(ready_s, 2),
                    "kill_to_restart_s": round(restart - killed, 3),
                }
            )
            print(rows[-1], flush=True)
    resumed = [r["restart_to_resumed_s"] for r in rows]
    after_ready = [r["restart_to_resumed_s"] - r["restart_to_ready_s"] for r in rows]
    return {
        "trials": trials,
        "seed": seed,
        "runs_lost": sum(r["status"] != "succeeded" for r in rows),
        "finished_steps_re_executed": sum(r["finished_docs_embedded_again"] for r in rows),
        "cut_short_steps_re_run": sum(r["cut_short_docs_embedded_again"] > 0 for r in rows),
        "restart_to_resumed_s_median": round(statistics.median(resumed), 2),
        "restart_to_resumed_s_max": round(max(resumed), 2),
        "ready_to_resumed_s_median": round(statistics.median(after_ready), 2),
        "rows": rows,
    }


SETTINGS_OF = {"overhead": ("steps", "runs"), "batch": ("items",), "crash": ("trials", "seed")}


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Durable workflows (bench/workflows.py)",
        "",
        f"Last written {report['date']}, {m['platform']}, Python {m['python']}, "
        f"{m['cpus']} CPUs, load average before {report['load_before']} after "
        f"{m['load_average']}; each part below says when it was measured.",
        "",
    ]
    measured = report.get("measured", {})

    def when(part: str) -> list[str]:
        m = measured.get(part)
        if not m:
            return []
        return [
            f"Measured {m['date']}, load average before {m['load_before']} after "
            f"{m['load_after']}, settings {m['settings']}.",
            "",
        ]

    if "overhead" in report:
        lines += [
            "## Per-step overhead",
            "",
            *when("overhead"),
            "| database | engine ms/step | plain ms/step | overhead ms/step |",
            "|---|---|---|---|",
        ]
        for name, row in report["overhead"].items():
            if isinstance(row, dict):
                cells = (
                    row["engine_ms_per_step"],
                    row["plain_ms_per_step"],
                    row["overhead_ms_per_step"],
                )
                lines.append(f"| {name} | " + " | ".join(str(c) for c in cells) + " |")
            else:
                lines.append(f"| {name} | {row} | | |")
        lines.append("")
    if "batch" in report:
        b = report["batch"]
        lines += [
            "## batch_chat against a plain loop",
            "",
            *when("batch"),
            f"{b['items']} prompts, 4 at a time, OpenAI-wire fake upstream: batch_chat "
            f"{b['batch_chat_s']} s ({b['batch_chat_items_per_s']} items/s), plain loop "
            f"{b['plain_loop_s']} s ({b['plain_items_per_s']} items/s), ratio {b['ratio']}.",
            "",
        ]
    if "crash" in report:
        c = report["crash"]
        lines += [
            "## Crash trials (kill -9 at a random batch, restart)",
            "",
            *when("crash"),
            f"{c['trials']} trials (seed {c['seed']}): runs lost **{c['runs_lost']}** (target 0); "
            f"finished steps re-executed **{c['finished_steps_re_executed']}** (target 0); "
            f"trials whose cut-short step ran again: {c['cut_short_steps_re_run']}; "
            "restart (process start) to the next step event: median "
            f"{c['restart_to_resumed_s_median']} s, max {c['restart_to_resumed_s_max']} s, "
            f"of which {c['ready_to_resumed_s_median']} s (median) after the gateway answered "
            "/healthz "
            "(the rest is the process starting on this loaded 2-CPU machine).",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="overhead,batch,crash")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    parts = set(args.only.split(","))
    previous = RESULTS / "workflows.json"
    report: dict[str, Any] = {}
    if parts != {"overhead", "batch", "crash"} and previous.exists():
        report = json.loads(previous.read_text())  # keep the parts not measured now
        for part in ("overhead", "batch", "crash"):
            if part in report and part not in report.get("measured", {}):
                # written before parts were dated: they were all measured in that one run
                report.setdefault("measured", {})[part] = {
                    "date": report["date"],
                    "load_before": report["load_before"],
                    "load_after": report["machine"]["load_average"],
                    "settings": {k: report["settings"][k] for k in SETTINGS_OF[part]},
                }
    report.update(
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        load_before=[round(x, 2) for x in os.getloadavg()],
        settings=vars(args),
    )
    measured = report.setdefault("measured", {})
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "overhead": lambda: overhead(args.steps, args.runs),
        "batch": lambda: batch(args.items),
        "crash": lambda: crash(args.trials, args.seed),
    }
    for part, run in runners.items():
        if part in parts:
            load_before = [round(x, 2) for x in os.getloadavg()]
            report[part] = run()
            measured[part] = {
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "load_before": load_before,
                "load_after": [round(x, 2) for x in os.getloadavg()],
                "settings": {k: vars(args)[k] for k in SETTINGS_OF[part]},
            }
    report["machine"] = machine()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "workflows.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "workflows.md").write_text(render(report) + "\n")
    print(render(report))


if __name__ == "__main__":
    main()
