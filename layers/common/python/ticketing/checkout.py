"""Checkout: validate the basket against the catalogue, hold the seats, create the
PaymentIntent. Also abandoning an order and expiring lapsed holds.

Money comes from the stored prices, never from the client. Seats are held before any
money is asked for, and released if the PaymentIntent cannot be created.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, Field, StrictBool, StrictInt, StringConstraints

from ticketing import cards, catalogue, clock, fees as fee_rules, inventory, orders, payments, stripe_budget, vouchers, waiting_room, waitlist
from ticketing.auth import Caller
from ticketing.config import settings
from ticketing.errors import Conflict, DependencyUnavailable, InvalidInput, NotFound, PaymentProviderError, Unprocessable
from ticketing.ids import new_id
from ticketing.lifecycle import REFUNDABLE, OrderStatus, TicketStatus
from ticketing.lifecycle import orders as lifecycle
from ticketing.lifecycle.writes import condition_failed
from ticketing.observability import logger
from ticketing.table import (
    EventItem,
    ExpiryClaimItem,
    OrderItem,
    OrderLine,
    Payment,
    ShardTake,
    TicketItem,
    TicketTypeItem,
    customer_partition,
    event_orders_index,
    event_tickets_index,
    hold_partition,
)

MAX_LINES = 10
MAX_TICKETS = 40  # keeps the hold inside one DynamoDB transaction (100 items)
HOLD_ATTEMPTS = 4
RECLAIM_BATCH = 25

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | StrictInt


class CheckoutLine(BaseModel):
    ticket_type_id: Id
    qty: StrictInt = Field(ge=1, le=catalogue.MAX_PER_ORDER)


class CheckoutIn(BaseModel):
    event_id: Id
    fixture_id: Id | None = None
    items: list[CheckoutLine] = Field(min_length=1, max_length=MAX_LINES)
    payment_method_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None
    save_card: StrictBool = False
    voucher_code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None
    offer_code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None


class CheckoutOut(BaseModel):
    order_id: str
    client_secret: str | None  # null for a free order: nothing to pay
    payment_intent_id: str | None
    subtotal_cents: int = 0
    fees_cents: int = 0  # the fees the buyer pays (0 when the organiser absorbs them)
    total_cents: int  # subtotal_cents + fees_cents: what is charged
    currency: str
    status: str  # the payment's status (`succeeded` for a free order)
    order_status: str = OrderStatus.PENDING
    expires_at: str
    tickets: list[orders.CheckoutTicketOut]
    discount_cents: int = 0  # what the voucher took off, before fees (ticketing.vouchers)


def _serial() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "TKT-" + "".join(secrets.choice(alphabet) for _ in range(8))


def _on_sale(event: EventItem) -> None:
    if event.status != "on_sale":
        raise Conflict(f"Event {event.event_id} is {event.status}; its tickets are not on sale.", code="event_not_on_sale")


def _lines(data: CheckoutIn) -> tuple[EventItem, list[tuple[TicketTypeItem, int]]]:
    """The event and (ticket type, quantity) pairs, or InvalidInput naming the field."""
    event_id = str(data.event_id)
    try:
        event, types = catalogue.load_event(event_id)
    except NotFound:
        raise InvalidInput("event_id", f"There is no event {event_id}.") from None
    _on_sale(event)
    fixture_id = str(data.fixture_id) if data.fixture_id is not None else None
    if fixture_id is not None and all(f.fixture_id != fixture_id for f in event.fixtures):
        raise InvalidInput("fixture_id", f"Event {event_id} has no fixture {fixture_id}.")
    by_id = {t.type_id: t for t in types}
    now = clock.iso(clock.now())
    chosen: list[tuple[TicketTypeItem, int]] = []
    seen: set[str] = set()
    for index, line in enumerate(data.items):
        field = f"items.{index}"
        type_id = str(line.ticket_type_id)
        ticket_type = by_id.get(type_id)
        if ticket_type is None:
            raise InvalidInput(f"{field}.ticket_type_id", f"Event {event_id} has no ticket type {type_id}.")
        if type_id in seen:
            raise InvalidInput(f"{field}.ticket_type_id", f"Ticket type {type_id} is listed twice; give one quantity.")
        seen.add(type_id)
        if fixture_id is not None and ticket_type.fixture_id not in (None, fixture_id):
            raise InvalidInput(f"{field}.ticket_type_id", f"{ticket_type.name} is not for fixture {fixture_id}.")
        if not ticket_type.sales_start <= now < ticket_type.sales_end:
            when = "opens " + ticket_type.sales_start if now < ticket_type.sales_start else "closed " + ticket_type.sales_end
            raise InvalidInput(f"{field}.ticket_type_id", f"{ticket_type.name} is not on sale: sales {when}.")
        if line.qty > int(ticket_type.max_per_order):
            raise InvalidInput(f"{field}.qty", f"At most {int(ticket_type.max_per_order)} {ticket_type.name} tickets per order.")
        chosen.append((ticket_type, line.qty))
    if sum(qty for _, qty in chosen) > MAX_TICKETS:
        raise InvalidInput("items", f"At most {MAX_TICKETS} tickets per order.")
    return event, chosen


def _build_hold(event: EventItem, fixture_id: str | None, chosen, plans: dict[str, dict[int, int]], who: Caller,
                voucher: vouchers.Applied | None = None) -> lifecycle.Hold:
    now = clock.now()
    fixtures = {f.fixture_id: f for f in event.fixtures or []}
    order_id = new_id("or")
    created, expires = clock.iso(now), clock.iso(now + timedelta(minutes=settings().hold_minutes))
    # Each ticket's share of the voucher's discount comes off its price before fees: fees
    # are computed on `price_cents - off[seat]` per ticket (ticketing.fees), and the order's
    # total is (prices - discount) + the buyer's fees.
    offs = [voucher.shares[index] if voucher else [0] * qty for index, (_, qty) in enumerate(chosen)]
    fees = catalogue.event_fees(event)
    priced = fee_rules.price_order(
        [int(t.price_cents) - off[seat] for (t, qty), off in zip(chosen, offs, strict=True) for seat in range(qty)], fees)
    each = iter(priced.tickets)
    tickets: list[TicketItem] = []
    lines: list[OrderLine] = []
    for index, (ticket_type, qty) in enumerate(chosen):
        off = offs[index]
        lines.append(
            OrderLine(
                type_id=ticket_type.type_id, name=ticket_type.name, qty=qty, price_cents=int(ticket_type.price_cents),
                takes=[ShardTake(shard=shard, qty=take) for shard, take in sorted(plans[ticket_type.type_id].items())],
            )
        )
        fixture = fixtures.get(ticket_type.fixture_id or fixture_id or "")
        for seat in range(qty):
            ticket_id = new_id("tk")
            tickets.append(
                TicketItem(
                    *TicketItem.key(ticket_id),
                    GSI1PK=customer_partition(who.sub), GSI1SK=f"TICKET#{created}#{ticket_id}",
                    **event_tickets_index(event.event_id, ticket_id, created),
                    ticket_id=ticket_id, serial=_serial(), order_id=order_id, event_id=event.event_id,
                    fixture_id=ticket_type.fixture_id or fixture_id, type_id=ticket_type.type_id,
                    type_name=ticket_type.name, price_cents=int(ticket_type.price_cents) - off[seat],
                    fee_cents=next(each).fee_cents, currency=event.currency,
                    status=TicketStatus.PENDING, customer_sub=who.sub, created_at=created,
                    event_name=event.name, event_ends_at=fixture.ends_at if fixture else event.ends_at,
                    fixture_starts_at=fixture.starts_at if fixture else None,
                    fixture_ends_at=fixture.ends_at if fixture else None,
                    holder_email=who.email, holder_name=who.name,
                )
            )
    order = OrderItem(
        *OrderItem.key(order_id),
        GSI1PK=customer_partition(who.sub), GSI1SK=f"ORDER#{created}#{order_id}",
        GSI2PK=hold_partition(order_id), GSI2SK=f"{expires}#{order_id}",
        **event_orders_index(event.event_id, order_id, created),
        order_id=order_id, event_id=event.event_id, fixture_id=fixture_id, customer_sub=who.sub,
        customer_email=who.email, customer_name=who.name, status=OrderStatus.PENDING,
        total_cents=priced.total_cents, subtotal_cents=priced.subtotal_cents, fees_cents=priced.buyer_fees_cents,
        all_fees_cents=priced.fees_cents, fees_returned_cents=0, fees=catalogue.fees_map(fees),
        currency=event.currency, voucher_code=voucher.code if voucher else None,
        discount_cents=voucher.discount_cents if voucher else None,
        lines=lines, ticket_ids=[t.ticket_id for t in tickets], payment=Payment(),
        refunded_cents=0, created_at=created, expires_at=expires, updated_at=created,
    )
    return lifecycle.Hold(order, tickets)


def _hold(event, fixture_id, chosen, who: Caller, voucher: vouchers.Applied | None = None, offer=None,
          admission=None) -> lifecycle.Hold:
    """Plan and place the hold, re-reading the shards when another buyer got there first,
    and reclaiming lapsed holds once before answering sold out. Seats kept for a waiting
    list are not planned; a waiting-list `offer` (claim, shard -> seats) brings its own."""
    reclaimed = False
    waiting = waitlist.waiting_for(event, [t.type_id for t, _ in chosen])
    for _attempt in range(HOLD_ATTEMPTS):
        remaining = inventory.read_for_hold({t.type_id: (int(t.shards), qty) for t, qty in chosen}, final=reclaimed)
        remaining = waitlist.keep_for_waiting(remaining, waiting)
        try:
            plans = {offer[0].type_id: offer[1]} if offer else {}
            for ticket_type, qty in chosen:
                if ticket_type.type_id in plans:
                    continue
                try:
                    plans[ticket_type.type_id] = inventory.plan(remaining[ticket_type.type_id], qty)
                except inventory.SoldOut as sold_out:
                    if not reclaimed:
                        raise
                    # No seats: sold, or the event canceled since we read it (its sales closed)
                    _on_sale(EventItem.get(*EventItem.key(event.event_id), consistent_read=True))
                    raise Conflict(
                        f"Only {sold_out.remaining} tickets remaining for {ticket_type.name}",
                        error="Not enough tickets available", code="sold_out",
                        ticket_type_id=ticket_type.type_id, remaining=sold_out.remaining,
                    ) from None
            hold = _build_hold(event, fixture_id, chosen, plans, who, voucher)
            if offer:
                hold = lifecycle.Hold(hold.order, hold.tickets, offer[0])
            lifecycle.place_hold(hold, settings().max_held_per_customer,
                                 int(event.max_per_customer) if event.max_per_customer is not None else None, admission)
            return hold
        except inventory.SoldOut:
            reclaimed = True
            if not expire_lapsed(event_id=event.event_id, limit=RECLAIM_BATCH):
                continue  # nothing to reclaim: the next pass answers sold out
        except lifecycle.ShardRace:
            continue
        except lifecycle.VoucherSpent:
            raise vouchers.used_up() from None
        except waitlist.lifecycle.OfferRefused:
            raise waitlist.offer_refused() from None
    raise DependencyUnavailable("Too many buyers at once for these tickets; try again.", retry_after=1, code="contention")


def checkout(data: CheckoutIn, who: Caller, admission_token: str | None = None) -> CheckoutOut:
    if not who.email_verified:  # the receipt goes to this address: only to one its owner proved
        raise Unprocessable("Verify your email address before buying: the tickets are sent to it.", code="email_unverified")
    # A waiting room's admission (signature only, no read): 403 before the budget is spent
    admission = waiting_room.admission_for(str(data.event_id), who, admission_token)
    # Over Stripe's rate: 503 before any read or hold, so a rush past the budget costs two
    # reads of the budget a request (README, "On-sale runbook").
    spent = stripe_budget.take("payment_intents.create")
    event, chosen = _lines(data)
    voucher = vouchers.apply(event, chosen, data.voucher_code, who)  # hidden types, the discount (before fees)
    offer = waitlist.for_checkout(event, chosen, data.offer_code, who)  # a waiting-list offer's held seats
    fixture_id = str(data.fixture_id) if data.fixture_id is not None else None
    customer_id = _saved_card_customer(data, who)  # before any seat is held
    hold = _hold(event, fixture_id, chosen, who, voucher, offer, admission)  # spends the admission with the hold
    order = hold.order
    if int(order.total_cents) == 0:
        return _free(hold)
    try:
        stripe_budget.still(spent, "payment_intents.create")  # the hold took us into the next second
        intent = payments.create_intent(
            order_id=order.order_id,
            amount=int(order.total_cents),
            currency=order.currency,
            metadata={"order_id": order.order_id, "event_id": order.event_id, "customer_id": who.sub},
            customer_id=customer_id, payment_method_id=data.payment_method_id, save_card=data.save_card,
            return_url=f"{settings().frontend_url}/orders/{order.order_id}" if data.payment_method_id else None,
        )
    except (PaymentProviderError, DependencyUnavailable, Unprocessable) as exc:
        lifecycle.release(order, "canceled", "payment_setup_failed")
        waiting_room.give_back(admission, order.order_id)  # not answered 201: the admission stays usable
        if exc.fields.get("code") == "stripe_rate_limited":  # Stripe's own 429: stop calling it this second
            stripe_budget.exhaust("payment_intents.create")
        raise
    lifecycle.record_payment(
        order.order_id, payment_intent_id=intent.id, client_secret=intent.client_secret, status=intent.status,
        error_message=intent.error_message,  # a saved card declined: the order stays pending until its hold lapses
    )
    return _answer(hold, intent.client_secret, intent.id, intent.status, OrderStatus.PENDING)


def _answer(hold: lifecycle.Hold, client_secret: str | None, intent_id: str | None, status: str, order_status: str) -> CheckoutOut:
    order = hold.order
    return CheckoutOut(
        order_id=order.order_id,
        client_secret=client_secret,
        payment_intent_id=intent_id,
        subtotal_cents=int(order.subtotal_cents),
        fees_cents=int(order.fees_cents),
        total_cents=int(order.total_cents),
        currency=order.currency,
        status=status,
        order_status=order_status,
        expires_at=order.expires_at,
        tickets=[orders.CheckoutTicketOut.of(t, order) for t in hold.tickets],
        discount_cents=int(order.discount_cents or 0),
    )


def _free(hold: lifecycle.Hold) -> CheckoutOut:
    """An order with nothing to pay: paid at once through the same transition as a paid
    one (tickets valid with their signed codes, seats sold), no PaymentIntent; its receipt
    goes out through the receipt queue (the receipts function sends it). If it cannot be
    marked paid it is released, so nothing stays held for it."""
    from ticketing import qr, receipts

    order = hold.order
    try:
        payloads = {ticket_id: qr.sign(ticket_id, order.event_id) for ticket_id in order.ticket_ids}
        paid = lifecycle.mark_paid(order, payloads, {"status": "succeeded", "payment_method": "free"}, by=order.customer_sub,
                                   why="free order: nothing to pay")
    except Exception:
        lifecycle.release(order, "canceled", "free_order_failed")
        raise
    if not paid:  # the order left pending meanwhile (an event cancellation closed it)
        fresh = orders.get(order.order_id) or order
        raise Conflict(f"Order {order.order_id} is {fresh.status}; it could not be completed.", code=f"order_{fresh.status}")
    try:
        receipts.queue_receipt(order.order_id)
    except DependencyUnavailable:  # paid all the same: the order shows its receipt pending, and it can be resent
        logger.error("free order's receipt not queued", extra={"order_id": order.order_id})
    for ticket in hold.tickets:
        ticket.status = TicketStatus.VALID
    return _answer(hold, None, None, "succeeded", OrderStatus.PAID)


def _saved_card_customer(data: CheckoutIn, who: Caller) -> str | None:
    """The caller's Stripe Customer when paying with a saved card (which must be theirs:
    anything else is 422 naming payment_method_id) or saving the card; else None."""
    if not data.payment_method_id and not data.save_card:
        return None
    if data.payment_method_id:
        try:
            customer_id, _card = cards.own_card(who, data.payment_method_id)
        except NotFound:
            raise InvalidInput("payment_method_id", "This is not one of your saved cards; list them at "
                               "/api/me/payment-methods/.") from None
        return customer_id
    return cards.ensure_customer(who)


def get_order(order_id: str, who: Caller) -> orders.OrderOut:
    order = orders.get_for(order_id, who)
    return orders.as_out(order, orders.tickets_of(order))


def cancel(order_id: str, who: Caller) -> orders.OrderOut:
    """Abandon a pending order at once: cancel its PaymentIntent, release its seats. A free
    order (paid at checkout, nothing to give back) is canceled by refunding its tickets:
    void, seats back, no Stripe call."""
    order = orders.get_for(order_id, who)
    if int(order.total_cents) == 0 and order.status in REFUNDABLE:
        from ticketing import refunds

        refunds.refund(order_id, refunds.RefundIn(), who)
        fresh = orders.get(order_id) or order
        return orders.as_out(fresh, orders.tickets_of(fresh))
    orders.ensure_pending(order)
    if not close(order, "canceled", "canceled_by_customer", by=who.sub):
        fresh = orders.get(order_id) or order
        if fresh.status == OrderStatus.PENDING:
            raise Conflict(f"The payment for order {order_id} has already gone through; it cannot be canceled.", code="order_paid")
        orders.ensure_pending(fresh)
    fresh = orders.get(order_id) or order
    return orders.as_out(fresh, orders.tickets_of(fresh))


def close(order: OrderItem, to_status: str, reason: str, *, by: str = "system", pool: str = stripe_budget.FOREGROUND) -> bool:
    """Cancel the PaymentIntent first (so no money can arrive for released seats), then
    release. Returns False if the payment had already gone through or the order had
    already left pending. The cancel spends one request of `pool` of the Stripe budget
    (over it: DependencyUnavailable, nothing changed)."""
    intent_id = order.payment.payment_intent_id if order.payment else None
    status = None
    if intent_id:
        spent = stripe_budget.take("payment_intents.cancel", pool)
        stripe_budget.still(spent, "payment_intents.cancel", pool)
        intent = payments.cancel_intent(intent_id)
        status = intent.status
        if intent.status != "canceled":
            # Succeeded or processing: the money came (or is coming). Keep the seats, take the
            # order off the expiry index so no run tries again, and let the webhook (or
            # reconciliation, if the webhook is lost) settle it.
            lifecycle.park(order.order_id, intent.status)
            return False
    return lifecycle.release(order, to_status, reason, payment={"status": status} if status else None, by=by)


CLAIM_SECONDS = 30  # how long one expirer owns a lapsed order before another may try it
MIN_SECONDS_LEFT = 5  # a scheduled run stops taking orders with less time than this left
GRACE_SECONDS = 20  # a hold is released this long after it lapsed: a payment made just before has its webhook in by then
PAGE = 100  # lapsed (or uncanceled) orders read at once from one partition


def _claim(order_id: str, stage: str = "CLAIM") -> bool:
    """Own a lapsed order's release (`CLAIM`) or its PaymentIntent's cancel (`CANCEL`) for
    CLAIM_SECONDS (a conditional put on an item of its own, so the order and its indexes are
    not written): concurrent sold-out answers and overlapping runs each take a different
    order, never the same one."""
    from pynamodb.exceptions import PutError

    now = clock.now()
    claim = ExpiryClaimItem(
        *ExpiryClaimItem.key(order_id, stage), until=clock.iso(now + timedelta(seconds=CLAIM_SECONDS)),
        ttl=int(now.timestamp()) + 3600,
    )
    try:
        claim.save(condition=ExpiryClaimItem.PK.does_not_exist() | (ExpiryClaimItem.until < clock.iso(now)))
        return True
    except PutError as exc:
        if not condition_failed(exc):
            raise
        return False


def _claim_expiry(order_id: str) -> bool:
    return _claim(order_id, "CLAIM")


def _give_back(order_id: str, stage: str = "CLAIM") -> None:
    """Let the next run take the order at once (an update: the job needs no DeleteItem)."""
    ExpiryClaimItem(*ExpiryClaimItem.key(order_id, stage)).update(actions=[ExpiryClaimItem.until.set("")])


def _spend_cancel(time_left: Callable[[], float] | None) -> int:
    """One PaymentIntent cancel from the background budget (returns the second spent). A
    scheduled run (`time_left` given) waits for the next second while it has time."""
    while True:
        try:
            return stripe_budget.take("payment_intents.cancel", stripe_budget.BACKGROUND)
        except DependencyUnavailable:
            if time_left is None or time_left() < MIN_SECONDS_LEFT + 1:
                raise
            now = clock.now()
            time.sleep(1 - now.microsecond / 1_000_000 + random.uniform(0, 0.05))


def _fan_out(work: Callable[[int], int], workers: int) -> int:
    """`work(partition)` for every hold partition, `workers` at a time; the sum of what each did."""
    from ticketing.table import HOLD_PARTITIONS

    if workers <= 1:
        return sum(work(partition) for partition in range(HOLD_PARTITIONS))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(work, range(HOLD_PARTITIONS)))


def expire_lapsed(event_id: str | None = None, limit: int = 100, time_left: Callable[[], float] | None = None,
                  workers: int = 1) -> int:
    """Release the seats of pending orders whose hold lapsed GRACE_SECONDS ago, oldest first,
    without calling Stripe: each order claimed once (`_claim`), its release a transaction
    conditional on the order still being pending, its PaymentIntent left for
    `cancel_released` (release-first: README, "Checkout and holds"). Returns how many were
    released. Safe to run concurrently.

    With `event_id` (a sold-out checkout's inline reclaim): up to `limit` of that event's.
    Without (the scheduled job): fans out over the hold partitions, `workers` at once, each
    draining its partition page by page until `limit` in all or `time_left()` (seconds, the
    Lambda context's) falls under MIN_SECONDS_LEFT."""
    stop = threading.Event()
    budget = {"left": limit}
    lock = threading.Lock()

    def one(order: OrderItem) -> bool:
        if stop.is_set() or (time_left is not None and time_left() < MIN_SECONDS_LEFT):
            stop.set()
            return False
        if not _claim(order.order_id):
            return None  # another run or checkout is on it
        try:
            return lifecycle.release(order, "expired", "hold_lapsed", cancel_later=True)
        except DependencyUnavailable:
            _give_back(order.order_id)  # it kept conflicting: the rest go on
            return False

    if event_id is not None:
        return sum(bool(one(order)) for order in orders.lapsed(limit, event_id, GRACE_SECONDS))
    return _fan_out(lambda partition: _drain(
        lambda take: orders.lapsed_in(partition, take, grace_seconds=GRACE_SECONDS), one, stop, budget, lock,
    ), workers)


def _drain(read: Callable[[int], list[OrderItem]], one: Callable[[OrderItem], bool | None], stop: threading.Event,
           budget: dict[str, int], lock: threading.Lock) -> int:
    """One partition, page by page: `one(order)` on each (None: another worker has it),
    until the partition is drained, a page gives nothing to take, `stop` is set, or the
    run's `budget` of orders (shared by the workers) is used up. Returns how many `one` did."""
    done = 0
    while not stop.is_set():
        with lock:
            take = min(PAGE, budget["left"])
            budget["left"] -= take
        if take <= 0:
            break
        page = read(take)
        results = [one(order) for order in page]
        done += sum(bool(r) for r in results)
        with lock:
            budget["left"] += take - len(page)
        if len(page) < take or all(r is None for r in results):
            break  # drained, or what is left is another run's for now
    return done


def cancel_released(limit: int = 1000, time_left: Callable[[], float] | None = None, workers: int = 1) -> int:
    """Cancel the PaymentIntents of orders released before their cancel (`expire_lapsed`),
    oldest release first, each claimed once and paced by the Stripe budget's background share.
    A PaymentIntent that got through meanwhile is not canceled: its webhook settles it as a
    late payment (seats again if free, else refunded). Returns how many were canceled."""
    stop = threading.Event()
    budget = {"left": limit}
    lock = threading.Lock()

    def one(order: OrderItem) -> bool:
        if stop.is_set() or (time_left is not None and time_left() < MIN_SECONDS_LEFT):
            stop.set()
            return False
        if not _claim(order.order_id, "CANCEL"):
            return None
        try:
            spent = _spend_cancel(time_left)
            stripe_budget.still(spent, "payment_intents.cancel", stripe_budget.BACKGROUND)
            intent = payments.cancel_intent(order.payment.payment_intent_id)
        except DependencyUnavailable:
            _give_back(order.order_id, "CANCEL")
            stop.set()  # the budget is spent (or Stripe throttles): the next run goes on
            return False
        except PaymentProviderError:
            return False  # Stripe is down: the claim lapses and the next run tries again
        lifecycle.intent_closed(order.order_id, intent.status)
        return intent.status == "canceled"

    return _fan_out(lambda partition: _drain(lambda take: orders.uncanceled_in(partition, take), one, stop, budget, lock),
                    workers)
