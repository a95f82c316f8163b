"""Orders as read: by id (the owner's, or an admin's), by charge, lapsed holds, and how
an order is answered. Their state changes are `ticketing.lifecycle`'s."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel

from ticketing import clock
from ticketing.auth import Caller
from ticketing.errors import Conflict, NotFound
from ticketing.lifecycle import OrderStatus
from ticketing.table import HOLD_PARTITIONS, UNCANCELED, OrderItem, TicketItem

# ----------------------------------------------------------------- output
class CheckoutTicketOut(BaseModel):
    """A ticket as checkout answers it (held, not yet issued)."""

    id: str
    serial: str
    ticket_type_id: str
    ticket_type_name: str
    price_cents: int
    fees_cents: int = 0  # the fee the buyer pays on it (0 when absorbed)
    status: str

    @classmethod
    def of(cls, ticket: TicketItem, order: OrderItem | None = None) -> CheckoutTicketOut:
        return cls(
            id=ticket.ticket_id, serial=ticket.serial, ticket_type_id=ticket.type_id, ticket_type_name=ticket.type_name,
            price_cents=int(ticket.price_cents), fees_cents=buyer_fee(ticket, order), status=ticket.status,
        )


class OrderTicketOut(CheckoutTicketOut):
    pass


def buyer_fee(ticket: TicketItem, order: OrderItem | None) -> int:
    """The fee the buyer paid on a ticket: its fee when the order's fees were passed on."""
    if order is None or order.fees is None or not order.fees.passed_on:
        return 0
    return int(ticket.fee_cents or 0)


class PaymentOut(BaseModel):
    payment_intent_id: str | None = None
    status: str | None = None
    payment_method: str | None = None
    charge_id: str | None = None
    error_message: str | None = None


class ReceiptOut(BaseModel):
    """The receipt email: `sent`, `pending` (paid, not out yet) or `undeliverable` (the
    address was refused for good; `problem` says so, the tickets are in the account)."""

    status: Literal["sent", "pending", "undeliverable"]
    sent_at: str | None = None
    problem: str | None = None


class OrderOut(BaseModel):
    order_id: str
    event_id: str
    fixture_id: str | None = None
    status: str
    subtotal_cents: int
    fees_cents: int  # the fees the buyer paid (0 when absorbed)
    total_cents: int
    currency: str
    created_at: str
    expires_at: str
    payment: PaymentOut
    tickets: list[OrderTicketOut]
    refunds: list[dict[str, Any]]
    refunded_cents: int
    receipt: ReceiptOut | None = None  # null until the order is paid


# ---------------------------------------------------------------- reading
def get(order_id: str) -> OrderItem | None:
    try:
        return OrderItem.get(*OrderItem.key(order_id), consistent_read=True)
    except OrderItem.DoesNotExist:
        return None


def get_for(order_id: str, who: Caller) -> OrderItem:
    """The order if `who` owns it or is an admin; otherwise NotFound, never Forbidden,
    so nobody learns that another customer's order exists."""
    order = get(order_id)
    if order is None or (order.customer_sub != who.sub and not who.is_admin):
        raise NotFound(f"There is no order {order_id}.")
    return order


def tickets_of(order: OrderItem) -> list[TicketItem]:
    keys = [TicketItem.key(ticket_id) for ticket_id in order.ticket_ids]
    found = {t.ticket_id: t for t in TicketItem.batch_get(keys)}
    return [found[ticket_id] for ticket_id in order.ticket_ids if ticket_id in found]


def as_out(order: OrderItem, tickets: Iterable[TicketItem]) -> OrderOut:
    payment = order.payment.as_dict() if order.payment else {}
    return OrderOut(
        order_id=order.order_id,
        event_id=order.event_id,
        fixture_id=order.fixture_id,
        status=order.status,
        subtotal_cents=subtotal_of(order),
        fees_cents=int(order.fees_cents or 0),
        total_cents=int(order.total_cents),
        currency=order.currency,
        created_at=order.created_at,
        expires_at=order.expires_at,
        payment=PaymentOut(**{k: payment.get(k) for k in PaymentOut.model_fields}),
        tickets=[OrderTicketOut.of(t, order) for t in tickets],
        refunds=refunds_of(order.order_id) if order.refunded_cents else [],
        refunded_cents=int(order.refunded_cents or 0),
        receipt=receipt_of(order),
    )


def subtotal_of(order: OrderItem) -> int:
    """The tickets' prices (an order made before fees existed: its total)."""
    return int(order.subtotal_cents) if order.subtotal_cents is not None else int(order.total_cents)


def receipt_of(order: OrderItem) -> ReceiptOut | None:
    if order.receipt_undeliverable_at:
        return ReceiptOut(status="undeliverable", problem=order.receipt_problem)
    if order.receipt_sent_at:
        return ReceiptOut(status="sent", sent_at=order.receipt_sent_at)
    return ReceiptOut(status="pending") if order.paid_at else None


def lapsed(limit: int, event_id: str | None = None, grace_seconds: int = 0) -> list[OrderItem]:
    """Pending orders whose hold ran out more than `grace_seconds` ago, oldest first (up to `limit`)."""
    found: list[OrderItem] = []
    for partition in range(HOLD_PARTITIONS):
        found += lapsed_in(partition, limit, event_id, grace_seconds)
    found.sort(key=lambda order: order.expires_at)
    return found[:limit]


def lapsed_in(partition: int, limit: int, event_id: str | None = None, grace_seconds: int = 0) -> list[OrderItem]:
    """One hold partition's lapsed orders, oldest first (up to `limit`)."""
    before = clock.iso(clock.now() - timedelta(seconds=grace_seconds))
    condition = OrderItem.event_id == event_id if event_id else None
    return list(OrderItem.gsi2.query(
        f"HOLDS#{partition}", OrderItem.GSI2SK <= f"{before}#~", filter_condition=condition, limit=limit,
    ))


def uncanceled_in(partition: int, limit: int) -> list[OrderItem]:
    """One partition's released orders whose PaymentIntent is still to be canceled at Stripe,
    oldest release first (up to `limit`)."""
    return list(OrderItem.gsi2.query(f"{UNCANCELED}{partition}", limit=limit))


def ensure_pending(order: OrderItem) -> None:
    if order.status != OrderStatus.PENDING:
        raise Conflict(f"Order {order.order_id} is {order.status}, not pending.", code=f"order_{order.status}")


def by_charge(charge_id: str) -> OrderItem | None:
    return next(iter(OrderItem.gsi2.query(f"CHARGE#{charge_id}", limit=1)), None)


def refunds_of(order_id: str) -> list[dict[str, Any]]:
    from ticketing.table import RefundItem

    found = RefundItem.query(f"ORDER#{order_id}", RefundItem.SK.startswith("REFUND#"))
    return [
        {
            "id": r.refund_id, "amount_cents": int(r.amount_cents), "status": r.status, "stripe_refund_id": r.stripe_refund_id,
            "ticket_ids": list(r.ticket_ids or []), "reason": r.reason, "created_at": r.created_at,
        }
        for r in sorted(found, key=lambda r: r.created_at)
    ]
