"""Refunds and disputes: full, partial and per ticket, mirrored from Stripe, enforced at
the gate.

A refund is reserved before Stripe is called: one transaction raises the order's
`refunded_cents` only while it stays within what was paid (so concurrent requests can
never over-refund), writes a `pending` refund record and marks the tickets it covers.
If Stripe fails, the reservation is undone and nothing is left behind. If Stripe
succeeds, a second transaction voids the tickets, returns their seats (if the event has
not started) and moves the order to `partially_refunded` or `refunded`. The Stripe
idempotency key is derived from the order's state before the refund, so a retry after
an unclear failure can never refund twice.

Refunds made elsewhere (the Stripe dashboard) arrive as `charge.refunded` /
`refund.created` and are mirrored once, matched by Stripe's refund id.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, StrictInt, model_validator
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from ticketing import clock, mail, orders, payments
from ticketing.auth import Caller
from ticketing.config import settings
from ticketing.errors import Conflict, DependencyUnavailable, Forbidden, InvalidInput, PaymentProviderError
from ticketing.ids import new_id
from ticketing.observability import logger, metrics
from ticketing.table import EventItem, InventoryShard, OrderItem, RefundItem, TicketItem, connection

T = TypeVar("T")

REFUNDABLE = (orders.PAID, "partially_refunded")
Reason = Literal["requested_by_customer", "duplicate", "fraudulent", "event_canceled", "other"]


class RefundIn(BaseModel):
    amount_cents: StrictInt | None = Field(default=None, ge=1)
    ticket_ids: list[str] | None = Field(default=None, min_length=1, max_length=40)
    reason: Reason = "requested_by_customer"

    @model_validator(mode="after")
    def _one_kind(self) -> RefundIn:
        if self.amount_cents is not None and self.ticket_ids is not None:
            raise ValueError("give amount_cents or ticket_ids, not both")
        return self


class RefundOut(BaseModel):
    id: str
    order_id: str
    amount_cents: int
    currency: str
    status: str
    stripe_refund_id: str | None
    ticket_ids: list[str]
    reason: str
    created_at: str


def _out(record: RefundItem) -> RefundOut:
    return RefundOut(
        id=record.refund_id, order_id=record.order_id, amount_cents=int(record.amount_cents), currency=record.currency,
        status=record.status, stripe_refund_id=record.stripe_refund_id, ticket_ids=list(record.ticket_ids or []),
        reason=record.reason, created_at=record.created_at,
    )


# ------------------------------------------------------------------ policy
def _event_starts(order: OrderItem, tickets: list[TicketItem]) -> str:
    starts = [t.fixture_starts_at for t in tickets if t.fixture_starts_at]
    if starts:
        return min(starts)
    return EventItem.get(*EventItem.key(order.event_id)).starts_at


def _plan(order: OrderItem, data: RefundIn, who: Caller) -> tuple[int, list[TicketItem], str]:
    """(amount, tickets to void, event start) for this request, or the refusal."""
    if order.status not in REFUNDABLE:
        code = "already_refunded" if order.status == "refunded" else f"order_{order.status}"
        raise Conflict(f"Order {order.order_id} is {order.status}; it cannot be refunded.", code=code)
    tickets = orders.tickets_of(order)
    left = int(order.total_cents) - int(order.refunded_cents or 0)
    admin = who.is_admin
    if data.ticket_ids is not None:
        by_id = {t.ticket_id: t for t in tickets}
        chosen = []
        for index, ticket_id in enumerate(data.ticket_ids):
            ticket = by_id.get(ticket_id)
            if ticket is None:
                raise InvalidInput(f"ticket_ids.{index}", f"Ticket {ticket_id} is not part of order {order.order_id}.")
            if ticket in chosen:
                raise InvalidInput(f"ticket_ids.{index}", f"Ticket {ticket_id} is listed twice.")
            if ticket.status == "used" and not admin:
                raise Forbidden("Tickets that have been used can only be refunded by an organiser.")
            if ticket.status not in ("valid", "used") or ticket.refund_id:
                raise Conflict(f"Ticket {ticket_id} is {ticket.status} and cannot be refunded.", code="ticket_not_refundable")
            chosen.append(ticket)
        amount = sum(int(t.price_cents) for t in chosen)
    elif data.amount_cents is not None:
        if not admin:
            raise Forbidden("Refunding an amount is for organisers; customers refund whole tickets.")
        amount, chosen = data.amount_cents, []
    else:
        amount = left
        chosen = [t for t in tickets if t.status in ("valid", "used") and not t.refund_id]
        if not admin and any(t.status == "used" for t in chosen):
            raise Forbidden("Part of this order has been used; only an organiser can refund it.")
    if amount > left or amount <= 0:
        raise Conflict(
            f"Only {left} of {int(order.total_cents)} {order.currency.upper()} cents are left to refund on this order.",
            code="over_refund" if left else "already_refunded",
        )
    starts = _event_starts(order, tickets)
    if not admin:
        cutoff = clock.parse_iso(starts) - timedelta(hours=settings().refund_cutoff_hours)
        if clock.now() >= cutoff:
            raise Forbidden(
                f"Refunds close {settings().refund_cutoff_hours} hours before the event starts; ask the organiser.",
                code="refund_window_closed",
            )
    return amount, chosen, starts


# ------------------------------------------------------------- reservation
class _Raced(Exception):
    """The order's refunded total moved between our read and our write: read again."""


