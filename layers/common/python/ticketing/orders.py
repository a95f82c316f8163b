"""Orders and their state changes. Every change is one conditional DynamoDB transaction
that moves the order, its tickets and its seats together, so no interleaving of buyers,
retries, expiry runs or webhooks can leave seats counted twice or lost.

    pending --paid--> paid
    pending --cancel--> canceled        (the customer abandoned it, or payment setup failed)
    pending --lapse--> expired          (the hold ran out; see `checkout.expire_lapsed`)
    expired/canceled --paid late--> paid       (seats still free: taken again)
    expired/canceled --paid late--> refunded   (seats gone: the payment goes back)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from ticketing import clock
from ticketing.auth import Caller
from ticketing.errors import Conflict, NotFound, TooManyRequests
from ticketing.table import (
    HOLD_PARTITIONS,
    HolderCount,
    InventoryShard,
    OrderItem,
    TicketItem,
    connection,
)

PENDING = "pending"


class ShardRace(Exception):
    """A shard's seats were taken between our read and our write: read again and retry."""


# ----------------------------------------------------------------- output
class CheckoutTicketOut(BaseModel):
    """A ticket as checkout answers it (held, not yet issued)."""

    id: str
    serial: str
    ticket_type_id: str
    ticket_type_name: str
    price_cents: int

    @classmethod
    def of(cls, ticket: TicketItem) -> CheckoutTicketOut:
        return cls(
            id=ticket.ticket_id, serial=ticket.serial, ticket_type_id=ticket.type_id, ticket_type_name=ticket.type_name,
            price_cents=int(ticket.price_cents),
        )


class OrderTicketOut(CheckoutTicketOut):
    status: str

    @classmethod
    def of(cls, ticket: TicketItem) -> OrderTicketOut:
        return cls(**CheckoutTicketOut.of(ticket).model_dump(), status=ticket.status)


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
    total_cents: int
    currency: str
    created_at: str
    expires_at: str
    payment: PaymentOut
    tickets: list[OrderTicketOut]
    refunds: list[dict[str, Any]]
    refunded_cents: int
    receipt: ReceiptOut | None = None  # null until the order is paid


# ---------------------------------------------------------------- holding
@dataclass(frozen=True)
class Hold:
    order: OrderItem
    tickets: list[TicketItem]


def place_hold(hold: Hold, hold_limit: int) -> None:
    """Write the order, its pending tickets and the seats they take, all or nothing.

    Raises ShardRace if a shard no longer has the seats planned for it, TooManyRequests
    if the customer would hold more than `hold_limit` seats for the event."""
    order = hold.order
    seats = sum(int(line.qty) for line in order.lines)
    too_many = TooManyRequests(
        f"One customer may hold at most {hold_limit} seats for an event at once; "
        "pay for or cancel a pending order first.",
        code="too_many_holds",
    )
    if seats > hold_limit:
        raise too_many
    kinds: list[str] = []
    try:
        with TransactWrite(connection=connection()) as transaction:
            transaction.save(order, condition=OrderItem.PK.does_not_exist())
            kinds.append("order")
            for ticket in hold.tickets:
                transaction.save(ticket, condition=TicketItem.PK.does_not_exist())
                kinds.append("ticket")
            for line in order.lines:
                for take in line.takes:
                    transaction.update(
                        InventoryShard(*InventoryShard.key(line.type_id, int(take.shard))),
                        actions=[InventoryShard.remaining.add(-int(take.qty)), InventoryShard.held.add(int(take.qty))],
                        condition=InventoryShard.remaining >= int(take.qty),
                    )
                    kinds.append("shard")
            transaction.update(
                HolderCount(*HolderCount.key(order.customer_sub, order.event_id)),
                actions=[HolderCount.held.add(seats)],
                condition=HolderCount.held.does_not_exist() | (HolderCount.held <= hold_limit - seats),
            )
            kinds.append("holder")
    except TransactWriteError as exc:
        failed = {kinds[i] for i, reason in enumerate(exc.cancellation_reasons or []) if reason and reason.code == "ConditionalCheckFailed"}
        if "holder" in failed:
            raise too_many from exc
        if "shard" in failed:
            raise ShardRace() from exc
        raise


