"""The Prometheus client and the tracker when Prometheus answers, fails, or is not there."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from somaagent.sre.slo import (
    AsyncPrometheusClient,
    AsyncSLOTracker,
    PrometheusClient,
    PrometheusQueryError,
    PrometheusResponseError,
    PrometheusUnreachableError,
    SLOTracker,
)
from tests.fakes._server import run_asgi
from tests.sre._prometheus import Prometheus, start_prometheus

CLOSED = "http://127.0.0.1:9"  # discard port: nothing listens there


@pytest.fixture(scope="module")
def prometheus(prometheus_bin: str) -> Iterator[Prometheus]:
    """A Prometheus with nothing to scrape: every SLO has no data."""
    with start_prometheus({}) as server:
        yield server


@pytest.fixture(scope="module")
def impostor() -> Iterator[str]:
    """A server at the URL that is not Prometheus: HTML, odd JSON, a slow answer."""

    async def html(request: Request) -> Response:
        return HTMLResponse("<html>login</html>")

    async def odd(request: Request) -> Response:
        return JSONResponse({"hello": "world"})

    async def slow(request: Request) -> Response:
        await anyio.sleep(2)
        return JSONResponse({})

    app = Starlette(
        routes=[
            Route("/html/api/v1/query", html),
            Route("/odd/api/v1/query", odd),
            Route("/slow/api/v1/query", slow),
        ]
    )
    with run_asgi(app) as url:
        yield url


def test_queries_and_ranges(prometheus: Prometheus) -> None:
    with PrometheusClient(prometheus.url) as client:
        (sample,) = client.query('label_replace(vector(1.5), "a", "b", "", "")')
        assert (sample.labels, sample.value) == ({"a": "b"}, 1.5)
        assert client.query("vector(1) > 2") == []
        now = time.time()
        (series,) = client.query_range("vector(2)", start=now - 60, end=now, step=30)
        assert [value for _, value in series.points] == [2.0, 2.0, 2.0]


def test_a_bad_query_is_a_typed_error(prometheus: Prometheus) -> None:
    with PrometheusClient(prometheus.url) as client, pytest.raises(PrometheusQueryError) as caught:
        client.query("sum(")
    assert caught.value.error_type == "bad_data"
    assert caught.value.url == prometheus.url and caught.value.query == "sum("
    assert prometheus.url in str(caught.value)


def test_unreachable_prometheus_is_a_typed_error() -> None:
    with (
        PrometheusClient(CLOSED, timeout=2) as client,
        pytest.raises(PrometheusUnreachableError, match="is unreachable"),
    ):
        client.query("vector(1)")


@pytest.mark.parametrize(
    ("path", "message"),
    [("/html", "not the Prometheus API's JSON"), ("/odd", "without a Prometheus status")],
)
def test_something_else_at_the_url_is_a_typed_error(impostor: str, path: str, message: str) -> None:
    with (
        PrometheusClient(impostor + path) as client,
        pytest.raises(PrometheusResponseError, match=message),
    ):
        client.query("vector(1)")


def test_a_slow_prometheus_times_out(impostor: str) -> None:
    with (
        PrometheusClient(impostor + "/slow", timeout=0.2) as client,
        pytest.raises(PrometheusUnreachableError, match="timed out"),
    ):
        client.query("vector(1)")


def test_urls_must_be_http() -> None:
    with pytest.raises(ValueError, match="http://"):
        PrometheusClient("127.0.0.1:9090")


def test_no_traffic_anywhere_is_no_data(prometheus: Prometheus) -> None:
    with SLOTracker(prometheus.url) as tracker:
        statuses = tracker.status()
    assert [s.status for s in statuses] == ["no-data"] * 9
    assert all(s.error is None and s.sli is None for s in statuses)
    assert all("NaN" not in s.model_dump_json() for s in statuses)


def test_prometheus_down_is_unknown_for_every_slo_without_raising() -> None:
    started = time.monotonic()
    with SLOTracker(CLOSED) as tracker:
        statuses = tracker.status()
    assert [s.status for s in statuses] == ["unknown"] * 9
    assert all(s.error and "unreachable" in s.error for s in statuses)
    assert statuses[0].reason == statuses[0].error
    assert time.monotonic() - started < 5  # asked once, not once per SLO


def test_prometheus_erroring_is_unknown_with_its_message(impostor: str) -> None:
    with SLOTracker(impostor + "/odd") as tracker:
        statuses = tracker.status()
        burned = tracker.burn("gateway-error-rate", *_last_minutes(5))
    assert {s.status for s in statuses} == {"unknown"}
    assert statuses[0].error is not None and "without a Prometheus status" in statuses[0].error
    assert burned.held is None and burned.error is not None


def _last_minutes(minutes: int) -> tuple[datetime, datetime]:
    end = datetime.now(UTC)
    return end - timedelta(minutes=minutes), end


@pytest.mark.anyio
async def test_the_async_twins(prometheus: Prometheus) -> None:
    async with AsyncPrometheusClient(prometheus.url) as client:
        (sample,) = await client.query("vector(3)")
        assert sample.value == 3
        with pytest.raises(PrometheusQueryError):
            await client.query("sum(")
    async with AsyncSLOTracker(prometheus.url) as tracker:
        statuses = await tracker.status()
        burned = await tracker.burn("slm-latency", *_last_minutes(5))
    assert {s.status for s in statuses} == {"no-data"}
    assert burned.events is None and burned.error is None
    async with AsyncSLOTracker(CLOSED) as down:
        assert {s.status for s in await down.status()} == {"unknown"}


def test_twins_expose_the_same_methods() -> None:
    def public(cls: type) -> set[str]:
        return {n for n in dir(cls) if not n.startswith("_")} - {"close", "aclose"}

    assert public(PrometheusClient) == public(AsyncPrometheusClient)
    assert public(SLOTracker) == public(AsyncSLOTracker)
