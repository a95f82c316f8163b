"""The offline verifier: what a scanner with no network does with the keys document from
`GET /api/scanner/keys/?event_id=` (public keys, voided tickets, the event's end).

    python -m ticketing.offline keys.json CODE [--event-id ev_...] [--now 2026-01-15T20:00:00Z]

prints the verdict as JSON and exits 0 when the ticket is valid, 1 when it is not, 2 when
the keys document cannot be read. Needs only `cryptography` (through ticketing.qr): no
AWS, no database, no network.

Offline a scanner can tell ok, bad_signature, void (voided before the document was
fetched, or a code replaced by a transfer: the entry's `code_version` is the one that still
admits), wrong_event and event_over. It cannot tell already_used across gates (it keeps
its own list of what it admitted; the upload reports duplicates and conflicts) and it
never sees unpaid (a pending ticket has no signed code).
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Any

from ticketing import qr


def verify_offline(keys_document: dict[str, Any], code: str, event_id: str | None = None,
                   now: datetime | str | None = None) -> dict[str, Any]:
    """`{"valid": bool, "reason": ..., "ticket_id", "event_id"}` for a scanned code, using only
    the keys document. `event_id` defaults to the document's; `now` to the current time."""
    try:
        signed = qr.verify_with(code, dict(keys_document.get("keys") or {}))
    except qr.BadSignature as exc:
        return {"valid": False, "reason": "bad_signature", "detail": exc.reason, "ticket_id": None, "event_id": None}

    def verdict(reason: str) -> dict[str, Any]:
        return {"valid": reason == "ok", "reason": reason, "ticket_id": signed.ticket_id, "event_id": signed.event_id}

    wanted = event_id or keys_document.get("event_id")
    if wanted and wanted != signed.event_id:
        return verdict("wrong_event")
    # The ticket's latest entry decides; one with a code_version voids the ticket's other
    # codes only (it was transferred: that version admits).
    entries = [entry for entry in keys_document.get("voided") or [] if entry.get("ticket_id") == signed.ticket_id]
    if entries:
        admits = entries[-1].get("code_version")
        if admits is None or admits != signed.version:
            return verdict("void")
    ends_at = keys_document.get("event_ends_at")
    if ends_at and signed.event_id == keys_document.get("event_id"):
        moment = _moment(now)
        if moment > _moment(ends_at):
            return verdict("event_over")
    return verdict("ok")


def _moment(value: datetime | str | None) -> datetime:
    if value is None:
        return datetime.now(timezone.utc)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("times must carry a zone, e.g. 2026-01-15T14:00:00Z")
    return value.astimezone(timezone.utc)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m ticketing.offline", description="Verify a ticket code offline.")
    parser.add_argument("keys", help="the keys document (JSON) from GET /api/scanner/keys/?event_id=...")
    parser.add_argument("code", help="the scanned code")
    parser.add_argument("--event-id", help="the event this gate admits to (default: the document's)")
    parser.add_argument("--now", help="judge as at this ISO time (default: now)")
    args = parser.parse_args(argv)
    try:
        with open(args.keys, encoding="utf-8") as handle:
            document = json.load(handle)
        if not isinstance(document, dict):
            raise ValueError("the keys document must be a JSON object")
        result = verify_offline(document, args.code, args.event_id, args.now)
    except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, sort_keys=True))
    return 0 if result["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
