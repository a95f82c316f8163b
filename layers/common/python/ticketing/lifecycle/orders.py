"""Order transitions: hold, pay, cancel/expire, late payment, full refund of a late
payment, dispute opened / lost / won. Each is one conditional transaction that moves the
order, its tickets and its seats together, with its log record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ticketing import clock
from ticketing.errors import Conflict, Forbidden, TooManyRequests
from ticketing.lifecycle import admissions
from ticketing.lifecycle import states as S
from ticketing.lifecycle.admissions import Admission
from ticketing.lifecycle.writes import Refused, Tx, checkpoint, transact, update_one
from ticketing.table import UNCANCELED, HolderCount, InventoryShard, OrderItem, TicketItem, VoucherItem, uncanceled_partition


class ShardRace(Exception):
    """A shard's seats were taken between our read and our write: read again and retry."""


class VoucherSpent(Exception):
    """The voucher's last use was taken (or it was retired) between our read and our hold."""


@dataclass(frozen=True)
class Hold:
    order: OrderItem
    tickets: list[TicketItem]
    offer: Any = None  # a waiting-list offer (lifecycle.waitlist.OfferClaim) whose held seats the order takes


def shard_of(order: OrderItem) -> dict[str, int]:
    """Which shard each of the order's tickets took its seat from. Checkout makes a line's
    tickets in order and its takes sorted by shard, so the n-th ticket of a type sat in the
    n-th seat of that line's takes (a late payment rewrites the takes the same way)."""
    types = ticket_types(order)
    seats: dict[str, list[int]] = {}
    for line in order.lines:
        seats.setdefault(line.type_id, []).extend(int(take.shard) for take in line.takes for _ in range(int(take.qty)))
    found: dict[str, int] = {}
    used: dict[str, int] = {}
    for ticket_id in order.ticket_ids:
        type_id = types.get(ticket_id)
        if type_id is None:
            continue
        n, row = used.get(type_id, 0), seats.get(type_id) or [0]
        found[ticket_id] = row[min(n, len(row) - 1)]
        used[type_id] = n + 1
    return found


def ticket_types(order: OrderItem) -> dict[str, str]:
    """Each ticket id's type, from the order alone: its tickets are listed line by line."""
    found: dict[str, str] = {}
    ids = iter(order.ticket_ids)
    for line in order.lines:
        for _ in range(int(line.qty)):
            ticket_id = next(ids, None)
            if ticket_id is not None:
                found[ticket_id] = line.type_id
    return found


def seats_back(order: OrderItem, ticket_ids: list[str]) -> dict[tuple[str, int], int]:
    """Seats to return per (type, shard): each ticket's seat to the shard it came from."""
    shards, types = shard_of(order), ticket_types(order)
    back: dict[tuple[str, int], int] = {}
    for ticket_id in ticket_ids:
        if ticket_id in types:
            key = (types[ticket_id], shards[ticket_id])
            back[key] = back.get(key, 0) + 1
    return back


def return_sold(tx: Tx, back: dict[tuple[str, int], int]) -> None:
    """Sold seats back on sale, each shard conditional on having sold them (never negative)."""
    for (type_id, shard), count in sorted(back.items()):
        tx.update(
            "shard", InventoryShard(*InventoryShard.key(type_id, shard)),
            actions=[InventoryShard.remaining.add(count), InventoryShard.sold.add(-count)],
            condition=InventoryShard.sold >= count,
        )


def charge_index(charge_id: str | None) -> list:
    """A paid order is found by its charge (refund and dispute events name the charge):
    GSI2, which held the order while it was pending, now holds `CHARGE#<charge_id>`."""
    if not charge_id:
        return [OrderItem.GSI2PK.remove(), OrderItem.GSI2SK.remove()]
    return [OrderItem.GSI2PK.set(f"CHARGE#{charge_id}"), OrderItem.GSI2SK.set("ORDER")]


