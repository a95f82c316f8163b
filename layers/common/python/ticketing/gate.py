"""The gate: verify a scanned code, check a ticket in exactly once (online, or from an
offline scanner's upload), the keys document offline scanners verify with, and the audit
record of every scan.

- **Verify** checks the code's signature first (`qr.verify`): a forged or altered code
  costs no DynamoDB read. A signed code costs one consistent GetItem of the ticket, which
  carries all a gate shows (event name and end, type, holder).
- **Check-in** is one conditional UpdateItem `valid -> used` with no refund on the ticket
  (`ticketing.lifecycle.tickets.check_in`, setting `used_at`, `gate`, `scanner`). When
  the condition fails DynamoDB hands back the item as it was
  (`ReturnValuesOnConditionCheckFailure=ALL_OLD`), so a second scan learns who admitted
  the ticket, where and when, without another read. A ticket whose refund is reserved
  verifies and checks in as `void`.
- **The event's end** comes from the event item, read once and kept per instance for
  `EVENT_CACHE_SECONDS` (never a ConditionCheck on the event item, which would put every
  scan of an event on one key): postponing an event moves the end of every ticket sold,
  at the gate as in the keys document. The copy on the ticket is used only when the
  event item is gone.
- **Offline uploads** are applied in `scanned_at` order, one conditional write per ticket.
  An upload never rewrites an online admission: an offline scan claiming an earlier time
  is answered `conflict` listing both admissions. Between offline uploads the ticket
  keeps its earliest admission. A `scanned_at` before the ticket was issued is `invalid`
  (`before_issue`).
- **Audit**: every attempt, forgeries included, is a `ScanItem` (see table.py) written
  without a read; a failed audit write is logged in full and never fails the scan.

    verify reasons: ok, already_used, void, unpaid, unknown_ticket, bad_signature,
                    wrong_event, event_over
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, StringConstraints

from ticketing import clock, qr
from ticketing.auth import Caller
from ticketing.errors import Conflict, DependencyUnavailable, DomainError, InvalidInput, NotFound
from ticketing.lifecycle import TicketStatus
from ticketing.lifecycle import tickets as lifecycle
from ticketing.observability import logger
from ticketing.pages import ID, STAMP, BadCursor
from ticketing.table import EventItem, ScanItem, TicketItem

OK = "ok"
REASONS = ("ok", "already_used", "void", "unpaid", "unknown_ticket", "bad_signature", "wrong_event", "event_over")
VALID, USED, VOID, PENDING = TicketStatus.VALID, TicketStatus.USED, TicketStatus.VOID, TicketStatus.PENDING
EVENT_CACHE_SECONDS = 30  # how stale an event's end may be at the gate after an edit

MAX_OFFLINE_BATCH = 200  # 200 scans of the longest code and gate stay under the 64 KiB body limit
MAX_GATE_LENGTH = 64
DEFAULT_GATE = "unnamed"  # what a seed-era client that sends no body is recorded as
MAX_CODE_LENGTH = 1024  # longer is refused as input; a real code is at most qr.MAX_PAYLOAD_LENGTH
CODE_KEPT = 64  # characters of a scanned code the audit keeps (format, kid, ids; not the signature)
SCAN_TTL_DAYS = 400
CLOCK_SKEW = timedelta(minutes=5)  # how far in the future an offline scanner's clock may be
VOIDED_OVERLAP = timedelta(minutes=1)  # a void still propagating into GSI2 is not missed
MAX_VOIDED = 5000  # voided tickets per keys document; more continue from `next_cursor`
OFFLINE_ATTEMPTS = 4

_REFUSALS = {
    "already_used": "Ticket already used",
    "void": "Ticket void",
    "unpaid": "Ticket not paid",
    "wrong_event": "Ticket for another event",
    "event_over": "Event over",
}

Gate = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_GATE_LENGTH)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CODE_LENGTH)]


# ------------------------------------------------------------------ input
class CheckinIn(BaseModel):
    gate: Gate = DEFAULT_GATE
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class CodeCheckinIn(CheckinIn):
    code: Code


class OfflineScanIn(BaseModel):
    code: Code
    scanned_at: AwareDatetime
    gate: Gate


# ----------------------------------------------------------------- output
class VerifyOut(BaseModel):
    """Seed "Verify Ticket by QR Code" plus `reason`, `event_id` and the check-in `gate`."""

    ticket_id: str | None = None
    serial: str | None = None
    status: str | None = None
    is_valid: bool
    reason: str
    event_id: str | None = None
    event_name: str | None = None
    ticket_type_name: str | None = None
    issued_at: str | None = None
    used_at: str | None = None
    gate: str | None = None
    order_id: str | None = None
    user_email: str | None = None
    user_name: str | None = None


class CheckedInTicket(BaseModel):
    id: str
    serial: str
    ticket_type_name: str
    event_id: str
    event_name: str | None = None
    used_at: str
    gate: str


class CheckinOut(BaseModel):
    """Seed "Check-in Ticket"."""

    message: str = "Ticket checked in successfully"
    reason: str = OK
    ticket: CheckedInTicket


class Admission(BaseModel):
    gate: str
    used_at: str


class OfflineResult(BaseModel):
    index: int
    ticket_id: str | None = None
    result: str  # accepted, duplicate, conflict, void, invalid, retry (kept conflicting: send it again)
    reason: str  # ok, already_used, void, bad_signature, unknown_ticket, unpaid, before_issue
    scanned_at: str
    first_used_at: str | None = None  # the ticket's first admission (accepted: this scan)
    gate: str | None = None
    admissions: list[Admission] | None = None  # conflict: both gates and times, earliest first


class OfflineOut(BaseModel):
    results: list[OfflineResult]
    summary: dict[str, int]


class VoidedOut(BaseModel):
    """A voided ticket, or a ticket whose code was re-issued (transferred): then
    `code_version` is its current code's version, which admits; its other codes do not.
    Null: no code of the ticket admits."""

    ticket_id: str
    serial: str | None = None
    voided_at: str
    code_version: int | None = None


class KeysOut(BaseModel):
    format: str = qr.VERSION_TAG
    algorithm: str = "Ed25519"
    event_id: str | None  # null: the keys alone (no event named, so no voided tickets)
    event_name: str | None
    event_ends_at: str | None
    keys: dict[str, str]
    voided: list[VoidedOut]
    restored: list[VoidedOut] = []  # voided once, valid again since (a dispute won): drop them from the void list
    since: str | None = None
    generated_at: str
    next_cursor: str | None = None


# ----------------------------------------------------------------- verify
def verify(code: str, who: Caller, event_id: str | None = None) -> VerifyOut:
    """What a gate should do with a scanned code. Never raises for a bad code."""
    now = clock.now()
    try:
        signed = qr.verify(code)
    except qr.BadSignature:
        _audit(now, "verify", "rejected", "bad_signature", who, code=code)
        return VerifyOut(is_valid=False, reason="bad_signature")
    ticket = _get(signed.ticket_id)
    reason = _reason(ticket, now, signed_event=signed.event_id, wanted_event=event_id, signed_version=signed.version)
    _audit(now, "verify", "ok" if reason == OK else "rejected", reason, who, code=code, ticket=ticket,
           ticket_id=signed.ticket_id, event_id=signed.event_id, trusted=reason != "bad_signature")
    if ticket is None:
        return VerifyOut(ticket_id=signed.ticket_id, event_id=signed.event_id, is_valid=False, reason=reason)
    if reason == "bad_signature":
        return VerifyOut(is_valid=False, reason=reason)
    return VerifyOut(
        ticket_id=ticket.ticket_id, serial=ticket.serial, status=ticket.status, is_valid=reason == OK, reason=reason,
        event_id=ticket.event_id, event_name=ticket.event_name, ticket_type_name=ticket.type_name,
        issued_at=ticket.issued_at, used_at=ticket.used_at, gate=ticket.gate, order_id=ticket.order_id,
        user_email=ticket.holder_email, user_name=ticket.holder_name,
    )


def _reason(ticket: TicketItem | None, now: datetime, *, signed_event: str | None = None, wanted_event: str | None = None,
            signed_version: int | None = None) -> str:
    if ticket is None:
        return "unknown_ticket"
    if signed_event is not None and ticket.event_id != signed_event:
        return "bad_signature"  # signed for another event: not a code we issued for this ticket
    if wanted_event and wanted_event != ticket.event_id:
        return "wrong_event"
    if ticket.status == VOID or (ticket.status == VALID and ticket.refund_id):
        return "void"  # voided, or its refund is reserved: it will be void in a moment
    if signed_version is not None and signed_version != int(ticket.code_version or 0):
        return "void"  # a code the ticket no longer has: it was transferred since
    if ticket.status == PENDING:
        return "unpaid"
    if ticket.status == USED:
        return "already_used"
    ends_at = event_end(ticket)
    if ends_at and clock.iso(now) > ends_at:
        return "event_over"
    return OK


# ------------------------------------------------------------ event times
_events: dict[str, tuple[datetime, EventItem | None]] = {}


def _event(event_id: str) -> EventItem | None:
    """The event item, read at most once per EVENT_CACHE_SECONDS per instance."""
    now = clock.now()
    cached = _events.get(event_id)
    if cached is not None and now - cached[0] < timedelta(seconds=EVENT_CACHE_SECONDS):
        return cached[1]
    try:
        event = EventItem.get(*EventItem.key(event_id))
    except EventItem.DoesNotExist:
        event = None
    if len(_events) > 1000:
        _events.clear()
    _events[event_id] = (now, event)
    return event


def _over_for_every_ticket(event_id: str, at: str) -> bool:
    """The event and all its fixtures have ended: no ticket of it can be admitted."""
    event = _event(event_id)
    if event is None:
        return False
    ends = [event.ends_at, *(f.ends_at for f in event.fixtures or [] if f.ends_at)]
    return all(end and end < at for end in ends)


def _only_the_copy_is_over(ticket: TicketItem | None, at: str, event_id: str | None) -> bool:
    return (
        ticket is not None and ticket.status == VALID and not ticket.refund_id
        and (not event_id or ticket.event_id == event_id) and bool(ticket.event_ends_at) and ticket.event_ends_at < at
    )


def forget_events() -> None:
    """Drop the cached events (tests)."""
    _events.clear()


def event_end(ticket: TicketItem) -> str | None:
    """When the ticket's event (or its fixture) ends now, not when it did at checkout."""
    event = _event(ticket.event_id)
    if event is None:
        return ticket.event_ends_at
    if ticket.fixture_id:
        for fixture in event.fixtures or []:
            if fixture.fixture_id == ticket.fixture_id:
                return fixture.ends_at or event.ends_at
    return event.ends_at


