"""``/v1/admin/faults``: the gateway's fault points, for chaos experiments run on one machine.

``soma chaos run PRESET --local`` puts a fault on a point (``PUT``), checks the SLOs, and
takes it off (``DELETE``); every fault also clears itself after its ``ttl_s``. A fault acts
on every tenant's calls through this gateway process, so only an admin key of the default
(operator) tenant may touch them, and only where fault injection is on (``local`` mode, or
``SOMA_FAULT_INJECTION=true``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from somaagent.accounts.keys import DEFAULT_TENANT
from somaagent.errors import PermissionDeniedError
from somaagent.gateway.auth import AdminPrincipal, State
from somaagent.sre.chaos.points import FaultPoints
from somaagent.types import FaultCreate, FaultPoint

router = APIRouter(prefix="/v1/admin/faults", tags=["chaos"])

PointName = Annotated[str, Path(max_length=63, description="the fault point")]


def fault_points(state: State, who: AdminPrincipal) -> FaultPoints:
    """The gateway's fault points, for an operator's admin key; else a 403 that says why."""
    if who.tenant != DEFAULT_TENANT:
        raise PermissionDeniedError(
            "fault points act on every tenant: only an admin key of the default tenant may set them"
        )
    if state.faults is None:
        raise PermissionDeniedError(
            "fault injection is off on this gateway (production mode): start it with "
            "SOMA_FAULT_INJECTION=true to run chaos experiments against it"
        )
    return state.faults


Points = Annotated[FaultPoints, Depends(fault_points)]


@router.get("")
async def list_points(points: Points) -> list[FaultPoint]:
    """Every fault point, with the fault on it (if any)."""
    return points.list()


@router.get("/{point}")
async def get_point(point: PointName, points: Points) -> FaultPoint:
    """One fault point."""
    return points.get(point)


@router.put("/{point}")
async def set_fault(point: PointName, body: FaultCreate, points: Points) -> FaultPoint:
    """Put a fault on a point (replacing any there); it clears itself after ``ttl_s``."""
    return points.set(point, body)


@router.delete("/{point}", status_code=status.HTTP_204_NO_CONTENT)
async def clear_fault(point: PointName, points: Points) -> Response:
    """Take the fault off a point (a point with none is left as it is)."""
    points.clear(point)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT)
async def clear_faults(points: Points) -> Response:
    """Take every fault off."""
    points.clear_all()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
