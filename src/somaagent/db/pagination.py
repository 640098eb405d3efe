"""Opaque pagination cursors: a JSON value, base64url-encoded. A cursor that does not
decode to the expected kind is a 422 naming ``cursor``."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from somaagent.errors import ValidationError


def encode_cursor(value: str | int) -> str:
    """The opaque cursor for ``value`` (the last row's sort key)."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: type[str] | type[int]) -> Any:
    """The value in ``cursor``; a 422 naming ``cursor`` unless it is a ``kind``."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValidationError(
            "invalid pagination cursor; pass back the next_cursor of a previous page",
            errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}],
        )
    return value