# --------------------------------------------------------------- check-in
class InvalidCode(InvalidInput):
    """A code whose signature fails, sent to check in: 422 naming `code`, reason bad_signature."""

    error = "Invalid ticket code"

    def __init__(self) -> None:
        DomainError.__init__(
            self, "This code is not a ticket we issued (forged, altered or misread); scan it again or refuse entry.",
            field="code", code="bad_signature", reason="bad_signature",
        )


def check_in(ticket_id: str, who: Caller, gate: str = DEFAULT_GATE, *, event_id: str | None = None,
             code: str | None = None, code_version: int | None = None) -> CheckinOut:
    """valid -> used in one conditional write. Conflict (409) with `reason` when the ticket
    is not valid, with `first_used_at` and `gate` when it was already used; NotFound (404)
    with reason unknown_ticket when there is no such ticket. `code_version`: the scanned
    code's, which must be the ticket's current one (else `void`: it was transferred)."""
    now = clock.now()
    at = clock.iso(now)
    if event_id and _over_for_every_ticket(event_id, at):
        _audit(now, "checkin", "rejected", "event_over", who, gate=gate, code=code, ticket_id=ticket_id, event_id=event_id)
        raise _refusal(ticket_id, None, "event_over")
    # The ticket's copy of its event's end is the write's hint; only when that copy alone
    # refuses (the event was postponed since checkout) does the event's current end decide.
    done, ticket = lifecycle.check_in(ticket_id, at=at, gate=gate, scanner=who.sub, event_id=event_id, copy_not_over=True,
                                      code_version=code_version)
    if not done and _only_the_copy_is_over(ticket, at, event_id) and _same_code(ticket, code_version):
        ends_at = event_end(ticket)
        if not ends_at or ends_at >= at:
            done, ticket = lifecycle.check_in(ticket_id, at=at, gate=gate, scanner=who.sub, event_id=ticket.event_id,
                                              code_version=code_version)
    if done:
        _audit(now, "checkin", "accepted", OK, who, gate=gate, code=code, ticket=ticket, ticket_id=ticket_id, event_id=event_id)
        return CheckinOut(ticket=CheckedInTicket(
            id=ticket.ticket_id, serial=ticket.serial, ticket_type_name=ticket.type_name, event_id=ticket.event_id,
            event_name=ticket.event_name, used_at=at, gate=gate,
        ))
    reason = _reason(ticket, now, wanted_event=event_id, signed_version=code_version)
    _audit(now, "checkin", "rejected", reason, who, gate=gate, code=code, ticket=ticket, ticket_id=ticket_id, event_id=event_id)
    raise _refusal(ticket_id, ticket, reason)


