"""Stripe webhooks and fulfilment: every payment becomes valid tickets and one receipt.

Stripe delivers events more than once, concurrently and out of order. So:
- each event id is recorded with a conditional write and processed once (a lease lets a
  crashed attempt be retried; a finished one is answered as a duplicate);
- the PaymentIntent's *current* state is fetched from Stripe and acted on, whatever the
  event said, so late and reordered events converge on the same state;
- every state change is itself conditional (`ticketing.lifecycle`), so even two concurrent
  attempts at the same payment issue one set of tickets;
- the receipt is claimed with a lease before it is sent, so it goes out once; if SES
  fails the payment stays recorded and the receipt goes to a queue to be retried.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pynamodb.exceptions import PutError, UpdateError

from ticketing import clock, inventory, mail, orders, payments, qr
from ticketing.config import settings
from ticketing.errors import Conflict, DependencyUnavailable, MalformedRequest, NotFound
from ticketing.lifecycle import LATE, OrderStatus, TicketStatus
from ticketing.lifecycle import orders as lifecycle
from ticketing.lifecycle.writes import condition_failed
from ticketing.observability import logger, metrics
from ticketing.secrets import stripe_keys
from ticketing.table import EventItem, OrderItem, StripeEventItem

TOLERANCE_SECONDS = 300
LEASE_SECONDS = 60
# Orders whose customer holds valid tickets, so a receipt is owed.
RECEIPTED = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED)
EVENT_LOG_DAYS = 400
PAYMENT_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.requires_action",
        "payment_intent.processing",
    }
)


# ----------------------------------------------------------- authenticity
def verify(raw_body: str, signature: str | None) -> dict[str, Any]:
    """The event, if `Stripe-Signature` is Stripe's for this body within 5 minutes."""
    import stripe

    if not signature:
        raise MalformedRequest("The Stripe-Signature header is missing.", code="missing_signature")
    try:
        stripe.WebhookSignature.verify_header(raw_body, signature, stripe_keys().webhook_secret, TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError:
        raise MalformedRequest("The Stripe-Signature header does not match this body, or is too old.", code="bad_signature") from None
    try:
        event = json.loads(raw_body)
    except ValueError:
        raise MalformedRequest("The webhook body is not valid JSON.", code="malformed_json") from None
    if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
        raise MalformedRequest("The webhook body is not a Stripe event.", code="not_an_event")
    return event


# ------------------------------------------------------------ exactly once
@dataclass(frozen=True)
class Outcome:
    event_id: str
    outcome: str
    duplicate: bool = False


def handle(event: dict[str, Any]) -> Outcome:
    """Process a verified event once. Raises DependencyUnavailable when another attempt
    holds it (Stripe retries later) or when Stripe or AWS is down."""
    event_id, kind = str(event["id"]), str(event["type"])
    obj = (event.get("data") or {}).get("object") or {}
    if not _claim(event_id, kind, obj.get("id")):
        return Outcome(event_id, "duplicate", duplicate=True)
    try:
        outcome, order_id = _dispatch(kind, obj)
    except Exception:
        try:
            _finish(event_id, "failed", "error", None)  # lets the next delivery take it over at once
        except Exception:  # noqa: BLE001 - the lease expires anyway; keep the original error
            logger.exception("could not mark the event failed")
        raise
    _finish(event_id, "processed", outcome, order_id)
    logger.info("stripe event processed", extra={"stripe_event": event_id, "type": kind, "outcome": outcome})
    return Outcome(event_id, outcome)


def _claim(event_id: str, kind: str, object_id: str | None) -> bool:
    now = clock.now()
    record = StripeEventItem(
        *StripeEventItem.key(event_id), GSI1SK=f"{clock.iso(now)}#{event_id}", event_id=event_id, type=kind,
        object_id=object_id, received_at=clock.iso(now), state="processing",
        lease_until=clock.iso(now + timedelta(seconds=LEASE_SECONDS)), attempts=1,
        ttl=int((now + timedelta(days=EVENT_LOG_DAYS)).timestamp()),
    )
    try:
        record.save(condition=StripeEventItem.PK.does_not_exist())
        return True
    except PutError as exc:
        if not condition_failed(exc):
            raise
    # Seen before: take it over only if the last attempt failed or its lease ran out.
    try:
        StripeEventItem(*StripeEventItem.key(event_id)).update(
            actions=[
                StripeEventItem.state.set("processing"),
                StripeEventItem.lease_until.set(clock.iso(now + timedelta(seconds=LEASE_SECONDS))),
                StripeEventItem.attempts.add(1),
            ],
            condition=(StripeEventItem.state == "failed")
            | ((StripeEventItem.state == "processing") & (StripeEventItem.lease_until < clock.iso(now))),
        )
        return True
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
    current = StripeEventItem.get(*StripeEventItem.key(event_id), consistent_read=True)
    if current.state == "processed":
        return False
    raise DependencyUnavailable("This event is being processed by another delivery; retry later.", retry_after=LEASE_SECONDS)


def _finish(event_id: str, state: str, outcome: str, order_id: str | None) -> None:
    StripeEventItem(*StripeEventItem.key(event_id)).update(
        actions=[
            StripeEventItem.state.set(state),
            StripeEventItem.outcome.set(outcome),
            StripeEventItem.processed_at.set(clock.iso(clock.now())),
            StripeEventItem.lease_until.remove(),
            *([StripeEventItem.order_id.set(order_id)] if order_id else []),
        ]
    )


REFUND_EVENTS = frozenset({"charge.refunded", "refund.created", "refund.updated", "charge.refund.updated"})
DISPUTE_EVENTS = frozenset({
    "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed", "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
})


def _dispatch(kind: str, obj: dict[str, Any]) -> tuple[str, str | None]:
    from ticketing import refunds

    if kind in PAYMENT_EVENTS:
        intent = payments.retrieve_intent(str(obj.get("id")))  # the current state, not the event's
        return settle(intent)
    if kind in REFUND_EVENTS:
        charge = obj.get("id") if obj.get("object") == "charge" else obj.get("charge")
        intent = obj.get("payment_intent")
        return refunds.mirror(charge if isinstance(charge, str) else None, intent if isinstance(intent, str) else None)
    if kind in DISPUTE_EVENTS:
        from ticketing import disputes

        return disputes.converge(obj)
    return "ignored", None


# -------------------------------------------------------------- settling
def settle(intent: payments.Intent) -> tuple[str, str | None]:
    """Bring our order in line with its PaymentIntent's current state."""
    order_id = intent.metadata.get("order_id")
    order = orders.get(order_id) if order_id else None
    if order is None:
        logger.warning("payment for an unknown order", extra={"payment_intent": intent.id})
        return "unknown_order", order_id
    if order.payment and order.payment.payment_intent_id not in (None, intent.id):
        logger.error("payment intent does not belong to its order", extra={"payment_intent": intent.id, "order_id": order_id})
        return "foreign_payment_intent", order_id
    if intent.status == "succeeded":
        return _succeeded(order, intent), order_id
    if intent.status == "canceled":
        if order.status == OrderStatus.PENDING and lifecycle.release(
            order, "canceled", "payment_canceled", payment={"status": "canceled"}, by="stripe",
        ):
            return "canceled", order_id
        return "already_closed", order_id
    # requires_payment_method (after a failure), requires_action, processing, ...
    lifecycle.record_payment(
        order.order_id, status=intent.status, error_message=intent.error_message,
        payment_method=intent.payment_method_type,
    )
    return f"recorded_{intent.status}", order_id


def _payment_fields(intent: payments.Intent) -> dict[str, Any]:
    return {
        "payment_intent_id": intent.id, "status": intent.status, "charge_id": intent.charge_id,
        "payment_method": intent.payment_method_type or "card",
    }


def _succeeded(order: OrderItem, intent: payments.Intent, *, again: bool = True) -> str:
    mismatch = _mismatch(order, intent)
    if mismatch:
        # Not ours to fulfil, and not ours to refund blindly either (someone changed the
        # payment at Stripe): an alarm goes off and reconciliation reports it.
        logger.error("payment does not match its order; not fulfilled", extra={"order_id": order.order_id, "problem": mismatch})
        metrics.add_metric(name="PaymentMismatch", unit="Count", value=1)
        return "rejected_mismatch"
    # The order is read once per Stripe event (`settle`); each transition below updates
    # the copy in hand, so nothing here reads it again.
    if order.status == OrderStatus.PENDING:
        payloads = {ticket_id: qr.sign(ticket_id, order.event_id) for ticket_id in order.ticket_ids}
        if lifecycle.mark_paid(order, payloads, _payment_fields(intent)):
            metrics.add_metric(name="OrdersPaid", unit="Count", value=1)
        else:  # left pending meanwhile (canceled, expired, or another delivery paid it)
            return _succeeded(orders.get(order.order_id) or order, intent, again=False) if again else f"already_{order.status}"
    elif order.status in LATE:
        outcome = _late(order, intent)
        if outcome != "paid_late":
            return outcome
    if order.status in RECEIPTED:  # a refund may have come before a delivery that died
        deliver_receipt(order)
        return "paid"
    return f"already_{order.status}"


def _mismatch(order: OrderItem, intent: payments.Intent) -> str | None:
    if intent.amount != int(order.total_cents):
        return f"amount {intent.amount} != {int(order.total_cents)}"
    if intent.currency != order.currency:
        return f"currency {intent.currency} != {order.currency}"
    if intent.metadata.get("event_id") != order.event_id or intent.metadata.get("customer_id") != order.customer_sub:
        return "metadata does not name this order's event and customer"
    return None


def _late(order: OrderItem, intent: payments.Intent) -> str:
    """A payment for an expired or canceled order: take the seats again if they are still
    free and fulfil; otherwise refund it in full. Never keep money without tickets."""
    payloads = {ticket_id: qr.sign(ticket_id, order.event_id) for ticket_id in order.ticket_ids}
    for _attempt in range(3):
        remaining = inventory.read_shards({line.type_id: _shard_count(order, line.type_id) for line in order.lines})
        try:
            takes = {line.type_id: inventory.plan(remaining[line.type_id], int(line.qty)) for line in order.lines}
            lifecycle.pay_late(order, takes, payloads, _payment_fields(intent))
            metrics.add_metric(name="LatePaymentsFulfilled", unit="Count", value=1)
            return "paid_late"
        except lifecycle.ShardRace:
            continue
        except inventory.SoldOut:
            break
        except Conflict:
            return "already_" + ((orders.get(order.order_id) or order).status)
    metrics.add_metric(name="LatePaymentsRefunded", unit="Count", value=1)
    return _refund_whole(order, intent, "late_payment_sold_out")


def _shard_count(order: OrderItem, type_id: str) -> int:
    from ticketing.table import TicketTypeItem

    return int(TicketTypeItem.get(*TicketTypeItem.key(order.event_id, type_id)).shards)


def _refund_whole(order: OrderItem, intent: payments.Intent, reason: str) -> str:
    """Refund a late payment in full through the refunds module's Stripe call, and close
    the order as refunded (conditional on it still being expired or canceled)."""
    from ticketing import refunds

    refund = refunds.refund_whole_payment(order, intent.id, intent.amount, reason)
    if lifecycle.refunded_in_full(order, refund, reason, _payment_fields(intent)):
        from ticketing import refunds

        event = _event(order.event_id)
        refunds.notify(order, refund.amount, reason, event_name=event.name if event else None)
    return "refunded_" + reason


# --------------------------------------------------------------- receipts
def _event(event_id: str) -> EventItem | None:
    try:
        return EventItem.get(*EventItem.key(event_id))
    except EventItem.DoesNotExist:
        return None


def receipt_for(order: OrderItem) -> mail.Receipt:
    event = _event(order.event_id)
    tickets = orders.tickets_of(order)
    front = settings().frontend_url
    return mail.Receipt(
        order_id=order.order_id, to_email=order.customer_email or "", to_name=order.customer_name,
        event_name=event.name if event else "", venue=event.venue if event else "",
        starts_at=event.starts_at if event else "", currency=order.currency, total_cents=int(order.total_cents),
        lines=tuple(mail.ReceiptLine(name=line.name, qty=int(line.qty), price_cents=int(line.price_cents)) for line in order.lines),
        tickets=tuple(
            mail.ReceiptTicket(ticket_id=t.ticket_id, serial=t.serial, type_name=t.type_name, price_cents=int(t.price_cents), qr_payload=t.qr_payload or "")
            for t in tickets if t.status in (TicketStatus.VALID, TicketStatus.USED)
        ),
        order_url=f"{front}/orders/{order.order_id}" if front else None,
    )


def _send_receipt(order: OrderItem) -> str:
    return mail.send(mail.build_receipt(receipt_for(order), qr.render_png))


class ReceiptBusy(Exception):
    """Another attempt holds the receipt's lease; look again once it has run out (that
    attempt may have died holding it)."""


def _claim_receipt(order_id: str) -> Literal["claimed", "sent", "busy"]:
    """Take the receipt's lease: "sent" if it went out already, "busy" if another attempt
    holds the lease."""
    now = clock.now()
    try:
        OrderItem(*OrderItem.key(order_id)).update(
            actions=[OrderItem.receipt_claimed_until.set(clock.iso(now + timedelta(seconds=LEASE_SECONDS)))],
            condition=OrderItem.receipt_sent_at.does_not_exist()
            & (OrderItem.receipt_claimed_until.does_not_exist() | (OrderItem.receipt_claimed_until < clock.iso(now))),
        )
    except UpdateError as exc:
        if condition_failed(exc):
            current = orders.get(order_id)
            return "sent" if current is None or current.receipt_sent_at else "busy"
        raise
    return "claimed"


def _release_receipt(order_id: str) -> None:
    OrderItem(*OrderItem.key(order_id)).update(actions=[OrderItem.receipt_claimed_until.remove()])


def _record_receipt(order_id: str, message_id: str) -> None:
    OrderItem(*OrderItem.key(order_id)).update(
        actions=[
            OrderItem.receipt_sent_at.set(clock.iso(clock.now())),
            OrderItem.receipt_message_id.set(message_id),
            OrderItem.receipt_claimed_until.remove(),
        ]
    )
    metrics.add_metric(name="ReceiptsSent", unit="Count", value=1)


def deliver_receipt(order: OrderItem) -> bool:
    """Send the receipt once: claim it with a lease, send, record. If SES fails, release
    the claim and queue the order for a later attempt. Returns True if sent now."""
    if order.receipt_sent_at or not order.customer_email:
        return False
    claim = _claim_receipt(order.order_id)
    if claim == "busy":  # if that attempt dies holding the lease, the queue finishes the job
        _queue_receipt(order.order_id, delay=LEASE_SECONDS)
    if claim != "claimed":
        return False
    try:
        message_id = _send_receipt(order)
    except mail.MailError as exc:
        _release_receipt(order.order_id)
        if exc.retryable:
            _queue_receipt(order.order_id)
        else:
            logger.error("receipt rejected by SES", extra={"order_id": order.order_id})
        return False
    _record_receipt(order.order_id, message_id)
    return True


def _queue_receipt(order_id: str, delay: int = 0) -> None:
    """Leave the order on the receipt queue (seen after `delay` seconds); if even that
    fails, fail the webhook so Stripe delivers it again (and the receipt is tried then)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    url = os.environ.get("RECEIPT_QUEUE_URL", "")
    try:
        if not url:
            raise ValueError("RECEIPT_QUEUE_URL is not set")
        boto3.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps({"order_id": order_id}), DelaySeconds=delay)
        metrics.add_metric(name="ReceiptsQueued", unit="Count", value=1)
    except (BotoCoreError, ClientError, ValueError) as exc:
        raise DependencyUnavailable("Email is down and the retry queue too; retry the delivery later.", retry_after=60) from exc


def retry_receipt(order_id: str) -> None:
    """From the receipt queue: try again. Raises mail.MailError or ReceiptBusy to keep the
    message on the queue (SQS redelivers it after its visibility timeout)."""
    order = orders.get(order_id)
    if order is None or order.status not in RECEIPTED:
        return
    if order.receipt_sent_at or not order.customer_email:
        return
    claim = _claim_receipt(order_id)
    if claim == "busy":
        raise ReceiptBusy(f"the receipt of {order_id} is being sent by another attempt")
    if claim != "claimed":
        return
    try:
        message_id = _send_receipt(order)
    except mail.MailError:
        _release_receipt(order_id)
        raise
    _record_receipt(order_id, message_id)


def resend(order_id: str, who) -> dict[str, Any]:
    """The customer (or an admin) asks for the receipt again: sent now, every time."""
    order = orders.get_for(order_id, who)
    if order.status not in RECEIPTED:
        raise Conflict(f"Order {order_id} is {order.status}; only paid orders have a receipt.", code=f"order_{order.status}")
    if not order.customer_email:
        raise NotFound("This order has no email address to send the receipt to.")
    try:
        message_id = _send_receipt(order)
    except mail.MailError as exc:
        raise DependencyUnavailable("Email could not be sent just now; try again in a minute.", retry_after=60) from exc
    return {"order_id": order_id, "sent_to": order.customer_email, "message_id": message_id}


# ------------------------------------------------------------------ health
def health() -> dict[str, Any]:
    """What the webhook has seen lately (seed 002's health check)."""
    latest = list(StripeEventItem.gsi1.query("STRIPE_EVENTS", scan_index_forward=False, limit=1))
    last = latest[0] if latest else None
    configured = True
    try:
        configured = stripe_keys().webhook_secret.startswith("whsec_")
    except Exception:  # noqa: BLE001 - health must answer even when the secret cannot be read
        configured = False
    return {
        "status": "ok" if configured else "degraded",
        "webhook_secret_configured": configured,
        "last_event": (
            {"id": last.event_id, "type": last.type, "received_at": last.received_at, "state": last.state, "outcome": last.outcome}
            if last else None
        ),
    }
