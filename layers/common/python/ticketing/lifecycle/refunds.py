"""Refund transitions: reserve (before Stripe is called), undo (Stripe refused), complete
(Stripe refunded: tickets void, their seats back to their own shards, the order moved on).

Refund x check-in is decided by conditions, never by timing: a customer's reservation
requires each ticket `valid` with no refund on it, and a check-in requires no refund on
the ticket (`states.CHECK_IN`). Whichever write lands first wins; the loser is a 409
(`ticket_used` for the refund, `void` for the check-in)."""

from __future__ import annotations

from ticketing import clock
from ticketing.errors import Conflict
from ticketing.lifecycle import states as S
from ticketing.lifecycle.orders import count_bought, return_sold, seats_back, void_actions
from ticketing.lifecycle.writes import Refused, Tx, checkpoint, transact
from ticketing.table import OrderItem, RefundItem, TicketItem

COMPLETE_ATTEMPTS = 4


class RefundRaced(Exception):
    """The order's refunded total moved between our read and our write: read again."""


def _fresh_tickets(ticket_ids: list[str]) -> list[TicketItem]:
    return list(TicketItem.batch_get([TicketItem.key(t) for t in ticket_ids], consistent_read=True)) if ticket_ids else []


def reserve(order: OrderItem, record: RefundItem, tickets: list[TicketItem], *, organiser: bool, by: str) -> None:
    """Reserve the refund: the record (pending), each ticket marked with it, the order's
    refunded total raised, conditional on that total being what we read (so the Stripe
    idempotency key derived from it names one refund) and on each ticket being
    refundable. Raises RefundRaced, or Conflict (`ticket_used`, `refund_in_progress`)."""
    amount = int(record.amount_cents)
    before = int(order.refunded_cents or 0)
    on_ticket = S.RESERVE_ORGANISER if organiser else S.RESERVE_CUSTOMER
    checkpoint("refund_reserve", order_id=order.order_id)

    def build(tx: Tx) -> None:
        tx.save("refund", record, condition=S.REFUND_CREATE.condition())
        for ticket in tickets:
            tx.update("ticket", TicketItem(*TicketItem.key(ticket.ticket_id)), actions=[TicketItem.refund_id.set(record.refund_id)],
                      condition=on_ticket.condition())
        tx.update(
            "order", OrderItem(*OrderItem.key(order.order_id)),
            actions=[OrderItem.refunded_cents.add(amount), *_fees_back(record, 1), OrderItem.updated_at.set(clock.iso(clock.now()))],
            condition=S.REFUND_RESERVE.condition(before=before, total=int(order.total_cents), amount=amount),
        )
        tx.log(order.order_id, S.REFUND_CREATE, by=by, why=f"{record.reason}: {amount} reserved",
               ids=[record.refund_id, *(t.ticket_id for t in tickets)])

    try:
        transact(build, what="The refund")
    except Refused as refused:
        if refused.failed == {"order"}:
            raise RefundRaced() from refused
        if "ticket" in refused.failed:
            now = _fresh_tickets([t.ticket_id for t in tickets])
            if not organiser and any(t.status == S.TicketStatus.USED for t in now):
                raise ticket_used() from refused
            if not organiser and any(t.transferred_at for t in now):
                raise ticket_transferred() from refused
        raise Conflict("This refund, or one of its tickets, is already being refunded.", code="refund_in_progress",
                       failed=sorted(refused.failed)) from refused


def _fees_back(record: RefundItem, sign: int) -> list:
    """The order's fees given up by refunds (`fees_returned_cents`), moved with the refund."""
    fees = int(record.fees_cents or 0)
    return [OrderItem.fees_returned_cents.add(sign * fees)] if fees else []


def ticket_transferred() -> Conflict:
    return Conflict("A ticket of this refund was given to someone else; only an organiser can refund it now.",
                    code="ticket_transferred")


def ticket_used() -> Conflict:
    return Conflict("A ticket of this refund has been used at the gate; only an organiser can refund it now.",
                    code="ticket_used")