def _same_code(ticket: TicketItem | None, code_version: int | None) -> bool:
    return code_version is None or (ticket is not None and int(ticket.code_version or 0) == code_version)


def check_in_code(data: CodeCheckinIn, who: Caller) -> CheckinOut:
    """Verify a scanned code and check its ticket in: one call for the scanner."""
    now = clock.now()
    try:
        signed = qr.verify(data.code)
    except qr.BadSignature:
        _audit(now, "checkin", "rejected", "bad_signature", who, gate=data.gate, code=data.code)
        raise InvalidCode() from None
    if data.event_id and data.event_id != signed.event_id:
        # The signed event id says so: no read needed to turn the holder away.
        _audit(now, "checkin", "rejected", "wrong_event", who, gate=data.gate, code=data.code, ticket_id=signed.ticket_id,
               event_id=signed.event_id)
        raise _refusal(signed.ticket_id, None, "wrong_event")
    return check_in(signed.ticket_id, who, data.gate, event_id=signed.event_id, code=data.code, code_version=signed.version)


def _refusal(ticket_id: str, ticket: TicketItem | None, reason: str) -> DomainError:
    if reason == "unknown_ticket":
        return NotFound(f"There is no ticket {ticket_id}; refuse entry.", code=reason, reason=reason, ticket_id=ticket_id)
    if reason == "already_used" and ticket is not None:
        return Conflict(
            f"This ticket was checked in at {ticket.gate or DEFAULT_GATE} at {ticket.used_at}; refuse entry.",
            error=_REFUSALS[reason], code=reason, reason=reason, ticket_id=ticket_id,
            first_used_at=ticket.used_at, gate=ticket.gate or DEFAULT_GATE,
        )
    details = {
        "void": "This ticket was voided (refunded or canceled) or this code replaced (transferred); refuse entry.",
        "unpaid": "This ticket's order is not paid; refuse entry and send the holder to the box office.",
        "wrong_event": "This ticket is for another event; send the holder to the right venue.",
        "event_over": "The event this ticket is for is over; refuse entry.",
    }
    detail = details.get(reason, "This ticket cannot be checked in.")
    return Conflict(detail, error=_REFUSALS.get(reason, "Conflict"), code=reason, reason=reason, ticket_id=ticket_id)