def release(order: OrderItem, to_status: str, reason: str, *, payment: dict[str, Any] | None = None) -> bool:
    """Move a pending order to `to_status` (canceled or expired), give its seats back and
    void its tickets, in one transaction conditional on the order still being pending.
    Returns False (changing nothing) if the order had already left `pending`."""
    now = clock.iso(clock.now())
    seats = sum(int(line.qty) for line in order.lines)
    actions = [
        OrderItem.status.set(to_status),
        OrderItem.closed_reason.set(reason),
        OrderItem.updated_at.set(now),
        OrderItem.GSI2PK.remove(),
        OrderItem.GSI2SK.remove(),
    ]
    actions += [getattr(OrderItem.payment, name).set(value) for name, value in (payment or {}).items() if value is not None]
    try:
        with TransactWrite(connection=connection()) as transaction:
            for ticket_id in order.ticket_ids:
                transaction.update(
                    TicketItem(*TicketItem.key(ticket_id)),
                    actions=[TicketItem.status.set("void")],
                    condition=TicketItem.status == PENDING,
                )
            for line in order.lines:
                for take in line.takes:
                    transaction.update(
                        InventoryShard(*InventoryShard.key(line.type_id, int(take.shard))),
                        actions=[InventoryShard.remaining.add(int(take.qty)), InventoryShard.held.add(-int(take.qty))],
                    )
            transaction.update(
                HolderCount(*HolderCount.key(order.customer_sub, order.event_id)),
                actions=[HolderCount.held.add(-seats)],
            )
            transaction.update(
                OrderItem(*OrderItem.key(order.order_id)),
                actions=actions,
                condition=OrderItem.status == PENDING,
            )
    except TransactWriteError as exc:
        if any(reason and reason.code == "ConditionalCheckFailed" for reason in exc.cancellation_reasons or []):
            return False
        raise
    order.status = to_status
    return True


def park(order_id: str, payment_status: str) -> None:
    """A pending order whose payment went through before its hold could be released:
    off the expiry index (the seats stay held), its payment status recorded."""
    from pynamodb.exceptions import UpdateError

    try:
        OrderItem(*OrderItem.key(order_id)).update(
            actions=[
                OrderItem.payment.status.set(payment_status), OrderItem.GSI2PK.remove(), OrderItem.GSI2SK.remove(),
                OrderItem.updated_at.set(clock.iso(clock.now())),
            ],
            condition=OrderItem.status == PENDING,
        )
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise


def record_payment(order_id: str, **fields: Any) -> None:
    """Set payment fields on a pending order (no-op if it has left pending)."""
    from pynamodb.exceptions import UpdateError

    actions = [getattr(OrderItem.payment, name).set(value) for name, value in fields.items() if value is not None]
    actions.append(OrderItem.updated_at.set(clock.iso(clock.now())))
    try:
        OrderItem(*OrderItem.key(order_id)).update(actions=actions, condition=OrderItem.status == PENDING)
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise


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
        total_cents=int(order.total_cents),
        currency=order.currency,
        created_at=order.created_at,
        expires_at=order.expires_at,
        payment=PaymentOut(**{k: payment.get(k) for k in PaymentOut.model_fields}),
        tickets=[OrderTicketOut.of(t) for t in tickets],
        refunds=refunds_of(order.order_id) if order.refunded_cents else [],
        refunded_cents=int(order.refunded_cents or 0),
        receipt=receipt_of(order),
    )


def receipt_of(order: OrderItem) -> ReceiptOut | None:
    if order.receipt_undeliverable_at:
        return ReceiptOut(status="undeliverable", problem=order.receipt_problem)
    if order.receipt_sent_at:
        return ReceiptOut(status="sent", sent_at=order.receipt_sent_at)
    return ReceiptOut(status="pending") if order.paid_at else None


