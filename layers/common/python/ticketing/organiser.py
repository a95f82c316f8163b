"""Organiser operations: an event's orders, attendees and figures, and canceling an event.

**Finding an event's orders and tickets.** Checkout writes every order and ticket into
GSI3 under one of ten partition keys per event (`table.event_orders_index`,
`table.event_tickets_index`), so a rush on one event spreads its index writes over ten
partitions. A reader queries the ten partitions newest first and merges them
(`_gather`); the opaque cursor carries each partition's position (the last sort key
handed out, or that it is exhausted), so a page never repeats or skips an item.

**Figures.** Seats per type come from the inventory shards (what checkout guards);
checked in is a count of the event's `used` tickets; money is summed at read time from
the very order records the orders listing shows (each order's total and refunded amount
come from one item), so gross - refunded == net always and match the orders.

**Canceling an event** (`start_cancel`, then `run_cancel_batch` from the queue): the
event becomes `canceled` (checkout refuses it) and a job item is written in the same
transaction (its key allows one per event). Each queue message processes the next
`batch_size` orders from the job's stored cursor: a paid order is refunded in full with
`refunds.refund` (which voids its tickets and emails the customer), a pending one is
canceled like an abandoned order (`checkout.close`: PaymentIntent canceled, seats back,
tickets void). Each order's outcome is a marker written once, with the job's counters,
in one transaction; an order already marked is skipped. A Stripe failure records an
attempt, saves the cursor and fails the message, so SQS delivers it again and the job
resumes at that order; after `MAX_ATTEMPTS` the order is marked failed with why. Only the
worker that moves the cursor (a conditional write) sends the next message, so a
duplicate delivery does not fork the job. A second pass from the top catches orders a
checkout placed while the event was being canceled.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field
from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from ticketing import catalogue, checkout, clock, inventory, orders, refunds
from ticketing.auth import ADMIN, Caller
from ticketing.config import settings
from ticketing.errors import Conflict, DependencyUnavailable, DomainError, NotFound, PaymentProviderError
from ticketing.ids import new_id
from ticketing.lifecycle import EVER_PAID, ISSUED, REFUNDABLE, OrderStatus
from ticketing.lifecycle import tickets as ticket_lifecycle
from ticketing.lifecycle.writes import condition_failed
from ticketing.observability import logger, metrics
from ticketing.pages import decode_cursor, encode_cursor
from ticketing.table import (
    CancelJobItem,
    CancelMarkerItem,
    EventItem,
    OrderItem,
    TicketItem,
    connection,
    event_index_partitions,
)

OrderStatus = Literal["pending", "paid", "canceled", "expired", "partially_refunded", "refunded", "disputed"]
TicketStatus = Literal["pending", "valid", "used", "void", "all"]
ATTENDING = ISSUED  # what the attendee list shows unless asked for a status
CSV_PAGE = 1000
MAX_ATTEMPTS = 5  # per order, before it is marked failed
MAX_BATCH = 100
DEFAULT_BATCH = 25
SAFETY_MS = 20_000  # stop a batch early with this much of the invocation left
CHECKOUT_SETTLE_SECONDS = 15  # longer than a checkout runs: the second pass starts after


# ------------------------------------------------------------ scatter-gather
def _positions(cursor: str | None) -> dict[str, Any]:
    state = decode_cursor(cursor) or {}
    return {"p": dict(state.get("p") or {}), "x": list(state.get("x") or [])}


def _gather(model: type, partitions: list[str], limit: int, cursor: str | None, condition: Any = None) -> tuple[list[Any], Callable[[int], str | None]]:
    """Up to `limit` items from `partitions` of GSI3, newest first across all of them,
    after `cursor`. Returns the items and `cursor_after(n)`: the cursor that resumes after
    the first n of them (n = all of them for the next page)."""
    state = _positions(cursor)
    fetched: dict[int, list[Any]] = {}
    more: dict[int, bool] = {}
    for k, partition in enumerate(partitions):
        if k in state["x"]:
            continue
        after = state["p"].get(str(k))
        results = model.gsi3.query(
            partition, model.GSI3SK < after if after else None, filter_condition=condition,
            scan_index_forward=False, limit=limit, page_size=max(limit, 100),
        )
        fetched[k] = list(results)
        more[k] = results.last_evaluated_key is not None
    merged = sorted(((item.GSI3SK, k, item) for k, items in fetched.items() for item in items), key=lambda t: t[0], reverse=True)[:limit]

    def cursor_after(n: int) -> str | None:
        positions, exhausted = dict(state["p"]), list(state["x"])
        taken: dict[int, int] = {}
        for sort_key, k, _item in merged[:n]:
            positions[str(k)] = sort_key
            taken[k] = taken.get(k, 0) + 1
        for k, items in fetched.items():
            if not more[k] and taken.get(k, 0) == len(items):
                exhausted.append(k)
                positions.pop(str(k), None)
        if len(exhausted) == len(partitions):
            return None
        return encode_cursor({"p": positions, "x": sorted(exhausted)})

    return [item for _, _, item in merged], cursor_after


def _every(model: type, partitions: list[str], condition: Any = None, attributes: list[str] | None = None) -> Iterator[Any]:
    """Every item in `partitions` of GSI3 (for figures and the CSV export)."""
    for partition in partitions:
        yield from model.gsi3.query(partition, filter_condition=condition, attributes_to_get=attributes)


def _event(event_id: str) -> EventItem:
    try:
        return EventItem.get(*EventItem.key(event_id), consistent_read=True)
    except EventItem.DoesNotExist:
        raise NotFound(f"There is no event {event_id}.") from None


def _page_size(limit: int) -> int:
    return max(1, min(limit, settings().page_size_max))


# -------------------------------------------------------------------- orders
class OrderLineOut(BaseModel):
    ticket_type_id: str
    name: str
    qty: int
    price_cents: int


class OrderSummaryOut(BaseModel):
    order_id: str
    status: str
    total_cents: int
    refunded_cents: int
    currency: str
    customer_sub: str
    customer_email: str | None
    customer_name: str | None
    created_at: str
    paid_at: str | None
    payment_intent_id: str | None
    lines: list[OrderLineOut]


class OrderPage(BaseModel):
    orders: list[OrderSummaryOut]
    count: int
    next_cursor: str | None = None


def list_orders(event_id: str, status: str | None, limit: int, cursor: str | None) -> OrderPage:
    """The event's orders, newest first, optionally of one status."""
    _event(event_id)
    condition = OrderItem.status == status if status else None
    found, cursor_after = _gather(OrderItem, event_index_partitions(event_id, "ORDERS"), _page_size(limit), cursor, condition)
    summaries = [
        OrderSummaryOut(
            order_id=o.order_id, status=o.status, total_cents=int(o.total_cents), refunded_cents=int(o.refunded_cents or 0),
            currency=o.currency, customer_sub=o.customer_sub, customer_email=o.customer_email, customer_name=o.customer_name,
            created_at=o.created_at, paid_at=o.paid_at, payment_intent_id=o.payment.payment_intent_id if o.payment else None,
            lines=[OrderLineOut(ticket_type_id=l.type_id, name=l.name, qty=int(l.qty), price_cents=int(l.price_cents)) for l in o.lines],
        )
        for o in found
    ]
    return OrderPage(orders=summaries, count=len(summaries), next_cursor=cursor_after(len(found)))


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