# ---------------------------------------------------------- offline upload
def apply_offline(scans: list[OfflineScanIn], who: Caller) -> OfflineOut:
    """Apply check-ins an offline scanner recorded, in `scanned_at` order, and answer one
    result per scan (in the order sent). Each ticket is written at most once per upload;
    it keeps its earliest admission as `used_at`."""
    if not 1 <= len(scans) <= MAX_OFFLINE_BATCH:
        raise InvalidInput("body", f"Send 1 to {MAX_OFFLINE_BATCH} scans per upload; split larger ones.")
    now = clock.now()
    times = [clock.iso(scan.scanned_at) for scan in scans]
    for index, scan in enumerate(scans):
        if scan.scanned_at > now + CLOCK_SKEW:
            raise InvalidInput(f"{index}.scanned_at", "scanned_at is in the future; check the scanner's clock.")
    keys = qr.public_keys()
    results: list[OfflineResult | None] = [None] * len(scans)
    signed: dict[int, qr.Verified] = {}
    for index, scan in enumerate(scans):
        try:
            signed[index] = qr.verify_with(scan.code, keys)
        except qr.BadSignature:
            results[index] = OfflineResult(index=index, result="invalid", reason="bad_signature", scanned_at=times[index])
    by_ticket: dict[str, list[int]] = {}
    for index in sorted(signed, key=lambda i: (times[i], i)):
        by_ticket.setdefault(signed[index].ticket_id, []).append(index)
    tickets = {t.ticket_id: t for t in TicketItem.batch_get([TicketItem.key(tid) for tid in by_ticket], consistent_read=True)}
    for ticket_id, indexes in by_ticket.items():
        _settle(tickets.get(ticket_id), ticket_id, indexes, scans, times, signed, who, results)
    _audit_offline(now, scans, times, signed, results, who)
    done = [result for result in results if result is not None]
    return OfflineOut(results=done, summary=dict(Counter(result.result for result in done)))


