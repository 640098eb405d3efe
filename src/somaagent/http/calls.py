"""Whole-answer JSON calls: the request body encoding and a POST that decodes the answer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from somaagent.errors import (
    ProviderResponseError,
)
from somaagent.http.failures import error_from_response, map_transport_errors


def encode_json(body: Mapping[str, Any]) -> bytes:
    """A request body as the vendors expect it: compact UTF-8 JSON, no NaN or infinity."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any],
    *,
    provider: str,
    headers: Mapping[str, str],
    timeout: aiohttp.ClientTimeout,
    proxy: str | None,
) -> Any:
    """POST ``body`` and decode the JSON answer (a non-2xx answer raises its ProviderError;
    an answer that is not JSON raises :class:`ProviderResponseError`)."""
    with map_transport_errors(provider, method="POST", url=url):
        async with session.post(
            url,
            data=encode_json(body),
            headers=headers,
            timeout=timeout,
            proxy=proxy,
            allow_redirects=False,
        ) as response:
            if not 200 <= response.status < 300:
                raise await error_from_response(response, provider=provider)
            raw = await response.read()
    try:
        return json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", errors="replace")
        raise ProviderResponseError(
            f"the answer is not JSON: {text[:200]!r}", provider=provider
        ) from None