def attendees_csv(event_id: str, status: str | None) -> str:
    """Every attendee as RFC 4180 CSV (CRLF, quotes doubled, a header row)."""
    _event(event_id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    cursor: str | None = None
    while True:
        found, cursor_after = _gather(TicketItem, event_index_partitions(event_id, "TICKETS"), CSV_PAGE, cursor, _ticket_condition(status))
        for t in found:
            a = _attendee(t)
            writer.writerow([csv_cell(v) for v in (
                a.ticket_id, a.serial, a.ticket_type_name, a.status, a.holder_name, a.holder_email, a.order_id, a.checked_in_at, a.gate,
            )])
        cursor = cursor_after(len(found))
        if cursor is None or not found:
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
    currency: str
    gross_cents: int  # every order ever paid (disputed and refunded ones included)
    refunded_cents: int  # refunds reserved or made on those orders
    net_cents: int


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
    gross = refunded = 0
    by_status: dict[str, int] = {}
    for order in _every(OrderItem, event_index_partitions(event_id, "ORDERS"), None, ["status", "total_cents", "refunded_cents"]):
        by_status[order.status] = by_status.get(order.status, 0) + 1
        if order.status in EVER_PAID:
            gross += int(order.total_cents)
            refunded += int(order.refunded_cents or 0)
    per_type = []
    for t in types:
        s = seats.get(t.type_id) or inventory.Availability(int(t.capacity), 0, 0, 0)
        per_type.append(TypeStatsOut(
            ticket_type_id=t.type_id, name=t.name, price_cents=int(t.price_cents), capacity=s.capacity, sold=s.sold,
            held=s.held, available=s.remaining, checked_in=checked_in.get(t.type_id, 0),
        ))
    return StatsOut(
        event_id=event_id, status=event.status, ticket_types=per_type,
        money=MoneyOut(currency=event.currency, gross_cents=gross, refunded_cents=refunded, net_cents=gross - refunded),
        orders_by_status=dict(sorted(by_status.items())), computed_at=clock.iso(clock.now()),
    )


# -------------------------------------------------------------------- cancel
class CancelIn(BaseModel):
    batch_size: int = Field(default=DEFAULT_BATCH, ge=1, le=MAX_BATCH)


class FailureOut(BaseModel):
    order_id: str
    why: str
    attempts: int


class CancelJobOut(BaseModel):
    event_id: str
    job_id: str
    state: str  # running, completed
    orders_total: int  # the event's orders now
    done: int  # settled: refunded + canceled + skipped
    refunded: int
    canceled: int  # pending orders canceled (nothing was paid)
    skipped: int  # nothing to do: already canceled, expired or refunded
    failed: int
    left: int
    refunded_cents: int
    batch_size: int
    batches: int
    passes: int
    failures: list[FailureOut]
    created_at: str
    updated_at: str
    completed_at: str | None = None


def _count_orders(event_id: str) -> int:
    return sum(OrderItem.gsi3.count(partition) for partition in event_index_partitions(event_id, "ORDERS"))


def _job(event_id: str) -> CancelJobItem | None:
    try:
        return CancelJobItem.get(*CancelJobItem.key(event_id), consistent_read=True)
    except CancelJobItem.DoesNotExist:
        return None


def _job_out(job: CancelJobItem) -> CancelJobOut:
    total = _count_orders(job.event_id)
    failures = [
        FailureOut(order_id=m.order_id, why=m.outcome or m.error or "unknown", attempts=int(m.attempts or 0))
        for m in CancelMarkerItem.query(
            CancelJobItem.key(job.event_id)[0], CancelMarkerItem.SK.startswith("ORDER#"),
            filter_condition=CancelMarkerItem.state == "failed", limit=100,
        )
    ]
    done, failed = int(job.done), int(job.failed)
    return CancelJobOut(
        event_id=job.event_id, job_id=job.job_id, state=job.state, orders_total=max(total, done + failed), done=done,
        refunded=int(job.refunded), canceled=int(job.canceled), skipped=int(job.skipped), failed=failed,
        left=max(0, total - done - failed), refunded_cents=int(job.refunded_cents), batch_size=int(job.batch_size),
        batches=int(job.batches), passes=int(job.passes), failures=failures, created_at=job.created_at,
        updated_at=job.updated_at, completed_at=job.completed_at,
    )


def _enqueue(event_id: str, delay_seconds: int = 0) -> None:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    url = settings().cancel_queue_url
    try:
        if not url:
            raise ValueError("CANCEL_QUEUE_URL is not set")
        boto3.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps({"event_id": event_id}), DelaySeconds=delay_seconds)
    except (BotoCoreError, ClientError, ValueError) as exc:
        raise DependencyUnavailable("The job queue is unavailable; send the cancel again to resume.", retry_after=5) from exc