def void_actions(ticket: TicketItem, now: str) -> list:
    """Void an issued ticket and put it on its event's voided list, which offline
    scanners download (`GET /api/scanner/keys/?since=`)."""
    return [
        TicketItem.status.set(S.TicketStatus.VOID),
        TicketItem.voided_at.set(now),
        TicketItem.GSI2PK.set(f"VOIDED#{ticket.event_id}"),
        TicketItem.GSI2SK.set(f"{now}#{ticket.ticket_id}"),
    ]


def _payment_actions(fields: dict[str, Any]) -> list:
    return [getattr(OrderItem.payment, name).set(value) for name, value in fields.items() if value is not None]


def _seats(order: OrderItem) -> int:
    return sum(int(line.qty) for line in order.lines)


# ---------------------------------------------------------------- holding
def place_hold(hold: Hold, hold_limit: int, customer_limit: int | None = None, admission: Admission | None = None) -> None:
    """Write the order, its pending tickets and the seats they take, all or nothing; with
    an `admission` (a waiting room's), spend it in the same transaction.

    Raises ShardRace if a shard no longer has the seats planned for it, TooManyRequests
    if the customer would hold more than `hold_limit` seats for the event, Conflict
    (`customer_limit`) if they would have bought or held more than the event's
    `customer_limit` tickets, Forbidden (`admission_spent`) if the admission was spent
    already. The limits are counted on the customer's HolderCount item, under the same
    conditional write, so concurrent checkouts of one customer cannot pass them."""
    order = hold.order
    seats = _seats(order)
    too_many = TooManyRequests(
        f"One customer may hold at most {hold_limit} seats for an event at once; "
        "pay for or cancel a pending order first.",
        code="too_many_holds",
    )
    if seats > hold_limit:
        raise too_many
    if customer_limit is not None and seats > customer_limit:
        raise _over_limit(customer_limit)
    holder_condition = HolderCount.held.does_not_exist() | (HolderCount.held <= hold_limit - seats)
    if customer_limit is not None:
        holder_condition &= HolderCount.bought.does_not_exist() | (HolderCount.bought <= customer_limit - seats)

    def build(tx: Tx) -> None:
        tx.save("order", order, condition=S.HOLD.condition())
        for ticket in hold.tickets:
            tx.save("ticket", ticket, condition=S.T_HOLD.condition())
        for line in order.lines:
            if hold.offer is not None and line.type_id == hold.offer.type_id:
                continue  # the offer's seats are held already: the order takes them over
            for take in line.takes:
                tx.update(
                    "shard", InventoryShard(*InventoryShard.key(line.type_id, int(take.shard))),
                    actions=[InventoryShard.remaining.add(-int(take.qty)), InventoryShard.held.add(int(take.qty))],
                    condition=InventoryShard.can_take(int(take.qty)),
                )
        if hold.offer is not None:
            from ticketing.lifecycle import waitlist

            waitlist.take(tx, hold.offer, order.customer_sub, order.order_id, order.created_at)
        tx.update(
            "holder", HolderCount(*HolderCount.key(order.customer_sub, order.event_id)),
            actions=[HolderCount.held.add(seats), HolderCount.bought.add(seats)],
            condition=holder_condition,
        )
        if order.voucher_code:  # the voucher's use, taken with the seats: never more than max_uses
            tx.update("voucher", VoucherItem(*VoucherItem.key(order.voucher_code)), actions=[VoucherItem.uses.add(1)],
                      condition=(VoucherItem.uses < VoucherItem.max_uses) & VoucherItem.retired_at.does_not_exist())
        tx.log(order.order_id, S.HOLD, by=order.customer_sub, why="checkout", ids=order.ticket_ids)
        if admission is not None:
            admissions.spend(tx, admission, order.order_id)

    try:
        transact(build, what="Checkout")
    except Refused as refused:
        if "admission" in refused.failed:
            raise Forbidden("This admission has been used for an order already; join the queue again to buy more.",
                            code="admission_spent") from refused
        if "holder" in refused.failed:
            if customer_limit is not None and _bought(order) + seats > customer_limit:
                raise _over_limit(customer_limit) from refused
            raise too_many from refused
        if "voucher" in refused.failed:
            raise VoucherSpent() from refused
        if "offer" in refused.failed:
            from ticketing.lifecycle.waitlist import OfferRefused

            raise OfferRefused() from refused
        if "shard" in refused.failed:
            raise ShardRace() from refused
        raise