def _reserve(order: OrderItem, record: RefundItem, tickets: list[TicketItem], ticket_states: tuple[str, ...]) -> None:
    """Reserve the refund, conditional on the order's refunded total being exactly what
    we read (so the Stripe idempotency key derived from it names one refund) and on
    each ticket not being refunded already. Raises _Raced, or Conflict."""
    amount = int(record.amount_cents)
    before = int(order.refunded_cents or 0)
    kinds: list[str] = []
    try:
        with TransactWrite(connection=connection()) as transaction:
            transaction.save(record, condition=RefundItem.PK.does_not_exist())
            kinds.append("record")
            for ticket in tickets:
                transaction.update(
                    TicketItem(*TicketItem.key(ticket.ticket_id)),
                    actions=[TicketItem.refund_id.set(record.refund_id)],
                    condition=TicketItem.refund_id.does_not_exist() & TicketItem.status.is_in(*ticket_states),
                )
                kinds.append("ticket")
            transaction.update(
                OrderItem(*OrderItem.key(order.order_id)),
                actions=[OrderItem.refunded_cents.add(amount), OrderItem.updated_at.set(clock.iso(clock.now()))],
                condition=OrderItem.status.is_in(*REFUNDABLE)
                & (OrderItem.refunded_cents == before)
                & (OrderItem.refunded_cents <= int(order.total_cents) - amount),
            )
            kinds.append("order")
    except TransactWriteError as exc:
        failed = {kinds[i] for i, reason in enumerate(exc.cancellation_reasons or []) if reason and reason.code == "ConditionalCheckFailed"}
        if failed == {"order"}:
            raise _Raced() from exc
        if failed:
            raise Conflict("This refund, or one of its tickets, is already being refunded.", code="refund_in_progress") from exc
        raise


def _undo(order: OrderItem, record: RefundItem, tickets: list[TicketItem]) -> None:
    """Stripe said no (or could not be reached): leave nothing behind."""
    with TransactWrite(connection=connection()) as transaction:
        transaction.delete(RefundItem(*RefundItem.key(order.order_id, record.refund_id)), condition=RefundItem.status == "pending")
        for ticket in tickets:
            transaction.update(
                TicketItem(*TicketItem.key(ticket.ticket_id)),
                actions=[TicketItem.refund_id.remove()],
                condition=TicketItem.refund_id == record.refund_id,
            )
        transaction.update(
            OrderItem(*OrderItem.key(order.order_id)), actions=[OrderItem.refunded_cents.add(-int(record.amount_cents))]
        )