def start_cancel(event_id: str, data: CancelIn, who: Caller) -> tuple[CancelJobOut, bool]:
    """Cancel the event and start its job. Returns (job, started): a second call returns
    the same job (and nudges it along if it is still running), never a second one."""
    event = _event(event_id)
    existing = _job(event_id)
    if existing is None:
        now = clock.iso(clock.now())
        job = CancelJobItem(
            *CancelJobItem.key(event_id), event_id=event_id, job_id=new_id("cj"), state="running", created_at=now,
            created_by=who.sub, updated_at=now, batch_size=data.batch_size, cursor=None, passes=1, batches=0,
            done=0, refunded=0, canceled=0, skipped=0, failed=0, refunded_cents=0,
        )
        try:
            with TransactWrite(connection=connection()) as transaction:
                transaction.save(job, condition=CancelJobItem.PK.does_not_exist())
                transaction.update(event, actions=[EventItem.status.set("canceled")], condition=EventItem.status == "on_sale")
        except TransactWriteError as exc:
            if not condition_failed(exc):
                raise
            existing = _job(event_id)  # a concurrent cancel won: answer its job
            if existing is None:
                raise Conflict(f"Event {event_id} is {event.status}; it cannot be canceled.", code=f"event_{event.status}") from exc
        else:
            logger.info("event canceled", extra={"event_id": event_id, "job_id": job.job_id, "by": who.sub})
            metrics.add_metric(name="EventsCanceled", unit="Count", value=1)
            _enqueue(event_id)
            return _job_out(job), True
    if existing.state == "running":
        _enqueue(event_id)  # harmless if one is queued: only the worker that moves the cursor goes on
    return _job_out(existing), False


