"""The one paginator: opaque cursors over DynamoDB's LastEvaluatedKey, page sizes, and the
scatter-gather over an event's GSI3 partitions (`gather`, `every`).

**Finding an event's orders and tickets.** Checkout writes every order and ticket into
GSI3 under one of `table.EVENT_INDEX_PARTITIONS` (32) partition keys per event
(`table.event_orders_index`, `table.event_tickets_index`), so a rush on one event spreads
its index writes over 32 partitions. A reader queries them newest first and merges them
(`gather`); the opaque cursor carries each partition's position (the last sort key
handed out, or that it is exhausted), so a page never repeats or skips an item.

A cursor is only ever followed after its listing has checked it (`decode_key` for one
index's key, or the listing's own check, as `gather` does): a forged cursor, or one
another listing or another caller was handed, is 400 `bad_cursor`, never a read from
where it points."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator, Mapping
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


def page_size(limit: int) -> int:
    from ticketing.config import settings

    return max(1, min(limit, settings().page_size_max))


# ------------------------------------------------------------ scatter-gather
def _positions(cursor: str | None, partitions: int) -> dict[str, Any]:
    state = decode_cursor(cursor, lambda value: _scatter_cursor(value, partitions)) or {}
    return {"p": dict(state.get("p") or {}), "x": list(state.get("x") or [])}


def _scatter_cursor(value: dict[str, Any], partitions: int) -> bool:
    """Is `value` a position `cursor_after` could have written: each partition's last sort
    key (`<created>#<id>`) and the exhausted partitions, not all of them?"""
    positions, exhausted = value.get("p"), value.get("x")
    if set(value) != {"p", "x"} or not isinstance(positions, dict) or not isinstance(exhausted, list):
        return False
    names = {str(k) for k in range(partitions)}
    if not set(positions) <= names or not all(isinstance(v, str) and re.fullmatch(STAMP + "#" + ID, v) for v in positions.values()):
        return False
    if not all(type(k) is int and 0 <= k < partitions and str(k) not in positions for k in exhausted):
        return False
    return len(set(exhausted)) == len(exhausted) < partitions


def gather(model: type, partitions: list[str], limit: int, cursor: str | None, condition: Any = None) -> tuple[list[Any], Callable[[int], str | None]]:
    """Up to `limit` items from `partitions` of GSI3, newest first across all of them,
    after `cursor`. Returns the items and `cursor_after(n)`: the cursor that resumes after
    the first n of them (n = all of them for the next page)."""
    state = _positions(cursor, len(partitions))
    fetched: dict[int, list[Any]] = {}
    more: dict[int, bool] = {}
    for k, partition in enumerate(partitions):
        if k in state["x"]:
            continue
        after = state["p"].get(str(k))
        results = model.gsi3.query(
            partition, model.GSI3SK < after if after else None, filter_condition=condition,
            scan_index_forward=False, limit=limit, page_size=max(limit, 100),
        )
        fetched[k] = list(results)
        more[k] = results.last_evaluated_key is not None
    merged = sorted(((item.GSI3SK, k, item) for k, items in fetched.items() for item in items), key=lambda t: t[0], reverse=True)[:limit]

    def cursor_after(n: int) -> str | None:
        positions, exhausted = dict(state["p"]), list(state["x"])
        taken: dict[int, int] = {}
        for sort_key, k, _item in merged[:n]:
            positions[str(k)] = sort_key
            taken[k] = taken.get(k, 0) + 1
        for k, items in fetched.items():
            if not more[k] and taken.get(k, 0) == len(items):
                exhausted.append(k)
                positions.pop(str(k), None)
        if len(exhausted) == len(partitions):
            return None
        return encode_cursor({"p": positions, "x": sorted(exhausted)})

    return [item for _, _, item in merged], cursor_after


def every(model: type, partitions: list[str], condition: Any = None, attributes: list[str] | None = None) -> Iterator[Any]:
    """Every item in `partitions` of GSI3 (for figures and the CSV export)."""
    for partition in partitions:
        yield from model.gsi3.query(partition, filter_condition=condition, attributes_to_get=attributes)