def _seat_returns(order: OrderItem, tickets: list[TicketItem]) -> dict[tuple[str, int], int]:
    """Seats to put back on sale, per (type, shard): each ticket goes back to a shard its
    line was sold from."""
    first_shard = {line.type_id: int(line.takes[0].shard) for line in order.lines if line.takes}
    back: dict[tuple[str, int], int] = {}
    for ticket in tickets:
        key = (ticket.type_id, first_shard.get(ticket.type_id, 0))
        back[key] = back.get(key, 0) + 1
    return back


def _complete(order: OrderItem, record: RefundItem, stripe_refund: payments.RefundResult, tickets: list[TicketItem], starts: str) -> bool:
    """Stripe refunded: void the tickets, return their seats if the event has not started,
    and move the order on; conditional on the refund still being pending (exactly once)."""
    now = clock.iso(clock.now())
    fresh = orders.get(order.order_id) or order
    full = int(fresh.refunded_cents or 0) >= int(fresh.total_cents)
    if full:  # refunded in full: every ticket still standing is voided too
        covered = {t.ticket_id for t in tickets}
        tickets = tickets + [t for t in orders.tickets_of(fresh) if t.status in ("valid", "used") and t.ticket_id not in covered and not t.refund_id]
    seats_back = _seat_returns(fresh, [t for t in tickets if t.status != "used"]) if now < starts else {}
    try:
        with TransactWrite(connection=connection()) as transaction:
            transaction.update(
                RefundItem(*RefundItem.key(order.order_id, record.refund_id)),
                actions=[RefundItem.status.set(stripe_refund.status), RefundItem.stripe_refund_id.set(stripe_refund.id)],
                condition=RefundItem.status == "pending",
            )
            for ticket in tickets:
                transaction.update(
                    TicketItem(*TicketItem.key(ticket.ticket_id)),
                    actions=[*orders.void_actions(ticket, now), TicketItem.refund_id.set(record.refund_id)],
                )
            for (type_id, shard), count in seats_back.items():
                transaction.update(
                    InventoryShard(*InventoryShard.key(type_id, shard)),
                    actions=[InventoryShard.remaining.add(count), InventoryShard.sold.add(-count)],
                )
            transaction.update(
                OrderItem(*OrderItem.key(order.order_id)),
                actions=[OrderItem.status.set("refunded" if full else "partially_refunded"), OrderItem.updated_at.set(now)],
                condition=OrderItem.status.is_in(*REFUNDABLE),
            )
    except TransactWriteError as exc:
        if any(reason and reason.code == "ConditionalCheckFailed" for reason in exc.cancellation_reasons or []):
            return False  # completed by the webhook already, or the order was disputed meanwhile
        raise
    metrics.add_metric(name="Refunds", unit="Count", value=1)
    return True


NOTICE_REASONS = {
    "event_canceled": "The event has been canceled.",
    "requested_by_customer": "You asked for a refund.",
    "duplicate": "The payment was a duplicate.",
    "fraudulent": "The payment was reported as fraudulent.",
    "late_payment_sold_out": "Your payment arrived after your hold had lapsed and the seats had been sold, "
    "so it has been refunded in full.",
}


def notify(order: OrderItem, amount_cents: int, reason: str, tickets: list[TicketItem] = (), event_name: str | None = None) -> None:
    """Email the customer that `amount_cents` went back to their card. A failure to send is
    logged, never raised: the refund itself has happened."""
    if not order.customer_email:
        return
    if event_name is None:
        event_name = next((t.event_name for t in tickets if t.event_name), None)
    try:
        mail.send(
            mail.build_refund_notice(
                mail.RefundNotice(
                    order_id=order.order_id, to_email=order.customer_email, to_name=order.customer_name,
                    event_name=event_name or "your event", currency=order.currency, amount_cents=int(amount_cents),
                    reason=NOTICE_REASONS.get(reason, "Your order has been refunded."),
                    ticket_serials=tuple(t.serial for t in tickets),
                    kind="event_canceled" if reason == "event_canceled" else "refund",
                )
            )
        )
    except (mail.MailError, ValueError):
        logger.warning("refund notice not sent", extra={"order_id": order.order_id})


