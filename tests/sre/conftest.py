"""SRE fixtures: the anyio backend and a real gateway scraped by a real Prometheus.

``slo_stack`` is a factory. ``start(warmup)`` serves a fresh gateway on SQLite (the fake OpenAI
upstream behind it), calls ``warmup(client)`` so the series a test reads exist before the first
scrape, then starts Prometheus (job ``somaagent-gateway``, 1 s scrapes, optional rule files) and
waits for its first scrape. Everything stops when the test ends::

    def test_x(slo_stack):
        stack = slo_stack(warmup=lambda client: client.get("/v1/models"))
        stack.gateway.client.get("/v1/models")
        stack.wait_scraped("sum(http_server_request_duration_seconds_count)", 2)
        SLOTracker(stack.prometheus.url, specs).status()

``slo_stacks(directory, fake_openai)`` is the same factory as a context manager, for fixtures of
a wider scope.

Helpers for other setups (``start_prometheus``, ``serve_gateway``, ``wait_for``) are in
``tests/sre/_prometheus.py``. Without the ``prometheus`` binary these tests skip, saying so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from somaagent.gateway.settings import Settings
from tests.sre._prometheus import (
    GATEWAY_JOB,
    Prometheus,
    ServedGateway,
    prometheus_binary,
    serve_gateway,
    start_prometheus,
    wait_for,
)

FAKE_MODEL = "gpt-4o-mini"
NO_PROMETHEUS = "the prometheus binary is not installed (Debian: apt-get install prometheus)"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """The ``prometheus`` executable; skips the test when it is missing."""
    binary = prometheus_binary()
    if binary is None:
        pytest.skip(NO_PROMETHEUS)
    return binary


@dataclass
class SLOStack:
    """A gateway, and a Prometheus that scrapes it."""

    gateway: ServedGateway
    prometheus: Prometheus

    def wait_scraped(self, promql: str, expected: float, *, timeout: float = 20.0) -> None:
        """Poll until ``promql`` (one sample) equals ``expected`` in Prometheus."""
        wait_for(
            lambda: self.prometheus.value(promql) == expected,
            timeout=timeout,
            what=f"{promql} == {expected:g} in Prometheus",
        )


def gateway_settings(data_dir: Path, fake_openai: Any, **overrides: Any) -> Settings:
    """Settings for a gateway on SQLite in ``data_dir`` with the fake OpenAI upstream."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "openai_base_url": fake_openai.base_url,
        "openai_api_key": fake_openai.api_key,
        "default_model": FAKE_MODEL,
        "rate_limit_per_minute": 0,
        "provider_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.contextmanager
def slo_stacks(directory: Path, fake_openai: Any) -> Iterator[Callable[..., SLOStack]]:
    """A factory of stacks with data under ``directory``; all stop on exit."""
    with contextlib.ExitStack() as stack:
        count = 0

        def start(
            warmup: Callable[[httpx.Client], None] | None = None,
            rule_files: Sequence[Path] = (),
            **overrides: Any,
        ) -> SLOStack:
            nonlocal count
            count += 1
            settings = gateway_settings(directory / f"gateway{count}", fake_openai, **overrides)
            gateway = stack.enter_context(serve_gateway(settings))
            if warmup is not None:
                warmup(gateway.client)
            prometheus = stack.enter_context(
                start_prometheus({GATEWAY_JOB: [gateway.address]}, rule_files=rule_files)
            )
            result = SLOStack(gateway=gateway, prometheus=prometheus)
            result.wait_scraped(f'sum(up{{job="{GATEWAY_JOB}"}})', 1)
            return result

        yield start


@pytest.fixture
def slo_stack(
    prometheus_bin: str, tmp_path: Path, fake_openai: Any
) -> Iterator[Callable[..., SLOStack]]:
    """A factory: ``slo_stack(warmup=None, rule_files=(), **settings) -> SLOStack``."""
    with slo_stacks(tmp_path, fake_openai) as start:
        yield start
