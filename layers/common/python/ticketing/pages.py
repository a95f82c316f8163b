"""The one paginator: opaque cursors over DynamoDB's LastEvaluatedKey, page sizes, and the
scatter-gather over an event's ten GSI3 partitions (`gather`, `every`).

**Finding an event's orders and tickets.** Checkout writes every order and ticket into
GSI3 under one of ten partition keys per event (`table.event_orders_index`,
`table.event_tickets_index`), so a rush on one event spreads its index writes over ten
partitions. A reader queries the ten partitions newest first and merges them
(`gather`); the opaque cursor carries each partition's position (the last sort key
handed out, or that it is exhausted), so a page never repeats or skips an item."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
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


def page_size(limit: int) -> int:
    from ticketing.config import settings

    return max(1, min(limit, settings().page_size_max))


# ------------------------------------------------------------ scatter-gather
def _positions(cursor: str | None) -> dict[str, Any]:
    state = decode_cursor(cursor) or {}
    return {"p": dict(state.get("p") or {}), "x": list(state.get("x") or [])}


def gather(model: type, partitions: list[str], limit: int, cursor: str | None, condition: Any = None) -> tuple[list[Any], Callable[[int], str | None]]:
    """Up to `limit` items from `partitions` of GSI3, newest first across all of them,
    after `cursor`. Returns the items and `cursor_after(n)`: the cursor that resumes after
    the first n of them (n = all of them for the next page)."""
    state = _positions(cursor)
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
