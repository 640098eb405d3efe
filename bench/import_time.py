"""How long ``import somaagent`` takes: the SDK's start-up cost.

Runs ``python -X importtime -c "import somaagent"`` in fresh interpreters, ``--runs`` times,
interleaved with ``from somaagent import Client`` (the clients, and httpx under them, load on
first use) and ``import somaagent.cli`` (what every ``soma`` command pays). Each interpreter
times its own import statement twice: wall clock (what ``-X importtime`` reports as the
cumulative time) and CPU time (``time.process_time``), which a loaded shared machine disturbs
less. Reports the medians and the spread, and the slowest modules of the median run. The target
is under 150 ms for ``import somaagent``.

Bytecode is cached in a temporary ``PYTHONPYCACHEPREFIX`` (even where
``PYTHONDONTWRITEBYTECODE`` is set), as an installed package has its ``.pyc`` files; the first,
untimed, round writes it.

Records the machine, the Python, the load average before and after, and the settings in
``bench/results/import_time.{json,md}``.

Usage::

    .venv/bin/python bench/import_time.py [--runs 15] [--python .venv/bin/python]

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_MS = 150.0
# "import time: self [us] | cumulative | imported package"
_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


STATEMENTS = {
    "import somaagent": "import somaagent",
    "from somaagent import Client": "from somaagent import Client",
    "import somaagent.cli": "import somaagent.cli",
}


@dataclass(frozen=True)
class Run:
    """One interpreter: the statement's wall and CPU milliseconds, and every module's times."""

    wall_ms: float
    cpu_ms: float
    modules: list[tuple[str, float, float]]  # (name, self ms, cumulative ms)


def measure(python: str, statement: str, cache: str) -> Run:
    """Time ``statement`` in a fresh interpreter with ``-X importtime``."""
    env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    code = (
        "import time, json; c = time.process_time(); w = time.perf_counter()\n"
        f"{statement}\n"
        "print(json.dumps([(time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000]))"
    )
    result = subprocess.run(
        [python, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    wall_ms, cpu_ms = json.loads(result.stdout)
    modules: list[tuple[str, float, float]] = []
    for line in result.stderr.splitlines():
        match = _LINE.match(line)
        if match is not None:
            self_us, cumulative_us, _, name = match.groups()
            modules.append((name, int(self_us) / 1000, int(cumulative_us) / 1000))
    return Run(wall_ms=wall_ms, cpu_ms=cpu_ms, modules=modules)


def summarise(runs: list[Run]) -> dict[str, object]:
    """The medians and spread of the runs, and the slowest modules of the median run."""
    walls = sorted(r.wall_ms for r in runs)
    median_run = sorted(runs, key=lambda r: r.wall_ms)[len(runs) // 2]
    slowest = sorted(median_run.modules, key=lambda m: m[1], reverse=True)[:12]
    return {
        "wall_median_ms": round(statistics.median(walls), 1),
        "wall_min_ms": round(walls[0], 1),
        "wall_p90_ms": round(walls[int(0.9 * (len(walls) - 1))], 1),
        "wall_max_ms": round(walls[-1], 1),
        "cpu_median_ms": round(statistics.median(r.cpu_ms for r in runs), 1),
        "cpu_min_ms": round(min(r.cpu_ms for r in runs), 1),
        "slowest_self_ms": [
            {"module": name, "self_ms": round(own, 2), "cumulative_ms": round(total, 2)}
            for name, own, total in slowest
        ],
    }


def machine() -> dict[str, object]:
    """What the figures were taken on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def render(report: dict[str, object]) -> str:
    """The Markdown report."""
    host = report["machine"]
    assert isinstance(host, dict)
    on = f"{host['platform']}, {host['processor']}, {host['cpus']} CPUs, Python {host['python']}"
    lines = [
        "# import_time: what `import somaagent` costs",
        "",
        f"Taken {report['when']} on {on}; load average "
        f"{report['load_before']} before, {report['load_after']} after. "
        f"{report['runs']} fresh interpreters per statement, interleaved, `python -X "
        f"importtime`, interpreter `{report['python']}`, bytecode cached. Target for "
        f"`import somaagent`: under {TARGET_MS:.0f} ms.",
        "",
        "| statement | wall median ms | min | p90 | max | CPU median ms | CPU min ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    results = report["results"]
    assert isinstance(results, dict)
    for statement, summary in results.items():
        lines.append(
            f"| `{statement}` | {summary['wall_median_ms']} | {summary['wall_min_ms']} "
            f"| {summary['wall_p90_ms']} | {summary['wall_max_ms']} | {summary['cpu_median_ms']} "
            f"| {summary['cpu_min_ms']} |"
        )
    lines += ["", f"Verdict: {report['verdict']}", ""]
    for statement, summary in results.items():
        lines += [
            f"Slowest modules (own time) in the median run of `{statement}`:",
            "",
            "| module | self ms | cumulative ms |",
            "|---|---:|---:|",
        ]
        for row in summary["slowest_self_ms"]:
            lines.append(f"| `{row['module']}` | {row['self_ms']} | {row['cumulative_ms']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="interpreters per module")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to time")
    parser.add_argument("--name", default="import_time", help="results file name")
    args = parser.parse_args()

    load_before = [round(x, 2) for x in os.getloadavg()]
    runs: dict[str, list[Run]] = {name: [] for name in STATEMENTS}
    with tempfile.TemporaryDirectory(prefix="soma-pyc-") as cache:
        for statement in STATEMENTS.values():
            measure(args.python, statement, cache)  # writes the bytecode; not timed
        for _ in range(args.runs):
            for name, statement in STATEMENTS.items():  # interleaved: the load hits all alike
                runs[name].append(measure(args.python, statement, cache))
    load_after = [round(x, 2) for x in os.getloadavg()]
    results = {name: summarise(measured) for name, measured in runs.items()}
    top = results["import somaagent"]
    wall, cpu = top["wall_median_ms"], top["cpu_median_ms"]
    assert isinstance(wall, float) and isinstance(cpu, float)
    verdict = (
        f"`import somaagent` median {wall} ms wall, {cpu} ms CPU: "
        + ("under" if wall < TARGET_MS else "over")
        + f" the {TARGET_MS:.0f} ms target by the wall clock, "
        + ("under" if cpu < TARGET_MS else "over")
        + " it by CPU time"
    )
    report: dict[str, object] = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "python": args.python,
        "runs": args.runs,
        "load_before": load_before,
        "load_after": load_after,
        "target_ms": TARGET_MS,
        "results": results,
        "verdict": verdict,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(render(report))
    print(render(report))


if __name__ == "__main__":
    main()
