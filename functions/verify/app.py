"""Verify function: the gate. Verify a scanned code, check a ticket in (by id or from the
code), the offline scanners' keys document and their uploads. Scanner or admin only.

Imports neither stripe nor qrcode/Pillow (a test checks): a cold start at the gate loads
only Powertools, pydantic, PynamoDB and cryptography."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from ticketing import gate, idempotency
from ticketing.auth import ADMIN, SCANNER
from ticketing.config import settings
from ticketing.http import create_app, handler, require_caller, route

settings()  # fail the cold start, not a request, if configuration is missing
app = create_app()

STAFF = (SCANNER, ADMIN)
DENIED = "You do not have permission to verify this ticket"
EventId = Annotated[str | None, Query(min_length=1, max_length=64)]


@route(app, "GET", "/api/tickets/verify", roles=STAFF, denied=DENIED, tags=["gate"],
       summary="Verify a scanned code (seed: Verify Ticket by QR Code); always 200 with is_valid and reason")
def verify(code: Annotated[str, Query()] = "", event_id: EventId = None) -> gate.VerifyOut:
    return gate.verify(code, require_caller(app), event_id)


@route(app, "POST", "/api/tickets/<ticket_id>/checkin", roles=STAFF, denied=DENIED, tags=["gate"],
       summary="Check a ticket in (seed: Check-in Ticket); 409 with first_used_at and gate on a second scan",
       responses={404: {"description": "No such ticket (reason unknown_ticket)"},
                  409: {"description": "Not admissible: reason already_used (with first_used_at, gate), void, unpaid, wrong_event, event_over"}})
def check_in(ticket_id: str, body: Annotated[gate.CheckinIn | None, Body()] = None,
             idempotency_key: idempotency.KeyHeader = None) -> gate.CheckinOut:
    who = require_caller(app)
    data = body or gate.CheckinIn()
    answer = idempotency.once(
        f"checkin:{ticket_id}", who.sub, idempotency_key, data.model_dump(mode="json"),
        lambda: gate.check_in(ticket_id, who, data.gate, event_id=data.event_id).model_dump(mode="json"),
        app.lambda_context,
    )
    return gate.CheckinOut(**answer)


@route(app, "POST", "/api/tickets/checkin", roles=STAFF, denied=DENIED, tags=["gate"],
       summary="Verify a scanned code and check its ticket in, in one call",
       responses={404: {"description": "No such ticket (reason unknown_ticket)"},
                  409: {"description": "Not admissible: reason already_used (with first_used_at, gate), void, unpaid, wrong_event, event_over"},
                  422: {"description": "Invalid input; a code whose signature fails has reason bad_signature"}})
def check_in_code(body: gate.CodeCheckinIn, idempotency_key: idempotency.KeyHeader = None) -> gate.CheckinOut:
    who = require_caller(app)
    answer = idempotency.once(
        "checkin-code", who.sub, idempotency_key, body.model_dump(mode="json"),
        lambda: gate.check_in_code(body, who).model_dump(mode="json"), app.lambda_context,
    )
    return gate.CheckinOut(**answer)


@route(app, "GET", "/api/scanner/keys", roles=STAFF, denied=DENIED, tags=["gate"],
       summary="Public keys and voided tickets for offline scanners; generated_at is the next since",
       description="event_id narrows the document to one event and lists its voided tickets; without it the "
       "answer holds the keys alone, with event_id, event_name and event_ends_at null and voided, restored empty.")
def scanner_keys(
    event_id: EventId = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> gate.KeysOut:
    return gate.keys_document(event_id, since, cursor)


@route(app, "POST", "/api/scanner/checkins", roles=STAFF, denied=DENIED, tags=["gate"],
       summary=f"Upload check-ins made offline (at most {gate.MAX_OFFLINE_BATCH}); a result per scan, conflicts included")
def offline_checkins(
    scans: Annotated[list[gate.OfflineScanIn], Body(min_length=1, max_length=gate.MAX_OFFLINE_BATCH)],
    idempotency_key: idempotency.KeyHeader = None,
) -> gate.OfflineOut:
    who = require_caller(app)
    answer = idempotency.once(
        "scanner-checkins", who.sub, idempotency_key, [scan.model_dump(mode="json") for scan in scans],
        lambda: gate.apply_offline(scans, who).model_dump(mode="json"), app.lambda_context,
    )
    return gate.OfflineOut(**answer)


lambda_handler = handler(app)
