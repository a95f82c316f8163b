"""Ticket transfer (issue 19): the holder of a valid ticket gives it to someone else.

- **Who and when**: the ticket's holder (the account it is listed under, or, before that
  account claims it, whoever signs in with the verified address it was given to); only a
  `valid` ticket with no refund reserved; only while the organiser allows it
  (`transfers: {"enabled", "until"}` on the event, off unless turned on; `until` null means
  until the event starts). Another customer's ticket is 404, as everywhere.
- **The code**: the new holder gets a new code (`qr.sign` with the next code version) in
  the same conditional write that changes the holder (`lifecycle.tickets.transfer`,
  `states.TRANSFER`: valid, no refund, holder and code version as read). From that write
  on the gate refuses the old code (`void`: its version is not the ticket's), and the
  ticket is on its event's voided list with its current `code_version`, so offline
  scanners refuse the old code and admit the new one. A check-in racing the transfer is
  decided by the two conditions: one of them fails (tests/unit/test_races.py).
- **The new holder** is emailed, and finds the ticket in their tickets once they sign in
  with that address, verified (`tickets.my_tickets` claims it: `states.CLAIM`).
- **The record**: the order keeps a `TransferItem` per transfer (from whom to whom, when)
  and the transition log, written in the transfer's transaction.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, StringConstraints, field_validator

from ticketing import clock, mail, qr
from ticketing.auth import Caller
from ticketing.config import settings
from ticketing.errors import Conflict, Forbidden, NotFound, Unprocessable
from ticketing.lifecycle import TicketStatus
from ticketing.lifecycle import tickets as lifecycle
from ticketing.lifecycle.writes import Refused
from ticketing.observability import logger
from ticketing.table import EventItem, TicketItem
from ticketing.tickets import MAX_ID_LENGTH, TicketOut, _ticket_out, holds

MAX_EMAIL_LENGTH = 254
# A deliverable address as SES takes it: an ASCII local part, a dotted domain.
_EMAIL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class TransferIn(BaseModel):
    to_email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=MAX_EMAIL_LENGTH)]
    to_name: Name

    @field_validator("to_email")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _EMAIL.fullmatch(value) or ".." in value:
            raise ValueError("to_email must be an email address such as name@example.com")
        return value.lower()


class HolderOut(BaseModel):
    email: str
    name: str


class TransferOut(BaseModel):
    ticket: TicketOut
    holder: HolderOut
    transferred_at: str
    email_sent: bool  # false: the new holder was not emailed (the transfer stands; they find it by signing in)


def _policy(ticket: TicketItem) -> EventItem:
    """The event, if it lets this ticket be transferred now; Forbidden (403, a policy) if not."""
    try:
        event = EventItem.get(*EventItem.key(ticket.event_id))
    except EventItem.DoesNotExist:
        raise NotFound(f"There is no ticket {ticket.ticket_id}.") from None
    if event.status != "on_sale":
        raise Conflict(f"Event {event.event_id} is {event.status}; its tickets cannot be transferred.", code=f"event_{event.status}")
    policy = event.transfers
    if policy is None or not policy.enabled:
        raise Forbidden("The organiser does not allow this event's tickets to be transferred.", code="transfers_disabled")
    until = policy.until or event.starts_at
    if clock.iso(clock.now()) >= until:
        raise Forbidden(f"Tickets to this event could be transferred until {until}.", code="transfer_closed", until=until)
    return event


def _refuse_state(ticket: TicketItem) -> None:
    """Conflict (409) with a code unless the ticket is valid with no refund reserved."""
    status = ticket.status
    if status == TicketStatus.PENDING:
        raise Conflict(f"Ticket {ticket.ticket_id} is not paid for yet; it can be transferred once it is.", code="ticket_pending")
    if status == TicketStatus.USED:
        raise Conflict(f"Ticket {ticket.ticket_id} was already used at the gate; it cannot be transferred.", code="ticket_used")
    if status == TicketStatus.VOID:
        raise Conflict(f"Ticket {ticket.ticket_id} is void; it cannot be transferred.", code="ticket_void")
    if ticket.refund_id:
        raise Conflict(f"Ticket {ticket.ticket_id} is being refunded; it cannot be transferred.", code="refund_pending")


def _held_by(ticket_id: str, who: Caller) -> TicketItem:
    """The ticket if `who` holds it (admins too: a transfer is the holder's act); else 404."""
    ticket = None
    if 0 < len(ticket_id) <= MAX_ID_LENGTH:
        try:
            ticket = TicketItem.get(*TicketItem.key(ticket_id), consistent_read=True)
        except TicketItem.DoesNotExist:
            ticket = None
    if ticket is None or not holds(ticket, who):
        raise NotFound(f"There is no ticket {ticket_id}.")
    return ticket


def transfer(ticket_id: str, data: TransferIn, who: Caller) -> TransferOut:
    ticket = _held_by(ticket_id, who)
    _refuse_state(ticket)
    own = {address.lower() for address in (ticket.holder_email, who.email) if address}
    if data.to_email in own:
        raise Unprocessable("The ticket is already yours; give another person's address.", field="to_email", code="own_address")
    event = _policy(ticket)
    version = int(ticket.code_version or 0) + 1
    if version > qr.MAX_CODE_VERSION:
        raise Conflict(f"Ticket {ticket_id} has been transferred too often to be transferred again.", code="transfer_limit")
    payload = qr.sign(ticket.ticket_id, ticket.event_id, version)
    try:
        at = lifecycle.transfer(ticket, to_email=data.to_email, to_name=data.to_name, payload=payload, version=version, by=who.sub)
    except Refused:
        # It changed since it was read: checked in, refunded, voided, or given away by another request.
        now = TicketItem.get(*TicketItem.key(ticket_id), consistent_read=True)
        _refuse_state(now)
        if not holds(now, who):
            raise NotFound(f"There is no ticket {ticket_id}.") from None
        raise Conflict(f"Ticket {ticket_id} changed while it was being transferred; try again.", code="ticket_changed") from None
    fresh = TicketItem.get(*TicketItem.key(ticket_id), consistent_read=True)
    sent = _notify(fresh, event, from_name=ticket.holder_name or who.name)
    return TransferOut(
        ticket=_ticket_out(fresh, None), holder=HolderOut(email=data.to_email, name=data.to_name), transferred_at=at,
        email_sent=sent,
    )


def _notify(ticket: TicketItem, event: EventItem, *, from_name: str | None) -> bool:
    """Email the new holder. The transfer stands whatever happens here: a failure is logged
    (without the address) and answered as `email_sent: false`."""
    notice = mail.TransferNotice(
        order_id=ticket.order_id, to_email=ticket.holder_email or "", to_name=ticket.holder_name or "", from_name=from_name,
        event_name=event.name, starts_at=event.starts_at, serial=ticket.serial, type_name=ticket.type_name,
        tickets_url=f"{settings().frontend_url}/tickets",
    )
    try:
        mail.send(mail.build_transfer_notice(notice))
    except mail.MailError as exc:
        logger.warning("transfer notice not sent", extra={"ticket_id": ticket.ticket_id, "code": exc.code, "retryable": exc.retryable})
        return False
    return True