def undo(order: OrderItem, record: RefundItem, tickets: list[TicketItem], *, by: str, why: str) -> None:
    """Stripe said no (or never got it): leave nothing behind. Raises Refused if the
    record is no longer pending."""

    def build(tx: Tx) -> None:
        tx.delete("refund", RefundItem(*RefundItem.key(order.order_id, record.refund_id)), condition=S.REFUND_UNDO.condition())
        for ticket in tickets:
            tx.update("ticket", TicketItem(*TicketItem.key(ticket.ticket_id)), actions=[TicketItem.refund_id.remove()],
                      condition=TicketItem.refund_id == record.refund_id)
        tx.update("order", OrderItem(*OrderItem.key(order.order_id)),
                  actions=[OrderItem.refunded_cents.add(-int(record.amount_cents)), *_fees_back(record, -1)])
        tx.log(order.order_id, S.REFUND_UNDO, by=by, why=why, from_status=S.RefundStatus.PENDING, to_status="deleted",
               ids=[record.refund_id])

    transact(build, what="Undoing the refund")


def complete(order_id: str, record: RefundItem, stripe_status: str, stripe_refund_id: str | None, starts: str, *, by: str) -> bool:
    """Stripe refunded: void the tickets the refund holds (and, once the order is refunded
    in full, every ticket still standing), return each seat to its own shard if the event
    has not started, and move the order on; conditional on the refund still being
    pending (exactly once) and on each ticket being as read (a check-in cannot slip in:
    a held ticket refuses it; an unheld one makes us read again). False if already done."""
    from ticketing.table import OrderItem as _Order

    held = list(record.ticket_ids or [])
    for _attempt in range(COMPLETE_ATTEMPTS):
        order = _Order.get(*_Order.key(order_id), consistent_read=True)
        mine = _fresh_tickets(held)
        standing = [t for t in _fresh_tickets([i for i in order.ticket_ids if i not in held])
                    if t.status in S.ISSUED and not t.refund_id]
        # Refunded in full: all the money is back, or every ticket is (a fee that does not
        # come back, or free tickets, leave money "unrefunded" that nobody is owed).
        money_back = int(order.total_cents) > 0 and int(order.refunded_cents or 0) >= int(order.total_cents)
        full = money_back or (bool(held) and not standing)
        rest = standing if full else []
        now = clock.iso(clock.now())
        back = seats_back(order, [t.ticket_id for t in [*mine, *rest] if t.status == S.TicketStatus.VALID]) if now < starts else {}
        transition = S.REFUND_FULL if full else S.REFUND_PART
        checkpoint("refund_complete", order_id=order_id)

        def build(tx: Tx) -> None:
            tx.update(
                "refund", RefundItem(*RefundItem.key(order_id, record.refund_id)),
                actions=[RefundItem.status.set(stripe_status),
                         *([RefundItem.stripe_refund_id.set(stripe_refund_id)] if stripe_refund_id else [])],
                condition=S.REFUND_COMPLETE.condition(),
            )
            for ticket in mine:
                if ticket.status in S.ISSUED:
                    tx.update("ticket", TicketItem(*TicketItem.key(ticket.ticket_id)), actions=void_actions(ticket, now),
                              condition=S.REFUND_VOID.condition(refund_id=record.refund_id) & (TicketItem.status == ticket.status))
            for ticket in rest:
                tx.update("ticket", TicketItem(*TicketItem.key(ticket.ticket_id)),
                          actions=[*void_actions(ticket, now), TicketItem.refund_id.set(record.refund_id)],
                          condition=S.REFUND_VOID_REST.condition() & (TicketItem.status == ticket.status))
            return_sold(tx, back)
            count_bought(tx, order, -len([t for t in [*mine, *rest] if t.status in S.ISSUED]))
            tx.update("order", OrderItem(*OrderItem.key(order_id)),
                      actions=[OrderItem.status.set(transition.target), OrderItem.updated_at.set(now)],
                      condition=transition.condition())
            tx.log(order_id, transition, by=by, why=f"refund {record.refund_id} done at Stripe ({stripe_refund_id})",
                   from_status=order.status, ids=[record.refund_id, *(t.ticket_id for t in [*mine, *rest])])

        try:
            transact(build, what="Completing the refund")
            return True
        except Refused as refused:
            if refused.failed & {"refund", "order"}:
                return False  # completed by the webhook already, or the order was disputed meanwhile
            continue  # a ticket changed (checked in, or voided) since we read it: read again
    return False