# ------------------------------------------------------------------- route
RESERVE_ATTEMPTS = 12


def _until_reserved(attempt: Callable[[], T], unavailable: DependencyUnavailable) -> T:
    """Run `attempt` (read the order, plan, reserve) again, after a short random pause, each
    time another writer changed the order in between; `unavailable` once it keeps racing."""
    for _attempt in range(RESERVE_ATTEMPTS):
        try:
            return attempt()
        except _Raced:
            time.sleep(random.uniform(0.01, 0.05))
    raise unavailable


def check_reason(reason: str, who: Caller, *, by_cancellation: bool = False) -> None:
    """Who may give which reason: customers `requested_by_customer` only (`fraudulent` feeds
    Stripe's fraud screening); organisers any but `event_canceled`, which the
    event-cancellation job alone sets (it sends the "event canceled" notice)."""
    if reason == "event_canceled" and not by_cancellation:
        raise Forbidden("The reason event_canceled is set by canceling the event (POST /api/events/{id}/cancel/).",
                        code="reason_event_canceled", field="reason")
    if reason != "requested_by_customer" and not who.is_admin:
        raise Forbidden("Customers refund with the reason requested_by_customer; other reasons are for organisers.",
                        code="reason_for_organisers", field="reason")


def refund(order_id: str, data: RefundIn, who: Caller, *, by_cancellation: bool = False) -> RefundOut:
    def attempt() -> tuple[OrderItem, RefundItem, list[TicketItem], str]:
        order = orders.get_for(order_id, who)  # another customer's order is a 404
        check_reason(data.reason, who, by_cancellation=by_cancellation)
        amount, tickets, starts = _plan(order, data, who)  # 409 once nothing is left
        refund_id = new_id("rf")
        record = RefundItem(
            *RefundItem.key(order_id, refund_id), refund_id=refund_id, order_id=order_id, amount_cents=amount,
            currency=order.currency, status="pending", ticket_ids=[t.ticket_id for t in tickets], reason=data.reason,
            created_at=clock.iso(clock.now()), created_by=who.sub,
        )
        _reserve(order, record, tickets, ("valid", "used") if who.is_admin else ("valid",))
        return order, record, tickets, starts

    order, record, tickets, starts = _until_reserved(
        attempt, DependencyUnavailable("Too many refunds of this order at once; try again.", retry_after=1, code="contention")
    )
    amount, refund_id = int(record.amount_cents), record.refund_id
    before = int(order.refunded_cents or 0)
    try:
        made = payments.refund(
            payment_intent_id=order.payment.payment_intent_id, amount=amount, reason=data.reason,
            metadata={"order_id": order_id, "refund_id": refund_id, "requested_by": who.sub},
            idempotency_key=f"order-{order_id}-refund-{before}-{amount}",
        )
    except (PaymentProviderError, DependencyUnavailable):
        _undo(order, record, tickets)
        raise
    _complete(order, record, made, tickets, starts)
    notify(order, int(record.amount_cents), record.reason, tickets)
    saved = RefundItem.get(*RefundItem.key(order_id, refund_id), consistent_read=True)
    return _out(saved)