def _over_limit(limit: int) -> Conflict:
    return Conflict(f"One customer may buy at most {limit} tickets for this event (paid and held together).",
                    error="Ticket limit reached", code="customer_limit", limit=limit)


def _bought(order: OrderItem) -> int:
    try:
        found = HolderCount.get(*HolderCount.key(order.customer_sub, order.event_id), consistent_read=True)
    except HolderCount.DoesNotExist:
        return 0
    return int(found.bought or 0)


def count_bought(tx: Tx, order: OrderItem, change: int) -> None:
    """Move the customer's count of tickets bought for the event (the per-customer limit)."""
    if change:
        tx.update("holder", HolderCount(*HolderCount.key(order.customer_sub, order.event_id)),
                  actions=[HolderCount.bought.add(change)])


def release(order: OrderItem, to_status: str, reason: str, *, payment: dict[str, Any] | None = None, by: str = "system",
            cancel_later: bool = False) -> bool:
    """pending -> canceled or expired: give its seats back and void its tickets, in one
    transaction conditional on the order still being pending. Returns False (changing
    nothing) if the order had already left `pending`.

    `cancel_later`: the seats go back before the PaymentIntent is canceled (the expiry's
    release-first): the order waits under `UNCANCELED#<k>` in GSI2 until `intent_closed`.
    A payment that gets through meanwhile is a late payment (`pay_late` or `refund_late`)."""
    transition = {S.OrderStatus.CANCELED: S.CANCEL, S.OrderStatus.EXPIRED: S.EXPIRE}[S.OrderStatus(to_status)]
    now = clock.iso(clock.now())
    seats = _seats(order)
    if cancel_later and order.payment and order.payment.payment_intent_id:
        index = [OrderItem.GSI2PK.set(uncanceled_partition(order.order_id)), OrderItem.GSI2SK.set(f"{now}#{order.order_id}")]
    else:
        index = [OrderItem.GSI2PK.remove(), OrderItem.GSI2SK.remove()]
    actions = [
        OrderItem.status.set(transition.target), OrderItem.closed_reason.set(reason), OrderItem.updated_at.set(now),
        *index, *_payment_actions(payment or {}),
    ]
    checkpoint("release", order_id=order.order_id)

    def build(tx: Tx) -> None:
        for ticket_id in order.ticket_ids:
            tx.update("ticket", TicketItem(*TicketItem.key(ticket_id)), actions=[TicketItem.status.set(S.RELEASE.target)],
                      condition=S.RELEASE.condition())
        for line in order.lines:
            for take in line.takes:
                tx.update(
                    "shard", InventoryShard(*InventoryShard.key(line.type_id, int(take.shard))),
                    actions=[InventoryShard.remaining.add(int(take.qty)), InventoryShard.held.add(-int(take.qty))],
                    condition=InventoryShard.held >= int(take.qty),
                )
        tx.update("holder", HolderCount(*HolderCount.key(order.customer_sub, order.event_id)),
                  actions=[HolderCount.held.add(-seats), HolderCount.bought.add(-seats)])
        if order.voucher_code:  # its use back (a voucher is never deleted: retired ones too)
            tx.update("voucher", VoucherItem(*VoucherItem.key(order.voucher_code)), actions=[VoucherItem.uses.add(-1)])
        tx.update("order", OrderItem(*OrderItem.key(order.order_id)), actions=actions, condition=transition.condition())
        tx.log(order.order_id, transition, by=by, why=reason, from_status=S.OrderStatus.PENDING, ids=order.ticket_ids)

    try:
        transact(build, what="Closing the order")
    except Refused:
        return False
    order.status = transition.target
    return True