def cancel_progress(event_id: str) -> CancelJobOut:
    _event(event_id)
    job = _job(event_id)
    if job is None:
        raise NotFound(f"Event {event_id} has not been canceled.")
    return _job_out(job)


class RetryLater(Exception):
    """An order could not be settled yet (Stripe failing, a payment in flight): the
    message goes back to the queue and the job resumes at that order."""


def _system(job: CancelJobItem) -> Caller:
    return Caller(sub=f"event-cancel:{job.created_by}", groups=frozenset({ADMIN}))


def _void_left(order_id: str) -> None:
    """Void whatever ticket of the order is still standing (a refund that Stripe made but
    whose completion waits for the webhook, a free order): the gate refuses them now."""
    order = orders.get(order_id)
    if order is None:
        return
    ticket_lifecycle.void_left(order, orders.tickets_of(order))


def _settle(order: OrderItem, job: CancelJobItem, again: bool = True) -> tuple[str, str, int]:
    """(state, outcome, refunded cents) for one order, or RetryLater."""
    status = order.status
    if status in REFUNDABLE:
        try:
            made = refunds.refund(order.order_id, refunds.RefundIn(reason="event_canceled"), _system(job))
        except (PaymentProviderError, DependencyUnavailable) as exc:
            raise RetryLater(f"refund failed: {exc.detail}") from exc
        except Conflict as exc:
            fresh = orders.get(order.order_id) or order
            if fresh.status == OrderStatus.REFUNDED:  # by a concurrent delivery of this batch, or before the event was canceled
                ours = sum(r["amount_cents"] for r in orders.refunds_of(order.order_id)
                           if r["reason"] == "event_canceled" and r["status"] != "pending")
                return "done", "refunded", ours
            # A refund in flight (reserved, Stripe not answered yet) is not done: it may
            # still be undone. Try again later, when it has settled one way or the other.
            if again and fresh.status != status:
                return _settle(fresh, job, again=False)
            raise RetryLater(f"refund not possible yet: {exc.detail}") from exc
        return "done", "refunded", int(made.amount_cents)
    if status == OrderStatus.PENDING:
        try:
            closed = checkout.close(order, "canceled", "event_canceled")
        except (PaymentProviderError, DependencyUnavailable) as exc:
            raise RetryLater(f"canceling the payment failed: {exc.detail}") from exc
        if closed:
            return "done", "canceled", 0
        fresh = orders.get(order.order_id) or order
        if fresh.status == OrderStatus.PENDING or not again:
            raise RetryLater("the payment went through while canceling; refunding once it is recorded")
        return _settle(fresh, job, again=False)
    if status == OrderStatus.DISPUTED:
        return "failed", "disputed: the customer disputed the payment; settle it in Stripe (its tickets are void)", 0
    return "done", "skipped", 0  # canceled, expired, refunded: nothing was kept