def _settle(ticket: TicketItem | None, ticket_id: str, indexes: list[int], scans: list[OfflineScanIn], times: list[str],
            signed: dict[int, qr.Verified], who: Caller, results: list[OfflineResult | None]) -> None:
    """Results for one ticket's scans (`indexes`, earliest first), writing the ticket once."""

    def answer(index: int, result: str, reason: str, first: Admission | None = None, admissions: list[Admission] | None = None):
        results[index] = OfflineResult(
            index=index, ticket_id=ticket_id, result=result, reason=reason, scanned_at=times[index],
            first_used_at=first.used_at if first else None, gate=first.gate if first else None, admissions=admissions,
        )

    if ticket is not None and ticket.issued_at:
        for index in [i for i in indexes if times[i] < ticket.issued_at]:
            answer(index, "invalid", "before_issue")  # a scan before the ticket existed: a wrong clock, or a forgery
        indexes = [i for i in indexes if times[i] >= ticket.issued_at]
        if not indexes:
            return
    try:
        _admit(ticket, ticket_id, indexes, scans, times, signed, who, answer)
    except DependencyUnavailable:
        # This ticket kept conflicting with other writers: its scans are answered `retry`
        # (send them again); the rest of the upload goes on.
        for index in indexes:
            answer(index, "retry", "contention")


def _admit(ticket: TicketItem | None, ticket_id: str, indexes: list[int], scans: list[OfflineScanIn], times: list[str],
           signed: dict[int, qr.Verified], who: Caller, answer) -> None:
    for _ in range(OFFLINE_ATTEMPTS):
        if ticket is not None:  # a code the ticket no longer has (transferred since): void
            current = int(ticket.code_version or 0)
            for index in [i for i in indexes if signed[i].version != current]:
                answer(index, "void", "void")
            indexes = [i for i in indexes if signed[i].version == current]
            if not indexes:
                return
        first_index = indexes[0]
        earliest = Admission(gate=scans[first_index].gate, used_at=times[first_index])
        reason = _reason(ticket, clock.now(), signed_event=signed[first_index].event_id)
        if reason in ("unknown_ticket", "bad_signature", "unpaid", "void"):
            for index in indexes:
                answer(index, "void" if reason == "void" else "invalid", reason)
            return
        existing, online = None, False
        if ticket.status == USED:
            existing = Admission(gate=ticket.gate or DEFAULT_GATE, used_at=ticket.used_at or "")
            online = ticket.admission != lifecycle.OFFLINE  # before admissions were marked: online
        if existing is None or (earliest.used_at < existing.used_at and not online):
            done, now_ticket = lifecycle.admit_offline(
                ticket_id, at=earliest.used_at, gate=earliest.gate, scanner=who.sub,
                earlier_than=existing.used_at if existing else None, code_version=signed[first_index].version,
            )
            if not done:
                ticket = now_ticket  # someone else wrote it meanwhile: decide again on what it is now
                continue
            record = earliest
        else:
            record = existing  # an online admission, or an earlier offline one: never rewritten
        for index in indexes:
            scan = Admission(gate=scans[index].gate, used_at=times[index])
            if index == first_index and record is earliest:
                if existing is not None and existing.gate != earliest.gate:
                    answer(index, "conflict", "already_used", record, [earliest, existing])
                else:
                    answer(index, "accepted", OK, record)
            elif scan.gate == record.gate and scan.used_at >= record.used_at:
                answer(index, "duplicate", "already_used", record)
            else:
                answer(index, "conflict", "already_used", record, sorted([record, scan], key=lambda a: a.used_at))
        return
    raise DependencyUnavailable("Other check-ins of the same ticket kept racing this upload; send it again.", retry_after=1)