def intent_closed(order_id: str, payment_status: str) -> bool:
    """A released order's PaymentIntent was canceled at Stripe (or had got through, which its
    webhook settles as a late payment): off the `UNCANCELED` index, the status recorded. Not a
    transition; conditional on the order still released and waiting, so it never undoes a
    late payment's index entry. False if it was not waiting any more."""
    return update_one(
        OrderItem(*OrderItem.key(order_id)),
        [OrderItem.payment.status.set(payment_status), OrderItem.GSI2PK.remove(), OrderItem.GSI2SK.remove(),
         OrderItem.updated_at.set(clock.iso(clock.now()))],
        OrderItem.status.is_in(*S.LATE) & OrderItem.GSI2PK.startswith(UNCANCELED),
    )


def park(order_id: str, payment_status: str) -> None:
    """A pending order whose payment went through before its hold could be released:
    off the expiry index (the seats stay held), its payment status recorded. Not a
    transition: the order stays pending."""
    update_one(
        OrderItem(*OrderItem.key(order_id)),
        [OrderItem.payment.status.set(payment_status), OrderItem.GSI2PK.remove(), OrderItem.GSI2SK.remove(),
         OrderItem.updated_at.set(clock.iso(clock.now()))],
        OrderItem.status == S.OrderStatus.PENDING,
    )


def record_payment(order_id: str, **fields: Any) -> None:
    """Set payment fields on a pending order (no-op if it has left pending)."""
    actions = [*_payment_actions(fields), OrderItem.updated_at.set(clock.iso(clock.now()))]
    update_one(OrderItem(*OrderItem.key(order_id)), actions, OrderItem.status == S.OrderStatus.PENDING)


# ---------------------------------------------------------------- payment
def mark_paid(order: OrderItem, payloads: dict[str, str], payment: dict[str, Any], *, by: str = "stripe",
              why: str | None = None) -> bool:
    """pending -> paid in one transaction: the order, its tickets (pending -> valid, with
    their signed QR payloads) and its seats (held -> sold). Returns False, changing
    nothing, if the order had already left `pending` (a duplicate delivery, or canceled)."""
    now = clock.iso(clock.now())
    seats = _seats(order)
    checkpoint("pay", order_id=order.order_id)

    def build(tx: Tx) -> None:
        for ticket_id in order.ticket_ids:
            tx.update(
                "ticket", TicketItem(*TicketItem.key(ticket_id)),
                actions=[TicketItem.status.set(S.ISSUE.target), TicketItem.issued_at.set(now), TicketItem.qr_payload.set(payloads[ticket_id])],
                condition=S.ISSUE.condition(),
            )
        for line in order.lines:
            for take in line.takes:
                tx.update(
                    "shard", InventoryShard(*InventoryShard.key(line.type_id, int(take.shard))),
                    actions=[InventoryShard.held.add(-int(take.qty)), InventoryShard.sold.add(int(take.qty))],
                    condition=InventoryShard.held >= int(take.qty),
                )
        tx.update("holder", HolderCount(*HolderCount.key(order.customer_sub, order.event_id)), actions=[HolderCount.held.add(-seats)])
        tx.update(
            "order", OrderItem(*OrderItem.key(order.order_id)),
            actions=[OrderItem.status.set(S.PAY.target), OrderItem.paid_at.set(now), OrderItem.updated_at.set(now),
                     *charge_index(payment.get("charge_id")), *_payment_actions(payment)],
            condition=S.PAY.condition(),
        )
        tx.log(order.order_id, S.PAY, by=by, why=why or f"payment {payment.get('payment_intent_id')} succeeded",
               from_status=S.OrderStatus.PENDING, ids=order.ticket_ids)

    try:
        transact(build, what="Recording the payment")
    except Refused:
        return False
    order.status = S.OrderStatus.PAID
    return True


