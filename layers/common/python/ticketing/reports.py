"""Organiser reports: an event's orders, attendees (JSON pages and CSV) and figures.

**Figures.** Seats per type come from the inventory shards (what checkout guards);
checked in is a count of the event's `used` tickets; money is summed at read time from
the very order records the orders listing shows (each order's total and refunded amount
come from one item), so gross - refunded == net always and match the orders. Pages come
from `ticketing.pages` (the scatter-gather over the event's GSI3 partitions).
"""

from __future__ import annotations

import csv
import io
from typing import Any, Literal

from pydantic import BaseModel

from ticketing import catalogue, clock, fees as fee_rules, inventory, orders
from ticketing.errors import NotFound
from ticketing.lifecycle import EVER_PAID, ISSUED
from ticketing.pages import every as _every
from ticketing.pages import gather as _gather
from ticketing.pages import page_size as _page_size
from ticketing.table import EventItem, OrderItem, TicketItem, event_index_partitions

OrderStatus = Literal["pending", "paid", "canceled", "expired", "partially_refunded", "refunded", "disputed"]
TicketStatus = Literal["pending", "valid", "used", "void", "all"]
ATTENDING = ISSUED  # what the attendee list shows unless asked for a status
CSV_PAGE = 1000


def _event(event_id: str) -> EventItem:
    try:
        return EventItem.get(*EventItem.key(event_id), consistent_read=True)
    except EventItem.DoesNotExist:
        raise NotFound(f"There is no event {event_id}.") from None


# -------------------------------------------------------------------- orders
class OrderSummaryLineOut(BaseModel):
    ticket_type_id: str
    name: str
    qty: int
    price_cents: int


class OrderSummaryOut(BaseModel):
    order_id: str
    status: str
    subtotal_cents: int
    fees_cents: int
    total_cents: int
    refunded_cents: int
    currency: str
    customer_sub: str
    customer_email: str | None
    customer_name: str | None
    created_at: str
    paid_at: str | None
    payment_intent_id: str | None
    lines: list[OrderSummaryLineOut]


class EventOrderPage(BaseModel):
    orders: list[OrderSummaryOut]
    count: int
    next_cursor: str | None = None


def list_orders(event_id: str, status: str | None, limit: int, cursor: str | None) -> EventOrderPage:
    """The event's orders, newest first, optionally of one status."""
    _event(event_id)
    condition = OrderItem.status == status if status else None
    found, cursor_after = _gather(OrderItem, event_index_partitions(event_id, "ORDERS"), _page_size(limit), cursor, condition)
    summaries = [
        OrderSummaryOut(
            order_id=o.order_id, status=o.status, subtotal_cents=orders.subtotal_of(o), fees_cents=int(o.fees_cents or 0),
            total_cents=int(o.total_cents), refunded_cents=int(o.refunded_cents or 0),
            currency=o.currency, customer_sub=o.customer_sub, customer_email=o.customer_email, customer_name=o.customer_name,
            created_at=o.created_at, paid_at=o.paid_at, payment_intent_id=o.payment.payment_intent_id if o.payment else None,
            lines=[OrderSummaryLineOut(ticket_type_id=l.type_id, name=l.name, qty=int(l.qty), price_cents=int(l.price_cents)) for l in o.lines],
        )
        for o in found
    ]
    return EventOrderPage(orders=summaries, count=len(summaries), next_cursor=cursor_after(len(found)))


# ----------------------------------------------------------------- attendees
class AttendeeOut(BaseModel):
    ticket_id: str
    serial: str
    order_id: str
    ticket_type_id: str
    ticket_type_name: str
    status: str
    holder_name: str | None
    holder_email: str | None
    checked_in_at: str | None
    gate: str | None


class AttendeePage(BaseModel):
    attendees: list[AttendeeOut]
    count: int
    next_cursor: str | None = None


def _ticket_condition(status: str | None) -> Any:
    if status == "all":
        return None
    if status:
        return TicketItem.status == status
    return TicketItem.status.is_in(*ATTENDING)


def _attendee(t: TicketItem) -> AttendeeOut:
    return AttendeeOut(
        ticket_id=t.ticket_id, serial=t.serial, order_id=t.order_id, ticket_type_id=t.type_id, ticket_type_name=t.type_name,
        status=t.status, holder_name=t.holder_name, holder_email=t.holder_email, checked_in_at=t.used_at, gate=t.gate,
    )