def lapsed(limit: int, event_id: str | None = None) -> list[OrderItem]:
    """Pending orders whose hold has run out, oldest first (up to `limit`)."""
    now = clock.iso(clock.now())
    found: list[OrderItem] = []
    for partition in range(HOLD_PARTITIONS):
        condition = OrderItem.event_id == event_id if event_id else None
        for order in OrderItem.gsi2.query(
            f"HOLDS#{partition}", OrderItem.GSI2SK <= f"{now}#~", filter_condition=condition, limit=limit
        ):
            found.append(order)
    found.sort(key=lambda order: order.expires_at)
    return found[:limit]


def ensure_pending(order: OrderItem) -> None:
    if order.status != PENDING:
        raise Conflict(f"Order {order.order_id} is {order.status}, not pending.", code=f"order_{order.status}")


def void_actions(ticket: TicketItem, now: str) -> list:
    """Void an issued ticket and put it on its event's voided list, which offline
    scanners download (`GET /api/scanner/keys/?since=`)."""
    return [
        TicketItem.status.set("void"),
        TicketItem.voided_at.set(now),
        TicketItem.GSI2PK.set(f"VOIDED#{ticket.event_id}"),
        TicketItem.GSI2SK.set(f"{now}#{ticket.ticket_id}"),
    ]


# ---------------------------------------------------------------- payment
PAID = "paid"
LATE_STATES = ("expired", "canceled")


def _payment_actions(fields: dict[str, Any]) -> list:
    return [getattr(OrderItem.payment, name).set(value) for name, value in fields.items() if value is not None]


def charge_index(charge_id: str | None) -> list:
    """A paid order is found by its charge (refund and dispute events name the charge):
    GSI2, which held the order while it was pending, now holds `CHARGE#<charge_id>`."""
    if not charge_id:
        return [OrderItem.GSI2PK.remove(), OrderItem.GSI2SK.remove()]
    return [OrderItem.GSI2PK.set(f"CHARGE#{charge_id}"), OrderItem.GSI2SK.set("ORDER")]


def by_charge(charge_id: str) -> OrderItem | None:
    return next(iter(OrderItem.gsi2.query(f"CHARGE#{charge_id}", limit=1)), None)


def mark_paid(order: OrderItem, payloads: dict[str, str], payment: dict[str, Any]) -> bool:
    """pending -> paid in one transaction: the order, its tickets (pending -> valid, with
    their signed QR payloads) and its seats (held -> sold). Returns False, changing
    nothing, if the order had already left `pending` (a duplicate delivery)."""
    now = clock.iso(clock.now())
    seats = sum(int(line.qty) for line in order.lines)
    try:
        with TransactWrite(connection=connection()) as transaction:
            for ticket_id in order.ticket_ids:
                transaction.update(
                    TicketItem(*TicketItem.key(ticket_id)),
                    actions=[TicketItem.status.set("valid"), TicketItem.issued_at.set(now), TicketItem.qr_payload.set(payloads[ticket_id])],
                    condition=TicketItem.status == PENDING,
                )
            for line in order.lines:
                for take in line.takes:
                    transaction.update(
                        InventoryShard(*InventoryShard.key(line.type_id, int(take.shard))),
                        actions=[InventoryShard.held.add(-int(take.qty)), InventoryShard.sold.add(int(take.qty))],
                    )
            transaction.update(
                HolderCount(*HolderCount.key(order.customer_sub, order.event_id)),
                actions=[HolderCount.held.add(-seats)],
            )
            transaction.update(
                OrderItem(*OrderItem.key(order.order_id)),
                actions=[
                    OrderItem.status.set(PAID), OrderItem.paid_at.set(now), OrderItem.updated_at.set(now),
                    *charge_index(payment.get("charge_id")), *_payment_actions(payment),
                ],
                condition=OrderItem.status == PENDING,
            )
    except TransactWriteError as exc:
        if any(reason and reason.code == "ConditionalCheckFailed" for reason in exc.cancellation_reasons or []):
            return False
        raise
    return True


