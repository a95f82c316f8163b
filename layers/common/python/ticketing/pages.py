"""Opaque pagination cursors over DynamoDB's LastEvaluatedKey.

A cursor is only ever followed after its listing has checked it (`decode_key` for one
index's key, or the listing's own check): a forged cursor, or one another listing or
another caller was handed, is 400 `bad_cursor`, never a read from where it points."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from ticketing.errors import MalformedRequest

MAX_KEY_TEXT = 200  # a key attribute in a cursor: ours are under 80 characters
ID = r"[A-Za-z0-9_-]{1,64}"  # an id in a key (ids.plausible)
STAMP = r"[0-9A-Za-z:.+-]{1,40}"  # a timestamp in a sort key


class BadCursor(MalformedRequest):
    def __init__(self) -> None:
        super().__init__("The cursor is not one this listing handed out; start again without it.",
                         field="cursor", code="bad_cursor")


def encode_cursor(last_key: dict[str, Any] | None) -> str | None:
    if not last_key:
        return None
    raw = json.dumps(last_key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, valid: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
    """The cursor's object, if it decodes and `valid` accepts it; else BadCursor."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, RecursionError):
        raise BadCursor() from None
    try:
        accepted = isinstance(value, dict) and (valid is None or bool(valid(value)))
    except (ValueError, TypeError, KeyError, AttributeError):
        accepted = False
    if not accepted:
        raise BadCursor()
    return value


def decode_key(cursor: str | None, pattern: Mapping[str, str]) -> dict[str, Any] | None:
    """A DynamoDB key from `cursor`, if it has exactly `pattern`'s attributes, each a string
    that fully matches its regular expression (so a key of another index, partition or
    caller is refused)."""

    def valid(value: dict[str, Any]) -> bool:
        if set(value) != set(pattern):
            return False
        for name, expression in pattern.items():
            attribute = value[name]
            if not (isinstance(attribute, dict) and set(attribute) == {"S"} and isinstance(attribute["S"], str)):
                return False
            if len(attribute["S"]) > MAX_KEY_TEXT or not re.fullmatch(expression, attribute["S"]):
                return False
        return True

    return decode_cursor(cursor, valid)
