"""The SLO tracker: reads events from Prometheus and judges each SLO.

::

    with SLOTracker("http://127.0.0.1:9090") as tracker:      # the nine default SLOs
        for slo in tracker.status():
            print(slo.name, slo.status, slo.budget.remaining)
        run = tracker.burn("gateway-error-rate", start, end)   # budget burned by a test run

:class:`AsyncSLOTracker` is the same for async code (the gateway's ``GET /v1/slo``). Each SLO
costs one instant query, which counts its events over the SLO window and every burn-rate window
at once. The tracker reads raw metrics, so it needs no recording rules loaded. Prometheus
failing never raises from :meth:`SLOTracker.status`: the SLOs it could not judge come back
``unknown`` with the error.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from somaagent.sre.slo._tracking import (
    TrackerBase,
    counts_query,
    now,
    range_grid,
    value,
    windows_of,
)
from somaagent.sre.slo.prometheus import (
    AsyncPrometheusClient,
    PrometheusClient,
    PrometheusError,
    PrometheusUnreachableError,
)
from somaagent.sre.slo.spec import SLOSpec
from somaagent.sre.slo.status import BudgetBurn, SLOStatus, TrendPoint

__all__ = ["AsyncSLOTracker", "SLOTracker"]


class SLOTracker(TrackerBase):
    """Judges SLOs against a Prometheus server (synchronous).

    Args:
        prometheus: the server's base URL, or a :class:`PrometheusClient` to use.
        specs: the SLOs to judge; the nine defaults when ``None``.
        timeout: seconds per query, when the tracker makes its own client.
    """

    def __init__(
        self,
        prometheus: str | PrometheusClient,
        specs: Sequence[SLOSpec] | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(specs)
        self._owned = isinstance(prometheus, str)
        self.client = (
            PrometheusClient(prometheus, timeout=timeout)
            if isinstance(prometheus, str)
            else prometheus
        )

    def status(self, *, at: datetime | None = None) -> list[SLOStatus]:
        """Every SLO's status now (or at ``at``); never raises for Prometheus failures."""
        at = at or now()
        results: list[SLOStatus] = []
        unreachable: str | None = None
        for spec in self.specs:
            if unreachable is not None:
                results.append(self._unknown(spec, unreachable, at))
                continue
            try:
                samples = self.client.query(counts_query(spec, windows_of(spec)), at=at)
            except PrometheusUnreachableError as exc:
                unreachable = exc.message
                results.append(self._unknown(spec, unreachable, at))
            except PrometheusError as exc:
                results.append(self._unknown(spec, exc.message, at))
            else:
                results.append(self.judge(spec, samples, at))
        return results

    def burn(self, slo: str | SLOSpec, start: datetime, end: datetime) -> BudgetBurn:
        """The budget one SLO burned from ``start`` to ``end`` (e.g. during a load test).

        Never raises for Prometheus failures: ``error`` says what went wrong.
        """
        spec = self.spec(slo) if isinstance(slo, str) else slo
        queries = self._burn_queries(spec, start, end)
        try:
            total = value(self.client.query(queries.total, at=end))
            other = value(self.client.query(queries.bad or queries.good or "", at=end))
        except PrometheusError as exc:
            return self._burn_failed(spec, start, end, queries, exc.message)
        return self._burned(spec, start, end, total, other, queries)

    def trend(
        self, slo: str | SLOSpec, *, start: datetime, end: datetime, points: int = 96
    ) -> list[TrendPoint]:
        """The budget remaining over time, ``points`` evaluations from ``start`` to ``end``.

        Raises:
            PrometheusError: the server could not answer.
        """
        spec = self.spec(slo) if isinstance(slo, str) else slo
        grid, step = range_grid(start, end, points)
        series = self.client.query_range(
            self._trend_query(spec), start=grid[0], end=grid[-1], step=step
        )
        return self._trend(spec, series, grid)

    def close(self) -> None:
        """Close the client, when the tracker made it."""
        if self._owned:
            self.client.close()

    def __enter__(self) -> SLOTracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncSLOTracker(TrackerBase):
    """The asynchronous twin of :class:`SLOTracker`."""

    def __init__(
        self,
        prometheus: str | AsyncPrometheusClient,
        specs: Sequence[SLOSpec] | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(specs)
        self._owned = isinstance(prometheus, str)
        self.client = (
            AsyncPrometheusClient(prometheus, timeout=timeout)
            if isinstance(prometheus, str)
            else prometheus
        )

    async def status(self, *, at: datetime | None = None) -> list[SLOStatus]:
        """Every SLO's status now (or at ``at``); never raises for Prometheus failures."""
        at = at or now()
        results: list[SLOStatus] = []
        unreachable: str | None = None
        for spec in self.specs:
            if unreachable is not None:
                results.append(self._unknown(spec, unreachable, at))
                continue
            try:
                samples = await self.client.query(counts_query(spec, windows_of(spec)), at=at)
            except PrometheusUnreachableError as exc:
                unreachable = exc.message
                results.append(self._unknown(spec, unreachable, at))
            except PrometheusError as exc:
                results.append(self._unknown(spec, exc.message, at))
            else:
                results.append(self.judge(spec, samples, at))
        return results

    async def burn(self, slo: str | SLOSpec, start: datetime, end: datetime) -> BudgetBurn:
        """The budget one SLO burned from ``start`` to ``end``; never raises for Prometheus."""
        spec = self.spec(slo) if isinstance(slo, str) else slo
        queries = self._burn_queries(spec, start, end)
        try:
            total = value(await self.client.query(queries.total, at=end))
            other = value(await self.client.query(queries.bad or queries.good or "", at=end))
        except PrometheusError as exc:
            return self._burn_failed(spec, start, end, queries, exc.message)
        return self._burned(spec, start, end, total, other, queries)

    async def trend(
        self, slo: str | SLOSpec, *, start: datetime, end: datetime, points: int = 96
    ) -> list[TrendPoint]:
        """The budget remaining over time; raises :class:`PrometheusError` on failure."""
        spec = self.spec(slo) if isinstance(slo, str) else slo
        grid, step = range_grid(start, end, points)
        query = self._trend_query(spec)
        series = await self.client.query_range(query, start=grid[0], end=grid[-1], step=step)
        return self._trend(spec, series, grid)

    async def aclose(self) -> None:
        """Close the client, when the tracker made it."""
        if self._owned:
            await self.client.aclose()

    async def __aenter__(self) -> AsyncSLOTracker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def default_range(hours: float = 24) -> tuple[datetime, datetime]:
    """``(now - hours, now)`` in UTC, for trends."""
    end = now()
    return end - timedelta(hours=hours), end