# ---------------------------------------------------------- keys document
def keys_document(event_id: str | None, since: str | None = None, cursor: str | None = None) -> KeysOut:
    """The public keys and the event's tickets voided since `since` (all when None): what an
    offline scanner needs. `generated_at` is the next call's `since`; the list overlaps the
    previous one by `VOIDED_OVERLAP` (merge by ticket_id). Without `event_id`: the keys,
    `event_id` null and no voided tickets."""
    generated_at = clock.iso(clock.now())
    if cursor and not re.fullmatch(STAMP + "#" + ID, cursor):
        raise BadCursor()  # only a position in this event's void list: `<voided_at>#<ticket_id>`
    if event_id is None:
        return KeysOut(event_id=None, event_name=None, event_ends_at=None, keys=qr.public_keys(), voided=[],
                       restored=[], since=since, generated_at=generated_at)
    lower = ""
    if since is not None:
        try:
            lower = clock.iso(clock.parse_iso(since) - VOIDED_OVERLAP)
        except ValueError:
            raise InvalidInput("since", "since must be an ISO 8601 time with a zone, e.g. 2026-01-15T14:00:00Z") from None
    try:
        event = EventItem.get(*EventItem.key(event_id))
    except EventItem.DoesNotExist:
        raise NotFound(f"There is no event {event_id}.") from None
    keys = qr.public_keys()
    condition = None  # since and cursor unset: every voided ticket of the event
    if cursor:
        condition = TicketItem.GSI2SK > cursor
    elif lower:
        condition = TicketItem.GSI2SK >= lower
    voided: list[VoidedOut] = []
    restored: list[VoidedOut] = []
    next_cursor = last = None
    for item in TicketItem.gsi2.query(
        f"VOIDED#{event_id}", condition,
        attributes_to_get=["ticket_id", "serial", "voided_at", "GSI2SK", "status", "code_version"],
    ):
        if len(voided) + len(restored) == MAX_VOIDED:
            next_cursor = last
            break
        version = int(item.code_version or 0)
        entry = VoidedOut(ticket_id=item.ticket_id, serial=item.serial, voided_at=item.voided_at or "",
                          code_version=version if item.status != VOID and version else None)
        (voided if item.status == VOID or version else restored).append(entry)
        last = item.GSI2SK
    return KeysOut(
        event_id=event_id, event_name=event.name, event_ends_at=event.ends_at, keys=keys, voided=voided,
        restored=restored, since=since, generated_at=generated_at, next_cursor=next_cursor,
    )


# ------------------------------------------------------------------ table
def _get(ticket_id: str) -> TicketItem | None:
    try:
        return TicketItem.get(*TicketItem.key(ticket_id), consistent_read=True)
    except TicketItem.DoesNotExist:
        return None


# ------------------------------------------------------------------ audit
def _scan_item(scanned_at: str, recorded_at: str, action: str, result: str, reason: str, who: Caller, *,
               gate: str | None, code: str | None, ticket_id: str | None, event_id: str | None) -> ScanItem:
    pk, sk = ScanItem.key(event_id, scanned_at, secrets.token_hex(6))
    return ScanItem(
        pk, sk, scanned_at=scanned_at, recorded_at=recorded_at, action=action, result=result, reason=reason,
        scanner=who.sub, gate=gate, code=code[:CODE_KEPT] if code else None, ticket_id=ticket_id, event_id=event_id,
        ttl=int((clock.now() + timedelta(days=SCAN_TTL_DAYS)).timestamp()),
    )


def _audit(now: datetime, action: str, result: str, reason: str, who: Caller, *, gate: str | None = None,
           code: str | None = None, ticket: TicketItem | None = None, ticket_id: str | None = None,
           event_id: str | None = None, trusted: bool = True) -> None:
    """One PutItem, no read. The event comes from the ticket or a verified signature only:
    an unverified code's record goes to SCANS#unknown, so forgers cannot pick partitions."""
    if ticket is not None and trusted:
        event_id = ticket.event_id
    at = clock.iso(now)
    item = _scan_item(at, at, action, result, reason, who, gate=gate, code=code, ticket_id=ticket_id,
                      event_id=event_id if trusted else None)
    try:
        item.save()
    except Exception:  # the scan's answer stands; the log line keeps the record
        logger.exception("scan audit write failed", extra={"scan": item.attribute_values})


def _audit_offline(now: datetime, scans: list[OfflineScanIn], times: list[str], signed: dict[int, qr.Verified],
                   results: list[OfflineResult | None], who: Caller) -> None:
    recorded = clock.iso(now)
    items = []
    for index, scan in enumerate(scans):
        result = results[index]
        verified = signed.get(index)
        trusted = verified is not None and result is not None and result.reason != "bad_signature"
        items.append(_scan_item(
            times[index], recorded, "offline", result.result if result else "invalid", result.reason if result else "bad_signature",
            who, gate=scan.gate, code=scan.code, ticket_id=verified.ticket_id if verified else None,
            event_id=verified.event_id if trusted else None,
        ))
    try:
        with ScanItem.batch_write() as batch:
            for item in items:
                batch.save(item)
    except Exception:
        logger.exception("scan audit write failed", extra={"scans": [item.attribute_values for item in items]})