def attendees(event_id: str, status: str | None, limit: int, cursor: str | None) -> AttendeePage:
    """The event's tickets (valid and used unless `status` says otherwise) with holder and
    check-in, newest first."""
    _event(event_id)
    found, cursor_after = _gather(TicketItem, event_index_partitions(event_id, "TICKETS"), _page_size(limit), cursor, _ticket_condition(status))
    people = [_attendee(t) for t in found]
    return AttendeePage(attendees=people, count=len(people), next_cursor=cursor_after(len(found)))


CSV_COLUMNS = ("ticket_id", "serial", "ticket_type", "status", "holder_name", "holder_email", "order_id", "checked_in_at", "gate")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet will not run: text starting with = + - @ (or a tab or CR) gets
    a leading apostrophe (OWASP's advice against CSV injection); quoting is the csv
    module's (RFC 4180)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


_CSV_ATTRIBUTES = ["GSI3SK", "ticket_id", "serial", "type_name", "status", "holder_name", "holder_email", "order_id", "used_at", "gate"]


def attendees_csv(event_id: str, status: str | None) -> str:
    """Every attendee as RFC 4180 CSV (CRLF, quotes doubled, a header row), newest first.
    Each partition is read once, page by page, with only the columns' attributes (the
    scatter-gather pages of the JSON listing would read each partition once per page)."""
    _event(event_id)
    rows = sorted(
        ((t.GSI3SK, (t.ticket_id, t.serial, t.type_name, t.status, t.holder_name, t.holder_email, t.order_id, t.used_at, t.gate))
         for t in _every(TicketItem, event_index_partitions(event_id, "TICKETS"), _ticket_condition(status), _CSV_ATTRIBUTES)),
        key=lambda row: row[0], reverse=True,
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    writer.writerows([csv_cell(v) for v in values] for _, values in rows)
    return out.getvalue()


# --------------------------------------------------------------------- stats
class TypeStatsOut(BaseModel):
    ticket_type_id: str
    name: str
    price_cents: int
    capacity: int
    sold: int
    held: int
    available: int
    checked_in: int


class MoneyOut(BaseModel):
    """gross - refunded - fees == net: what the organiser keeps (ticketing.fees.organiser_net)."""

    currency: str
    gross_cents: int  # what buyers paid on every order ever paid (disputed and refunded ones included)
    fees_cents: int = 0  # service fees kept (absorbed ones included; fees refunds gave up excluded)
    refunded_cents: int  # refunds reserved or made on those orders
    net_cents: int  # to the organiser


class StatsOut(BaseModel):
    event_id: str
    status: str
    ticket_types: list[TypeStatsOut]
    money: MoneyOut
    orders_by_status: dict[str, int]
    computed_at: str


def stats(event_id: str) -> StatsOut:
    event, types = catalogue.load_event(event_id)
    seats = inventory.availability((t.type_id, int(t.shards)) for t in types)
    checked_in: dict[str, int] = {}
    for ticket in _every(TicketItem, event_index_partitions(event_id, "TICKETS"), TicketItem.status == "used", ["type_id", "status"]):
        checked_in[ticket.type_id] = checked_in.get(ticket.type_id, 0) + 1
    gross = refunded = fees = fees_returned = 0
    by_status: dict[str, int] = {}
    for order in _every(OrderItem, event_index_partitions(event_id, "ORDERS"), None,
                        ["status", "total_cents", "refunded_cents", "all_fees_cents", "fees_returned_cents"]):
        by_status[order.status] = by_status.get(order.status, 0) + 1
        if order.status in EVER_PAID:
            gross += int(order.total_cents)
            refunded += int(order.refunded_cents or 0)
            fees += int(order.all_fees_cents or 0)
            fees_returned += int(order.fees_returned_cents or 0)
    per_type = []
    for t in types:
        s = seats.get(t.type_id) or inventory.Availability(int(t.capacity), 0, 0, 0)
        per_type.append(TypeStatsOut(
            ticket_type_id=t.type_id, name=t.name, price_cents=int(t.price_cents), capacity=s.capacity, sold=s.sold,
            held=s.held, available=s.remaining, checked_in=checked_in.get(t.type_id, 0),
        ))
    return StatsOut(
        event_id=event_id, status=event.status, ticket_types=per_type,
        money=MoneyOut(currency=event.currency, gross_cents=gross, fees_cents=fees - fees_returned, refunded_cents=refunded,
                       net_cents=fee_rules.organiser_net(gross, refunded, fees, fees_returned)),
        orders_by_status=dict(sorted(by_status.items())), computed_at=clock.iso(clock.now()),
    )