def pay_late(order: OrderItem, takes: dict[str, dict[int, int]], payloads: dict[str, str], payment: dict[str, Any]) -> None:
    """A payment for an expired or canceled order, whose seats went back on sale: take
    seats again (`takes`: type id -> shard -> seats, conditional on them being free),
    turn the voided tickets valid and mark the order paid, all or nothing.
    Raises ShardRace if the seats are gone, Conflict if the order is no longer late."""
    now = clock.iso(clock.now())
    from ticketing.table import OrderLine, ShardTake

    lines = [
        OrderLine(
            type_id=line.type_id, name=line.name, qty=int(line.qty), price_cents=int(line.price_cents),
            takes=[ShardTake(shard=shard, qty=qty) for shard, qty in sorted(takes[line.type_id].items())],
        )
        for line in order.lines
    ]
    kinds: list[str] = []
    try:
        with TransactWrite(connection=connection()) as transaction:
            for ticket_id in order.ticket_ids:
                transaction.update(
                    TicketItem(*TicketItem.key(ticket_id)),
                    actions=[TicketItem.status.set("valid"), TicketItem.issued_at.set(now), TicketItem.qr_payload.set(payloads[ticket_id])],
                    condition=TicketItem.status == "void",
                )
                kinds.append("ticket")
            for type_id, shards in takes.items():
                for shard, qty in shards.items():
                    transaction.update(
                        InventoryShard(*InventoryShard.key(type_id, shard)),
                        actions=[InventoryShard.remaining.add(-qty), InventoryShard.sold.add(qty)],
                        condition=InventoryShard.remaining >= qty,
                    )
                    kinds.append("shard")
            transaction.update(
                OrderItem(*OrderItem.key(order.order_id)),
                actions=[
                    OrderItem.status.set(PAID), OrderItem.paid_at.set(now), OrderItem.updated_at.set(now),
                    OrderItem.lines.set(lines), OrderItem.closed_reason.set("paid_after_" + order.status),
                    *charge_index(payment.get("charge_id")), *_payment_actions(payment),
                ],
                condition=OrderItem.status.is_in(*LATE_STATES),
            )
            kinds.append("order")
    except TransactWriteError as exc:
        failed = {kinds[i] for i, reason in enumerate(exc.cancellation_reasons or []) if reason and reason.code == "ConditionalCheckFailed"}
        if "shard" in failed:
            raise ShardRace() from exc
        if failed:
            raise Conflict(f"Order {order.order_id} changed while its late payment was being settled.") from exc
        raise


def refunded_in_full(order: OrderItem, refund: Any, reason: str, payment: dict[str, Any], from_states: tuple[str, ...]) -> bool:
    """Record a full refund Stripe has made (`refund` has id, status, amount) and close the
    order as `refunded`, conditional on it being in one of `from_states`."""
    from ticketing.ids import new_id
    from ticketing.table import RefundItem

    now = clock.iso(clock.now())
    refund_id = new_id("rf")
    record = RefundItem(
        *RefundItem.key(order.order_id, refund_id), refund_id=refund_id, order_id=order.order_id,
        amount_cents=int(refund.amount), currency=order.currency, status=refund.status, stripe_refund_id=refund.id,
        ticket_ids=list(order.ticket_ids), reason=reason, created_at=now, created_by="system",
    )
    try:
        with TransactWrite(connection=connection()) as transaction:
            transaction.save(record, condition=RefundItem.PK.does_not_exist())
            transaction.update(
                OrderItem(*OrderItem.key(order.order_id)),
                actions=[
                    OrderItem.status.set("refunded"), OrderItem.refunded_cents.set(int(refund.amount)),
                    OrderItem.updated_at.set(now), OrderItem.closed_reason.set(reason),
                    *charge_index(payment.get("charge_id")), *_payment_actions(payment),
                ],
                condition=OrderItem.status.is_in(*from_states),
            )
    except TransactWriteError as exc:
        if any(reason and reason.code == "ConditionalCheckFailed" for reason in exc.cancellation_reasons or []):
            return False
        raise
    return True


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
