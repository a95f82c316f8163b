"""Refunds: full, partial and per ticket, mirrored from Stripe, enforced at the gate. The
one place that asks Stripe for a refund (`_stripe_refund`); the writes are
`ticketing.lifecycle.refunds`'.

A refund is reserved before Stripe is called: one transaction raises the order's
`refunded_cents` only while it stays within what was paid (so concurrent requests can
never over-refund), writes a `pending` refund record and marks the tickets it covers
(a marked ticket is refused at the gate; a customer cannot reserve a used ticket: the
loser of refund x check-in is a 409, `ticket_used` or `void`). If Stripe fails, the
reservation is undone and nothing is left behind. If Stripe succeeds, a second
transaction voids the tickets, returns each seat to the shard it came from (if the event
has not started) and moves the order to `partially_refunded` or `refunded`. The Stripe
idempotency key is derived from the order's state before the refund, so a retry after
an unclear failure can never refund twice.

Refunds made elsewhere (the Stripe dashboard) arrive as `charge.refunded` /
`refund.created` and are mirrored once, matched by Stripe's refund id.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Literal, TypeVar

from pydantic import BaseModel, Field, StrictInt, model_validator

from ticketing import clock, fees as fee_rules, mail, orders, payments, stripe_budget
from ticketing.auth import Caller
from ticketing.config import settings
from ticketing.errors import Conflict, DependencyUnavailable, Forbidden, InvalidInput, PaymentProviderError
from ticketing.ids import new_id
from ticketing.lifecycle import REFUNDABLE, OrderStatus, RefundStatus, TicketStatus
from ticketing.lifecycle import refunds as lifecycle
from ticketing.lifecycle.writes import checkpoint
from ticketing.observability import logger, metrics
from ticketing.table import EventItem, OrderItem, RefundItem, TicketItem

T = TypeVar("T")

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


def _ticket_refund(order: OrderItem, ticket: TicketItem, organiser: bool) -> tuple[int, int]:
    """(to the buyer, fee given up) for one ticket, by the fees the order was sold with."""
    order_fees = fee_rules.Fees.of(order.fees.as_dict()) if order.fees is not None else None
    priced = fee_rules.PricedTicket(int(ticket.price_cents), int(ticket.fee_cents or 0))
    return fee_rules.refund_of(priced, order_fees, organiser=organiser)


def _plan(order: OrderItem, data: RefundIn, who: Caller) -> tuple[int, int, list[TicketItem], str]:
    """(amount, fees given up, tickets to void, event start) for this request, or the
    refusal. A ticket gives back its price, and its fee when the fee comes back
    (`ticketing.fees.refund_of`: refundable fees, or an organiser's refund)."""
    if order.status not in REFUNDABLE:
        code = "already_refunded" if order.status == OrderStatus.REFUNDED else f"order_{order.status}"
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
            if ticket.status == TicketStatus.USED and not admin:
                raise lifecycle.ticket_used()
            if ticket.transferred_at and not admin:  # the new holder's ticket: the buyer cannot take it back
                raise lifecycle.ticket_transferred()
            if ticket.status not in (TicketStatus.VALID, TicketStatus.USED) or ticket.refund_id:
                raise Conflict(f"Ticket {ticket_id} is {ticket.status} and cannot be refunded.", code="ticket_not_refundable")
            chosen.append(ticket)
        parts = [_ticket_refund(order, t, admin) for t in chosen]
        amount, fees_back = sum(p[0] for p in parts), sum(p[1] for p in parts)
    elif data.amount_cents is not None:
        if not admin:
            raise Forbidden("Refunding an amount is for organisers; customers refund whole tickets.")
        amount, fees_back, chosen = data.amount_cents, 0, []
    else:
        chosen = [t for t in tickets if t.status in (TicketStatus.VALID, TicketStatus.USED) and not t.refund_id]
        if not admin and any(t.status == TicketStatus.USED for t in chosen):
            raise lifecycle.ticket_used()
        if not admin and any(t.transferred_at for t in chosen):
            raise lifecycle.ticket_transferred()
        fees_left = int(order.all_fees_cents or 0) - int(order.fees_returned_cents or 0)
        if admin:  # the organiser gives back everything left, fees included
            amount, fees_back = left, fees_left
        else:
            parts = [_ticket_refund(order, t, False) for t in chosen]
            amount, fees_back = min(left, sum(p[0] for p in parts)), min(fees_left, sum(p[1] for p in parts))
    if amount > left or amount < 0 or (amount == 0 and not chosen):
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
    return amount, fees_back, chosen, starts


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
            ),
            customer_sub=order.customer_sub, event_id=order.event_id,
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
        except lifecycle.RefundRaced:
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
        amount, fees_back, tickets, starts = _plan(order, data, who)  # 409 once nothing is left
        refund_id = new_id("rf")
        record = RefundItem(
            *RefundItem.key(order_id, refund_id), refund_id=refund_id, order_id=order_id, amount_cents=amount,
            fees_cents=fees_back,
            currency=order.currency, status="pending", ticket_ids=[t.ticket_id for t in tickets], reason=data.reason,
            created_at=clock.iso(clock.now()), created_by=who.sub,
        )
        lifecycle.reserve(order, record, tickets, organiser=who.is_admin, by=who.sub)
        return order, record, tickets, starts

    order, record, tickets, starts = _until_reserved(
        attempt, DependencyUnavailable("Too many refunds of this order at once; try again.", retry_after=1, code="contention")
    )
    amount, refund_id = int(record.amount_cents), record.refund_id
    before = int(order.refunded_cents or 0)
    if amount == 0:  # free tickets: nothing goes back through Stripe, and no refund notice (but the event's cancellation's)
        if lifecycle.complete(order_id, record, "succeeded", None, starts, by=who.sub):
            metrics.add_metric(name="Refunds", unit="Count", value=1)
            if record.reason == "event_canceled":
                notify(order, 0, record.reason, tickets)
        return _out(RefundItem.get(*RefundItem.key(order_id, refund_id), consistent_read=True))
    try:
        made = _stripe_refund(
            order.payment.payment_intent_id, amount, data.reason,
            {"order_id": order_id, "refund_id": refund_id, "requested_by": who.sub},
            f"order-{order_id}-refund-{before}-{amount}",
        )
    except (PaymentProviderError, DependencyUnavailable) as exc:
        lifecycle.undo(order, record, tickets, by=who.sub, why=f"Stripe refused: {exc.detail}")
        raise
    if lifecycle.complete(order_id, record, made.status, made.id, starts, by=who.sub):
        metrics.add_metric(name="Refunds", unit="Count", value=1)
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
    records = orders.refunds_of(order.order_id)
    known = {r["stripe_refund_id"] for r in records if r["stripe_refund_id"]}
    checkpoint("mirror_read", order_id=order.order_id)
    done = 0
    for stripe_refund in payments.refunds_of(order.payment.payment_intent_id):
        if stripe_refund.status not in ("succeeded", "pending") or stripe_refund.id in known:
            continue
        ours = stripe_refund.metadata.get("refund_id")
        record = _our_record(order.order_id, ours) if ours else None
        if record is not None:
            # Ours: completed here if still pending. Read now, not with the list above: a
            # refund reserved after that read (and sent to Stripe since) is ours too, not
            # one to count again as the dashboard's.
            if record.status == RefundStatus.PENDING:
                tickets = [t for t in orders.tickets_of(order) if t.ticket_id in set(record.ticket_ids or [])]
                done += lifecycle.complete(order.order_id, record, stripe_refund.status, stripe_refund.id,
                                           _event_starts(order, tickets), by="stripe")
        else:  # the dashboard's, or ours released before Stripe's answer came
            done += _record_external(order, stripe_refund)
    return ("mirrored" if done else "in_sync"), order.order_id


