"""``client.me()``: the API key's identity (``GET /v1/me``)."""

from __future__ import annotations

from typing import TypedDict, cast

import httpx

from somaagent.sdk._base import APICall

__all__ = ["Identity", "me_call"]


class Identity(TypedDict):
    """The answer to ``GET /v1/me``: the API key and the tenant it belongs to."""

    key_id: str
    name: str
    tenant: str
    scope: str


def _identity(response: httpx.Response) -> Identity:
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return cast(Identity, body)


def me_call() -> APICall[Identity]:
    """``GET /v1/me``."""
    return APICall("GET", "/v1/me", _identity)
