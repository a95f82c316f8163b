"""The one clock the domain reads, so tests can move time instead of sleeping."""

from __future__ import annotations

from datetime import datetime, timezone

_frozen: datetime | None = None


def now() -> datetime:
    return _frozen or datetime.now(timezone.utc)


def freeze(at: datetime | None) -> None:
    """Pin the clock (tests only); `freeze(None)` lets it run again."""
    global _frozen
    _frozen = at


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with a `Z`, to the second, as the API writes times."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("time must carry a zone, e.g. 2026-01-15T14:00:00Z")
    return moment.astimezone(timezone.utc)