def _our_record(order_id: str, refund_id: str) -> RefundItem | None:
    try:
        return RefundItem.get(*RefundItem.key(order_id, refund_id), consistent_read=True)
    except RefundItem.DoesNotExist:
        return None


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
            lifecycle.reserve(fresh, record, [], organiser=True, by="stripe")
        except Conflict:
            return None  # recorded already by a concurrent delivery
        return fresh

    fresh = _until_reserved(attempt, DependencyUnavailable("The order kept changing while a refund was mirrored; retry.", retry_after=5))
    if fresh is None:
        return False
    tickets = orders.tickets_of(fresh)
    return lifecycle.complete(fresh.order_id, record, stripe_refund.status, stripe_refund.id, _event_starts(fresh, tickets), by="stripe")


def _stripe_refund(payment_intent_id: str, amount: int, reason: str, metadata: dict[str, str], idempotency_key: str) -> payments.RefundResult:
    """The one call that asks Stripe for a refund: it spends one request of the Stripe
    budget's background share first (over it: DependencyUnavailable, 503 with Retry-After,
    and the caller gives back what it reserved)."""
    spent = stripe_budget.take("refunds.create", stripe_budget.BACKGROUND)
    stripe_budget.still(spent, "refunds.create", stripe_budget.BACKGROUND)
    return payments.refund(payment_intent_id=payment_intent_id, amount=amount, reason=reason, metadata=metadata,
                           idempotency_key=idempotency_key)


def refund_whole_payment(order: OrderItem, payment_intent_id: str, amount: int, why: str) -> payments.RefundResult:
    """Give a whole payment back (a late payment whose seats are gone); the caller records it."""
    return _stripe_refund(payment_intent_id, amount, "other", {"order_id": order.order_id, "why": why},
                          f"order-{order.order_id}-auto-refund")
