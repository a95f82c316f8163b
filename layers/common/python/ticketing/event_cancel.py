"""Canceling an event (`start_cancel`, then `run_cancel_batch` from the queue): the
event becomes `canceled` (checkout refuses it) and a job item is written in the same
transaction (its key allows one per event). Each queue message processes the next
`batch_size` orders from the job's stored cursor: a paid order is refunded in full with
`refunds.refund` (which voids its tickets and emails the customer), a pending one is
canceled like an abandoned order (`checkout.close`: PaymentIntent canceled, seats back,
tickets void). Before the first pass reads an order, it closes the sales of every ticket
type's inventory shards (`inventory.close`), which every hold's condition checks: a checkout
that read the event as on sale before the cancel cannot place a hold after it. Each order's
outcome is a marker written once, with the job's counters, in one transaction; an order
already marked is skipped. A Stripe failure, or an order that keeps conflicting, records an
attempt, saves the cursor and fails the message, so SQS delivers it again and the job
resumes at that order; after `MAX_ATTEMPTS` the order is marked failed with why. Only the
worker that moves the cursor (a conditional write) sends the next message, so a duplicate
delivery does not fork the job. A second pass from the top, INDEX_SETTLE_SECONDS after the
cancel, catches an order placed just before the sales closed that the orders' index
(eventually consistent) did not show the first pass yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field
from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from ticketing import catalogue, checkout, clock, inventory, orders, refunds, stripe_budget
from ticketing.auth import ADMIN, Caller
from ticketing.config import settings
from ticketing.errors import Conflict, DependencyUnavailable, DomainError, NotFound, PaymentProviderError
from ticketing.ids import new_id
from ticketing.lifecycle import REFUNDABLE, OrderStatus
from ticketing.lifecycle import tickets as ticket_lifecycle
from ticketing.lifecycle.writes import condition_failed
from ticketing.observability import logger, metrics
from ticketing.pages import gather as _gather
from ticketing.reports import _event
from ticketing.table import CancelJobItem, CancelMarkerItem, EventItem, OrderItem, connection, event_index_partitions

MAX_ATTEMPTS = 5  # per order, before it is marked failed
MAX_BATCH = 100
DEFAULT_BATCH = 25
SAFETY_MS = 20_000  # stop a batch early with this much of the invocation left
INDEX_SETTLE_SECONDS = 5  # the second pass starts this long after the cancel: well past a GSI's lag


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
            made = refunds.refund(order.order_id, refunds.RefundIn(reason="event_canceled"), _system(job), by_cancellation=True)
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
            closed = checkout.close(order, "canceled", "event_canceled", pool=stripe_budget.BACKGROUND)
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
    if int(job.passes) == 1 and job.cursor is None:  # the first batch (or its retry): no hold from now on
        _, types = catalogue.load_event(event_id, consistent=True)
        inventory.close({t.type_id: int(t.shards) for t in types})
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
        # Again from the top, for an order held just before the sales closed that the index lagged on.
        actions += [CancelJobItem.cursor.remove(), CancelJobItem.passes.set(2)]
        delay = max(0, INDEX_SETTLE_SECONDS - int((now - clock.parse_iso(job.created_at)).total_seconds()))
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