# ------------------------------------------------------------- from Stripe
def mirror(charge_id: str | None, payment_intent_id: str | None) -> tuple[str, str | None]:
    """Bring our refunds in line with Stripe's for a charge (`charge.refunded`,
    `refund.created`): ours still pending are completed, others (the dashboard's) are
    recorded once, matched by Stripe's refund id."""
    order = orders.by_charge(charge_id) if charge_id else None
    if order is None and payment_intent_id:
        intent = payments.retrieve_intent(payment_intent_id)
        order = orders.get(intent.metadata.get("order_id", "")) if intent.metadata.get("order_id") else None
    if order is None:
        return "unknown_order", None
    known = {r["stripe_refund_id"]: r for r in orders.refunds_of(order.order_id)}
    pending = {r["id"]: r for r in orders.refunds_of(order.order_id) if r["status"] == "pending"}
    done = 0
    for stripe_refund in payments.refunds_of(order.payment.payment_intent_id):
        if stripe_refund.status not in ("succeeded", "pending"):
            continue
        ours = stripe_refund.metadata.get("refund_id")
        if ours in pending:
            record = RefundItem.get(*RefundItem.key(order.order_id, ours), consistent_read=True)
            tickets = [t for t in orders.tickets_of(order) if t.ticket_id in set(record.ticket_ids or [])]
            done += _complete(order, record, stripe_refund, tickets, _event_starts(order, tickets))
        elif stripe_refund.id not in known:  # the dashboard's, or ours whose answer was lost
            done += _record_external(order, stripe_refund)
    return ("mirrored" if done else "in_sync"), order.order_id


def _record_external(order: OrderItem, stripe_refund: payments.RefundResult) -> bool:
    """A refund made outside this API: count it once (the record's key is Stripe's id)."""
    now = clock.iso(clock.now())
    record = RefundItem(
        *RefundItem.key(order.order_id, f"rf_{stripe_refund.id}"), refund_id=f"rf_{stripe_refund.id}", order_id=order.order_id,
        amount_cents=stripe_refund.amount, currency=order.currency, status="pending", ticket_ids=[], reason="other",
        created_at=now, created_by="stripe",
    )

    def attempt() -> OrderItem | None:
        fresh = orders.get(order.order_id) or order
        amount = min(stripe_refund.amount, int(fresh.total_cents) - int(fresh.refunded_cents or 0))
        if amount <= 0 or fresh.status not in REFUNDABLE:
            return None
        record.amount_cents = amount
        try:
            _reserve(fresh, record, [], ("valid", "used"))
        except Conflict:
            return None  # recorded already by a concurrent delivery
        return fresh

    fresh = _until_reserved(attempt, DependencyUnavailable("The order kept changing while a refund was mirrored; retry.", retry_after=5))
    if fresh is None:
        return False
    tickets = orders.tickets_of(fresh)
    return _complete(fresh, record, stripe_refund, [], _event_starts(fresh, tickets))


# Longer than any function runs (Lambda stops at 15 minutes): a refund of ours still
# pending this long after it was reserved is not in flight any more.
STALE_AFTER = timedelta(minutes=20)


def stale(order: OrderItem) -> list[RefundItem]:
    """The order's refunds still pending STALE_AFTER after they were reserved: the process
    stopped between reserving and Stripe's answer (and no webhook brought the answer)."""
    cutoff = clock.iso(clock.now() - STALE_AFTER)
    found = RefundItem.query(RefundItem.key(order.order_id, "")[0], RefundItem.SK.startswith("REFUND#"), consistent_read=True)
    return [record for record in found if record.status == "pending" and record.created_at < cutoff]


def sent(record: RefundItem, stripe_refunds: list[payments.RefundResult]) -> bool:
    """Whether Stripe holds this refund of ours (by our id in its metadata, or its own id)."""
    return any(r.metadata.get("refund_id") == record.refund_id or f"rf_{r.id}" == record.refund_id for r in stripe_refunds)


def release_unsent(order: OrderItem, record: RefundItem) -> None:
    """Give back what a refund Stripe never received set aside, as a refused one would; the
    customer (or an admin) can ask again. Conditional on the record still being pending."""
    held = set(record.ticket_ids or [])
    try:
        _undo(order, record, [t for t in orders.tickets_of(order) if t.ticket_id in held])
    except TransactWriteError as exc:
        raise Conflict(f"Refund {record.refund_id} changed while it was released; look again.", code="refund_changed") from exc
    logger.warning("unsent refund released", extra={"order_id": order.order_id, "refund_id": record.refund_id})