def pay_late(order: OrderItem, takes: dict[str, dict[int, int]], payloads: dict[str, str], payment: dict[str, Any]) -> None:
    """A payment for an expired or canceled order, whose seats went back on sale: take
    seats again (`takes`: type id -> shard -> seats, conditional on them being free),
    turn the voided tickets valid and mark the order paid, all or nothing.
    Raises ShardRace if the seats are gone, Conflict if the order is no longer late."""
    from ticketing.table import OrderLine, ShardTake

    now = clock.iso(clock.now())
    lines = [
        OrderLine(
            type_id=line.type_id, name=line.name, qty=int(line.qty), price_cents=int(line.price_cents),
            takes=[ShardTake(shard=shard, qty=qty) for shard, qty in sorted(takes[line.type_id].items())],
        )
        for line in order.lines
    ]

    def build(tx: Tx) -> None:
        for ticket_id in order.ticket_ids:
            tx.update(
                "ticket", TicketItem(*TicketItem.key(ticket_id)),
                actions=[TicketItem.status.set(S.REISSUE.target), TicketItem.issued_at.set(now), TicketItem.qr_payload.set(payloads[ticket_id])],
                condition=S.REISSUE.condition(),
            )
        for type_id, shards in takes.items():
            for shard, qty in shards.items():
                tx.update(
                    "shard", InventoryShard(*InventoryShard.key(type_id, shard)),
                    actions=[InventoryShard.remaining.add(-qty), InventoryShard.sold.add(qty)],
                    condition=InventoryShard.can_take(qty),
                )
        count_bought(tx, order, _seats(order))  # its release had taken them off
        tx.update(
            "order", OrderItem(*OrderItem.key(order.order_id)),
            actions=[
                OrderItem.status.set(S.PAY_LATE.target), OrderItem.paid_at.set(now), OrderItem.updated_at.set(now),
                OrderItem.lines.set(lines), OrderItem.closed_reason.set("paid_after_" + order.status),
                *charge_index(payment.get("charge_id")), *_payment_actions(payment),
            ],
            condition=S.PAY_LATE.condition(),
        )
        tx.log(order.order_id, S.PAY_LATE, by="stripe", why="payment arrived after the hold lapsed",
               from_status=order.status, ids=order.ticket_ids)

    try:
        transact(build, what="Recording the late payment")
    except Refused as refused:
        if "shard" in refused.failed:
            raise ShardRace() from refused
        raise Conflict(f"Order {order.order_id} changed while its late payment was being settled.", code="order_changed") from refused
    order.status, order.lines = S.OrderStatus.PAID, lines


def refunded_in_full(order: OrderItem, refund: Any, reason: str, payment: dict[str, Any]) -> bool:
    """A late payment Stripe has refunded in full: record the refund and close the order
    as `refunded`, conditional on it still being expired or canceled."""
    from ticketing.ids import new_id
    from ticketing.table import RefundItem

    now = clock.iso(clock.now())
    refund_id = new_id("rf")
    record = RefundItem(
        *RefundItem.key(order.order_id, refund_id), refund_id=refund_id, order_id=order.order_id,
        amount_cents=int(refund.amount), currency=order.currency, status=refund.status, stripe_refund_id=refund.id,
        ticket_ids=list(order.ticket_ids), reason=reason, created_at=now, created_by="system",
    )

    def build(tx: Tx) -> None:
        tx.save("refund", record, condition=S.REFUND_CREATE.condition())
        tx.update(
            "order", OrderItem(*OrderItem.key(order.order_id)),
            actions=[
                OrderItem.status.set(S.REFUND_LATE.target), OrderItem.refunded_cents.set(int(refund.amount)),
                OrderItem.updated_at.set(now), OrderItem.closed_reason.set(reason),
                *charge_index(payment.get("charge_id")), *_payment_actions(payment),
            ],
            condition=S.REFUND_LATE.condition(),
        )
        tx.log(order.order_id, S.REFUND_LATE, by="system", why=reason, from_status=order.status, ids=[refund_id])

    try:
        transact(build, what="Recording the refund")
    except Refused:
        return False
    return True


