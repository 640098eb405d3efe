"""``client.models``: the models the gateway can route to (``GET /v1/models``)."""

from __future__ import annotations

import builtins

import httpx

from somaagent.sdk._base import APICall
from somaagent.sdk._calls import AsyncSender, SyncSender
from somaagent.types import ModelInfo

__all__ = ["AsyncModels", "Models", "list_models_call"]


def _model_list(response: httpx.Response) -> list[ModelInfo]:
    body = response.json()
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ValueError("expected an OpenAI model list with a `data` array")
    return [ModelInfo.model_validate(item) for item in data]


def list_models_call() -> APICall[list[ModelInfo]]:
    """``GET /v1/models``: the OpenAI-style list, with SomaAgent's prices and availability."""
    return APICall("GET", "/v1/models", _model_list)


class Models:
    """``client.models``: the models the gateway can route to."""

    def __init__(self, client: SyncSender) -> None:
        self._client = client

    def list(self) -> builtins.list[ModelInfo]:
        """Every model in the gateway's registry, with prices and availability."""
        return self._client._call(list_models_call())


class AsyncModels:
    """``client.models`` of :class:`AsyncClient`; see :class:`Models`."""

    def __init__(self, client: AsyncSender) -> None:
        self._client = client

    async def list(self) -> builtins.list[ModelInfo]:
        """Every model in the gateway's registry, with prices and availability."""
        return await self._client._call(list_models_call())