def _record(job: CancelJobItem, order_id: str, state: str, outcome: str, cents: int) -> bool:
    """The order's marker and the job's counters, once (False if already recorded)."""
    now = clock.iso(clock.now())
    marker = CancelMarkerItem(*CancelMarkerItem.key(job.event_id, order_id))
    settle = [CancelMarkerItem.order_id.set(order_id), CancelMarkerItem.state.set(state),
              CancelMarkerItem.outcome.set(outcome[:500]), CancelMarkerItem.updated_at.set(now)]
    counters = [CancelJobItem.updated_at.set(now)]
    if state == "failed":
        counters.append(CancelJobItem.failed.add(1))
    else:
        counters += [CancelJobItem.done.add(1), getattr(CancelJobItem, outcome).add(1)]
        if cents:
            counters.append(CancelJobItem.refunded_cents.add(cents))
    try:
        with TransactWrite(connection=connection()) as transaction:
            transaction.update(marker, actions=settle,  # an update: the attempts made before stay on record
                               condition=CancelMarkerItem.state.does_not_exist() | (CancelMarkerItem.state == "retrying"))
            transaction.update(CancelJobItem(*CancelJobItem.key(job.event_id)), actions=counters)
    except TransactWriteError as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def _attempt(job: CancelJobItem, order_id: str, why: str) -> int:
    """Count a failed attempt on the order's marker; returns how many there have been."""
    now = clock.iso(clock.now())
    try:
        marker = CancelMarkerItem(*CancelMarkerItem.key(job.event_id, order_id))
        marker.update(
            actions=[CancelMarkerItem.order_id.set(order_id), CancelMarkerItem.state.set("retrying"),
                     CancelMarkerItem.attempts.add(1), CancelMarkerItem.error.set(why[:500]), CancelMarkerItem.updated_at.set(now)],
            condition=CancelMarkerItem.state.does_not_exist() | (CancelMarkerItem.state == "retrying"),
        )
        return int(marker.attempts)
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        return 0  # settled meanwhile by another delivery


def run_cancel_batch(event_id: str, time_left_ms: Callable[[], int] = lambda: 10**9) -> dict[str, Any]:
    """Process the job's next batch of orders (see the module's docstring). Raises
    RetryLater, after saving what was done, when an order must be tried again later."""
    job = _job(event_id)
    if job is None or job.state != "running":
        return {"event_id": event_id, "state": job.state if job else "none"}
    found, cursor_after = _gather(OrderItem, event_index_partitions(event_id, "ORDERS"), int(job.batch_size), job.cursor)
    keys = [CancelMarkerItem.key(event_id, o.order_id) for o in found]
    settled = {m.order_id for m in CancelMarkerItem.batch_get(keys, consistent_read=True) if m.state in ("done", "failed")} if keys else set()
    processed, retry = 0, None
    for order in found:
        if time_left_ms() < SAFETY_MS:
            break
        if order.order_id not in settled:
            fresh = orders.get(order.order_id) or order
            try:
                state, outcome, cents = _settle(fresh, job)
            except (RetryLater, DomainError) as exc:
                why = str(exc) if isinstance(exc, RetryLater) else exc.detail
                if _attempt(job, order.order_id, why) < MAX_ATTEMPTS:
                    logger.warning("event cancel: order retried later", extra={"order_id": order.order_id, "why": why})
                    retry = RetryLater(why)
                    break
                state, outcome, cents = "failed", why, 0
            if state == "done" or outcome.startswith("disputed"):
                _void_left(order.order_id)
            _record(job, order.order_id, state, outcome, cents)
        processed += 1

    cursor = cursor_after(processed)
    finished = retry is None and processed == len(found) and cursor is None
    passes, now = int(job.passes), clock.now()
    actions = [CancelJobItem.batches.add(1), CancelJobItem.updated_at.set(clock.iso(now))]
    delay = 0
    if finished and passes == 1:
        # Again from the top, for orders a checkout placed while the event was being canceled.
        actions += [CancelJobItem.cursor.remove(), CancelJobItem.passes.set(2)]
        delay = max(0, CHECKOUT_SETTLE_SECONDS - int((now - clock.parse_iso(job.created_at)).total_seconds()))
    elif finished:
        actions += [CancelJobItem.state.set("completed"), CancelJobItem.completed_at.set(clock.iso(now)), CancelJobItem.cursor.remove()]
    else:
        actions.append(CancelJobItem.cursor.set(cursor) if cursor else CancelJobItem.cursor.remove())
    # `batches` versions the job: of two deliveries of one message, only one moves it on.
    same_place = (CancelJobItem.batches == int(job.batches)) & (CancelJobItem.state == "running")
    try:
        CancelJobItem(*CancelJobItem.key(event_id)).update(actions=actions, condition=same_place)
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        return {"event_id": event_id, "state": "superseded"}  # another delivery moved the job on
    if retry is not None:
        raise retry
    if finished and passes > 1:
        logger.info("event cancel completed", extra={"event_id": event_id})
        return {"event_id": event_id, "state": "completed", "processed": processed}
    _enqueue(event_id, delay)
    return {"event_id": event_id, "state": "running", "processed": processed}

