"""``/v1/slo``: where each SLO stands, judged from the Prometheus that scrapes this gateway.

The Prometheus base URL comes from the ``SOMA_PROMETHEUS_URL`` setting; without one the
answer is a 503 problem naming it. Prometheus failing is not an error here: the SLOs it could
not judge come back with status ``unknown`` and the reason. ``SOMA_SLO_FILE`` may name a YAML
file of SLO specs to use instead of the nine defaults.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from somaagent.errors import ConfigurationError, NotFoundError, ServiceUnavailableError
from somaagent.gateway.auth import CurrentPrincipal, State
from somaagent.gateway.state import GatewayState
from somaagent.sre.slo import AsyncSLOTracker, SLOSpec, SLOStatus, load_specs

router = APIRouter(prefix="/v1/slo", tags=["slo"])

QUERY_TIMEOUT_S = 5.0


class SLOReport(BaseModel):
    """Every SLO's status, and where the figures came from."""

    prometheus_url: str
    evaluated_at: datetime
    slos: list[SLOStatus]


def _setting(state: GatewayState, name: str) -> str | None:
    value = getattr(state.settings, name, None)
    if value:
        return str(value)
    return os.environ.get(f"SOMA_{name.upper()}") or None


def prometheus_url(state: State) -> str:
    """The configured Prometheus base URL, or a 503 problem that names the setting."""
    url = _setting(state, "prometheus_url")
    if not url:
        raise ServiceUnavailableError(
            "SLO status needs Prometheus: set SOMA_PROMETHEUS_URL to the base URL of the "
            "Prometheus that scrapes this gateway (e.g. http://127.0.0.1:9090)"
        )
    if not url.startswith(("http://", "https://")):
        raise ServiceUnavailableError(
            f"SOMA_PROMETHEUS_URL must start with http:// or https://, not {url!r}"
        )
    return url


def slo_specs(state: State) -> list[SLOSpec]:
    """The SLOs to judge: ``SOMA_SLO_FILE``'s, else the defaults."""
    path = _setting(state, "slo_file")
    try:
        return load_specs(Path(path) if path else None)
    except (ConfigurationError, PydanticValidationError) as exc:
        raise ServiceUnavailableError(f"SOMA_SLO_FILE is not a valid SLO file: {exc}") from exc


PrometheusURL = Annotated[str, Depends(prometheus_url)]
Specs = Annotated[list[SLOSpec], Depends(slo_specs)]


async def _report(url: str, specs: list[SLOSpec]) -> SLOReport:
    at = datetime.now(UTC)
    async with AsyncSLOTracker(url, specs, timeout=QUERY_TIMEOUT_S) as tracker:
        statuses = await tracker.status(at=at)
    return SLOReport(prometheus_url=url, evaluated_at=at, slos=statuses)


@router.get("")
async def list_slos(_: CurrentPrincipal, url: PrometheusURL, specs: Specs) -> SLOReport:
    """Every SLO: SLI, error budget, burn rates and status."""
    return await _report(url, specs)


@router.get("/{name}")
async def get_slo(
    _: CurrentPrincipal,
    url: PrometheusURL,
    specs: Specs,
    name: Annotated[str, PathParam(max_length=63, description="the SLO's name")],
) -> SLOStatus:
    """One SLO by name."""
    chosen = [spec for spec in specs if spec.name == name]
    if not chosen:
        known = ", ".join(spec.name for spec in specs)
        raise NotFoundError(f"no SLO named {name!r}; known: {known}")
    report = await _report(url, chosen)
    return report.slos[0]