# ---------------------------------------------------------------- disputes
def dispute_open(order: OrderItem, tickets: list[TicketItem], dispute_id: str, dispute_status: str) -> bool:
    """paid / partially refunded -> disputed: the tickets still standing are voided (the
    gate refuses them, scanners get them on the voided list). False if not refundable."""
    now = clock.iso(clock.now())
    standing = [t for t in tickets if t.status in S.ISSUED]

    def build(tx: Tx) -> None:
        for ticket in standing:
            tx.update(
                "ticket", TicketItem(*TicketItem.key(ticket.ticket_id)),
                actions=[*void_actions(ticket, now), TicketItem.voided_by_dispute.set(dispute_id)],
                condition=S.DISPUTE_VOID.condition(),
            )
        tx.update(
            "order", OrderItem(*OrderItem.key(order.order_id)),
            actions=[OrderItem.status_before_dispute.set(order.status), OrderItem.status.set(S.DISPUTE_OPEN.target),
                     OrderItem.dispute_status.set(dispute_status), OrderItem.updated_at.set(now)],
            condition=S.DISPUTE_OPEN.condition(),
        )
        tx.log(order.order_id, S.DISPUTE_OPEN, by="stripe", why=f"dispute {dispute_id} {dispute_status}",
               from_status=order.status, ids=[t.ticket_id for t in standing])

    try:
        transact(build, what="Recording the dispute")
    except Refused:
        return False
    return True


def dispute_status(order_id: str, status: str) -> None:
    """A disputed order's dispute moved on at Stripe without restoring it (lost, or still
    open): recorded, nothing else changes (its tickets stay void)."""
    update_one(OrderItem(*OrderItem.key(order_id)),
               [OrderItem.dispute_status.set(status), OrderItem.updated_at.set(clock.iso(clock.now()))],
               S.DISPUTE_LOST.condition())


def dispute_won(order: OrderItem, tickets: list[TicketItem], dispute_id: str, dispute_status: str) -> bool:
    """disputed -> what it was before: the tickets this dispute voided come back (used if
    they had been admitted), staying on the event's void list with a new time so scanners
    learn they are back. False if the order is not disputed."""
    now = clock.iso(clock.now())
    before = S.OrderStatus(order.status_before_dispute or S.OrderStatus.PAID)
    transition = S.DISPUTE_WON_PART if before == S.OrderStatus.PARTIALLY_REFUNDED else S.DISPUTE_WON
    restored = [t for t in tickets if t.voided_by_dispute == dispute_id and t.status == S.TicketStatus.VOID]

    def build(tx: Tx) -> None:
        for ticket in restored:
            tx.update(
                "ticket", TicketItem(*TicketItem.key(ticket.ticket_id)),
                actions=[
                    TicketItem.status.set(S.TicketStatus.USED if ticket.used_at else S.DISPUTE_RESTORE.target),
                    TicketItem.voided_at.remove(), TicketItem.voided_by_dispute.remove(),
                    TicketItem.GSI2SK.set(f"{now}#{ticket.ticket_id}"),
                ],
                condition=S.DISPUTE_RESTORE.condition(dispute_id=dispute_id),
            )
        tx.update(
            "order", OrderItem(*OrderItem.key(order.order_id)),
            actions=[OrderItem.status.set(transition.target), OrderItem.dispute_status.set(dispute_status),
                     OrderItem.updated_at.set(now)],
            condition=transition.condition(),
        )
        tx.log(order.order_id, transition, by="stripe", why=f"dispute {dispute_id} {dispute_status}",
               from_status=S.OrderStatus.DISPUTED, ids=[t.ticket_id for t in restored])

    try:
        transact(build, what="Recording the dispute")
    except Refused:
        return False
    return True
