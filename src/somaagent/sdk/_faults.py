"""``client.faults``: the gateway's fault points, for chaos experiments (operators only).

::

    fault = FaultCreate(latency_ms=100, ttl_s=120, experiment="memory-gateway-latency")
    client.faults.set("vector-store", fault)    # every vector-store call takes 100 ms more
    ...
    client.faults.clear("vector-store")

The calls need an admin key of the default tenant, on a gateway with fault injection on
(``local`` mode, or ``SOMA_FAULT_INJECTION=true``); otherwise a
:class:`~somaagent.errors.PermissionDeniedError` says which.
"""

from __future__ import annotations

import builtins
from urllib.parse import quote

import httpx

from somaagent.sdk._base import APICall
from somaagent.sdk._calls import AsyncSender, SyncSender
from somaagent.types import FaultCreate, FaultPoint

__all__ = ["AsyncFaults", "Faults"]

_PATH = "/v1/admin/faults"


def _point_path(point: str) -> str:
    if not point:
        raise ValueError("point must be a non-empty string")
    return f"{_PATH}/{quote(point, safe='')}"


def _point(response: httpx.Response) -> FaultPoint:
    return FaultPoint.model_validate(response.json())


def _points(response: httpx.Response) -> list[FaultPoint]:
    body = response.json()
    if not isinstance(body, list):
        raise ValueError("expected a JSON array of fault points")
    return [FaultPoint.model_validate(item) for item in body]


def _nothing(response: httpx.Response) -> None:
    return None


def list_call() -> APICall[list[FaultPoint]]:
    return APICall("GET", _PATH, _points)


def get_call(point: str) -> APICall[FaultPoint]:
    return APICall("GET", _point_path(point), _point)


def set_call(point: str, fault: FaultCreate) -> APICall[FaultPoint]:
    body = fault.model_dump(mode="json", exclude_defaults=True)
    return APICall("PUT", _point_path(point), _point, json=body)


def clear_call(point: str) -> APICall[None]:
    return APICall("DELETE", _point_path(point), _nothing)


def clear_all_call() -> APICall[None]:
    return APICall("DELETE", _PATH, _nothing)


class Faults:
    """``client.faults``: list, set and clear faults on the gateway's fault points."""

    def __init__(self, client: SyncSender) -> None:
        self._client = client

    def list(self) -> builtins.list[FaultPoint]:
        """Every fault point, with the fault on it (if any)."""
        return self._client._call(list_call())

    def get(self, point: str) -> FaultPoint:
        """One fault point (``vector-store``, ``embedder``, ``model``)."""
        return self._client._call(get_call(point))

    def set(self, point: str, fault: FaultCreate) -> FaultPoint:
        """Put ``fault`` on ``point``, replacing any there; it clears itself after ``ttl_s``."""
        return self._client._call(set_call(point, fault))

    def clear(self, point: str) -> None:
        """Take the fault off ``point`` (a point with none is left as it is)."""
        self._client._call(clear_call(point))

    def clear_all(self) -> None:
        """Take every fault off."""
        self._client._call(clear_all_call())


class AsyncFaults:
    """``client.faults`` of :class:`AsyncClient`; see :class:`Faults`."""

    def __init__(self, client: AsyncSender) -> None:
        self._client = client

    async def list(self) -> builtins.list[FaultPoint]:
        """Every fault point, with the fault on it (if any)."""
        return await self._client._call(list_call())

    async def get(self, point: str) -> FaultPoint:
        """One fault point."""
        return await self._client._call(get_call(point))

    async def set(self, point: str, fault: FaultCreate) -> FaultPoint:
        """Put ``fault`` on ``point``; see :meth:`Faults.set`."""
        return await self._client._call(set_call(point, fault))

    async def clear(self, point: str) -> None:
        """Take the fault off ``point``."""
        await self._client._call(clear_call(point))

    async def clear_all(self) -> None:
        """Take every fault off."""
        await self._client._call(clear_all_call())
