"""Run a load-test preset with k6 against a gateway and build its report."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

from somaagent.sre.loadtest.k6 import K6Run, run_k6
from somaagent.sre.loadtest.report import LoadReport, build_report
from somaagent.sre.loadtest.script import GRACEFUL_STOP, render_script
from somaagent.sre.loadtest.spec import LoadTest

__all__ = ["RATE_LIMIT_ENV", "rate_cap", "run_loadtest"]

# k6 needs a moment to start, and `gracefulStop` to let the last iterations finish.
_MARGIN_S = 60.0
RATE_LIMIT_ENV = "SOMA_RATE_LIMIT_PER_MINUTE"
_GATEWAY_DEFAULT_LIMIT = 600
_SHARE = 0.8
"""The share of the key's rate limit a run may use: the rest is left for the key's other
callers (a chaos run's probes, the CLI), and a run never sees 429s of its own making."""


def rate_cap(per_minute: int | None = None) -> int | None:
    """The most requests per second a run sends with one key: 80% of its rate limit.

    Args:
        per_minute: the gateway's per-key limit (default ``$SOMA_RATE_LIMIT_PER_MINUTE``, else
            the gateway's default, 600); 0 means no limit, so no cap.
    """
    if per_minute is None:
        raw = os.environ.get(RATE_LIMIT_ENV, "").strip()
        try:
            per_minute = int(raw) if raw else _GATEWAY_DEFAULT_LIMIT
        except ValueError:
            per_minute = _GATEWAY_DEFAULT_LIMIT
    if per_minute <= 0:
        return None
    return max(1, math.floor(per_minute / 60 * _SHARE))


def run_loadtest(
    test: LoadTest,
    *,
    base_url: str,
    api_key: str,
    model: str | None = None,
    think_time: float | None = None,
    env: dict[str, str] | None = None,
    summary_path: Path | None = None,
    max_rps: int | None = None,
    stop: threading.Event | None = None,
) -> tuple[LoadReport, K6Run]:
    """Run ``test`` (already scaled as wanted) and return the report and k6's raw run.

    Args:
        base_url: the gateway, such as ``http://127.0.0.1:8080``.
        api_key: a SomaAgent API key, sent as ``Authorization: Bearer``.
        model: the model chat requests ask for (``SOMA_MODEL``; default ``auto``).
        think_time: seconds each virtual user waits between requests (default: the test's).
        env: more variables for the script (``SOMA_COLLECTION``, ...).
        summary_path: where to keep k6's JSON summary.
        max_rps: the most requests per second (see :func:`rate_cap`); ``None``: no cap.
        stop: set it to end the run early; the report covers what ran.

    Raises:
        K6Error: k6 failed before producing a summary.
        ConfigurationError: k6 is not installed, or a variable the test needs is missing.
    """
    test.check_variables(env or {})
    variables = {"SOMA_BASE_URL": base_url.rstrip("/"), "SOMA_API_KEY": api_key}
    if model:
        variables["SOMA_MODEL"] = model
    if think_time is not None:
        variables["SOMA_THINK_TIME"] = str(think_time)
    variables.update(env or {})
    timeout = test.profile.total.total_seconds() + float(GRACEFUL_STOP.rstrip("s")) + _MARGIN_S
    run = run_k6(
        render_script(test),
        env=variables,
        timeout=timeout,
        summary_path=summary_path,
        max_rps=max_rps,
        stop=stop,
    )
    return build_report(test, run, base_url=variables["SOMA_BASE_URL"]), run