# ---------------------------------------------------------------- disputes
def dispute_opened(dispute: dict[str, Any]) -> tuple[str, str | None]:
    """`charge.dispute.created`: the order is disputed and its tickets voided, so they
    fail at the gate and reach the scanners' voided list."""
    order = _order_of_dispute(dispute)
    if order is None:
        return "unknown_order", None
    logger.error("dispute opened", extra={"order_id": order.order_id, "dispute": dispute.get("id"), "reason": dispute.get("reason")})
    metrics.add_metric(name="DisputesOpened", unit="Count", value=1)
    now = clock.iso(clock.now())
    tickets = [t for t in orders.tickets_of(order) if t.status in ("valid", "used")]
    try:
        with TransactWrite(connection=connection()) as transaction:
            for ticket in tickets:
                transaction.update(
                    TicketItem(*TicketItem.key(ticket.ticket_id)),
                    actions=[*orders.void_actions(ticket, now), TicketItem.voided_by_dispute.set(str(dispute.get("id")))],
                )
            transaction.update(
                OrderItem(*OrderItem.key(order.order_id)),
                actions=[
                    OrderItem.status_before_dispute.set(order.status), OrderItem.status.set("disputed"),
                    OrderItem.dispute_status.set(str(dispute.get("status", "needs_response"))), OrderItem.updated_at.set(now),
                ],
                condition=OrderItem.status.is_in(*REFUNDABLE),
            )
    except TransactWriteError as exc:
        if any(reason and reason.code == "ConditionalCheckFailed" for reason in exc.cancellation_reasons or []):
            return "already_disputed", order.order_id
        raise
    return "disputed", order.order_id


def dispute_closed(dispute: dict[str, Any]) -> tuple[str, str | None]:
    """`charge.dispute.closed`: won restores the order and its tickets; lost leaves them void."""
    order = _order_of_dispute(dispute)
    if order is None:
        return "unknown_order", None
    status = str(dispute.get("status"))
    now = clock.iso(clock.now())
    if status != "won":
        OrderItem(*OrderItem.key(order.order_id)).update(actions=[OrderItem.dispute_status.set(status), OrderItem.updated_at.set(now)])
        return f"dispute_{status}", order.order_id
    restored = [t for t in orders.tickets_of(order) if t.voided_by_dispute == str(dispute.get("id"))]
    try:
        with TransactWrite(connection=connection()) as transaction:
            for ticket in restored:
                transaction.update(
                    TicketItem(*TicketItem.key(ticket.ticket_id)),
                    actions=[
                        TicketItem.status.set("used" if ticket.used_at else "valid"), TicketItem.voided_at.remove(),
                        TicketItem.voided_by_dispute.remove(),
                        # stays on the event's list with a new time, so scanners learn it is back
                        TicketItem.GSI2SK.set(f"{now}#{ticket.ticket_id}"),
                    ],
                    condition=TicketItem.status == "void",
                )
            transaction.update(
                OrderItem(*OrderItem.key(order.order_id)),
                actions=[
                    OrderItem.status.set(order.status_before_dispute or orders.PAID), OrderItem.dispute_status.set("won"),
                    OrderItem.updated_at.set(now),
                ],
                condition=OrderItem.status == "disputed",
            )
    except TransactWriteError as exc:
        if any(reason and reason.code == "ConditionalCheckFailed" for reason in exc.cancellation_reasons or []):
            return "already_restored", order.order_id
        raise
    return "dispute_won", order.order_id


def _order_of_dispute(dispute: dict[str, Any]) -> OrderItem | None:
    charge = dispute.get("charge")
    charge_id = charge.get("id") if isinstance(charge, dict) else charge
    order = orders.by_charge(charge_id) if charge_id else None
    if order is None and dispute.get("payment_intent"):
        intent = payments.retrieve_intent(str(dispute["payment_intent"]))
        order = orders.get(intent.metadata["order_id"]) if intent.metadata.get("order_id") else None
    return order
