"""Opaque pagination cursors over DynamoDB's LastEvaluatedKey."""

from __future__ import annotations

import base64
import json
from typing import Any

from ticketing.errors import InvalidInput


def encode_cursor(last_key: dict[str, Any] | None) -> str | None:
    if not last_key:
        return None
    raw = json.dumps(last_key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError):
        raise InvalidInput("cursor", "The cursor is not one this API handed out; start again without it.") from None
    if not isinstance(value, dict):
        raise InvalidInput("cursor", "The cursor is not one this API handed out; start again without it.")
    return value
