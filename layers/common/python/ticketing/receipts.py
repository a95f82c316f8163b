"""Receipts: one per paid order, claimed with a lease before it is sent so it goes out
once; if SES fails the payment stays recorded and the order goes to a queue whose
worker (`retry_receipt`) tries again; an address SES refuses for good is recorded on the
order (and in the customer's inbox); `resend` sends it again on request, at most
RESENDS_PER_HOUR times an hour per order."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any, Literal

from pynamodb.exceptions import UpdateError

from ticketing import bounces, catalogue, clock, mail, orders, qr
from ticketing.config import settings
from ticketing.errors import Conflict, DependencyUnavailable, NotFound, TooManyRequests, Unprocessable
from ticketing.lifecycle import OrderStatus, TicketStatus
from ticketing.lifecycle.writes import condition_failed
from ticketing.observability import logger, metrics
from ticketing.table import OrderItem

LEASE_SECONDS = 60
# Orders whose customer holds valid tickets, so a receipt is owed.
RECEIPTED = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED)
RESENDS_PER_HOUR = 3  # receipts resent per order in one UTC hour


def receipt_for(order: OrderItem) -> mail.Receipt:
    event = catalogue.find_event(order.event_id)
    tickets = orders.tickets_of(order)
    front = settings().frontend_url
    return mail.Receipt(
        order_id=order.order_id, to_email=order.customer_email or "", to_name=order.customer_name,
        event_name=event.name if event else "", venue=event.venue if event else "",
        starts_at=event.starts_at if event else "", currency=order.currency, total_cents=int(order.total_cents),
        lines=tuple(mail.ReceiptLine(name=line.name, qty=int(line.qty), price_cents=int(line.price_cents)) for line in order.lines),
        tickets=tuple(
            mail.ReceiptTicket(ticket_id=t.ticket_id, serial=t.serial, type_name=t.type_name, price_cents=int(t.price_cents), qr_payload=t.qr_payload or "")
            # A ticket given to someone else (ticketing.transfers) is theirs: its code never goes to the buyer.
            for t in tickets if t.status in (TicketStatus.VALID, TicketStatus.USED) and not t.transferred_at
        ),
        order_url=f"{front}/orders/{order.order_id}" if front else None,
        subtotal_cents=orders.subtotal_of(order), fees_cents=int(order.fees_cents or 0),
    )


def _send_receipt(order: OrderItem) -> str:
    return mail.send(mail.build_receipt(receipt_for(order), qr.render_png),
                     customer_sub=order.customer_sub, event_id=order.event_id)


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
            OrderItem.receipt_undeliverable_at.remove(),
            OrderItem.receipt_problem.remove(),
        ]
    )
    metrics.add_metric(name="ReceiptsSent", unit="Count", value=1)


def undeliverable_problem(error: mail.MailError) -> str:
    if error.code == mail.INVALID_ADDRESS:
        return "The email address on this order cannot receive our mail; your tickets are in your account."
    return f"Our mail service refused the email address on this order ({error.code}); your tickets are in your account."


def _record_undeliverable(order_id: str, error: mail.MailError) -> None:
    """A permanent refusal of the customer's address is the customer's data, not our outage:
    kept on the order (shown on GET /api/orders/{id}/), counted (alarmed), and the Stripe
    event that paid the order still succeeds; the customer's inbox says so too. Bounces
    after sending: ticketing.bounces, whose writer this is."""
    bounces.record_undeliverable(order_id, undeliverable_problem(error), error.code)


def deliver_receipt(order: OrderItem) -> bool:
    """Send the receipt once: claim it with a lease, send, record. If SES fails, release
    the claim and queue the order for a later attempt; if the address is refused for good,
    record that on the order. Returns True if sent now."""
    if order.receipt_sent_at or order.receipt_undeliverable_at or not order.customer_email:
        return False
    claim = _claim_receipt(order.order_id)
    if claim == "busy":  # if that attempt dies holding the lease, the queue finishes the job
        _queue_receipt(order.order_id, delay=LEASE_SECONDS)
    if claim != "claimed":
        return False
    try:
        message_id = _send_receipt(order)
    except mail.MailError as exc:
        if not exc.retryable:
            _record_undeliverable(order.order_id, exc)
            return False
        _release_receipt(order.order_id)
        _queue_receipt(order.order_id)
        return False
    _record_receipt(order.order_id, message_id)
    return True


def queue_receipt(order_id: str) -> None:
    """Have the receipts function send this order's receipt (a free order's, paid at checkout)."""
    _queue_receipt(order_id)


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
    """From the receipt queue: try again. Raises a retryable mail.MailError or ReceiptBusy to keep the
    message on the queue (SQS redelivers it after its visibility timeout)."""
    order = orders.get(order_id)
    if order is None or order.status not in RECEIPTED:
        return
    if order.receipt_sent_at or order.receipt_undeliverable_at or not order.customer_email:
        return
    claim = _claim_receipt(order_id)
    if claim == "busy":
        raise ReceiptBusy(f"the receipt of {order_id} is being sent by another attempt")
    if claim != "claimed":
        return
    try:
        message_id = _send_receipt(order)
    except mail.MailError as exc:
        if not exc.retryable:  # done with: recorded on the order, the message leaves the queue
            _record_undeliverable(order_id, exc)
            return
        _release_receipt(order_id)
        raise
    _record_receipt(order_id, message_id)


def resend(order_id: str, who) -> dict[str, Any]:
    """The customer (or an admin) asks for the receipt again: sent now, at most
    RESENDS_PER_HOUR times an hour per order (429 with Retry-After past that)."""
    order = orders.get_for(order_id, who)
    if order.status not in RECEIPTED:
        raise Conflict(f"Order {order_id} is {order.status}; only paid orders have a receipt.", code=f"order_{order.status}")
    if not order.customer_email:
        raise NotFound("This order has no email address to send the receipt to.")
    _count_resend(order_id)
    try:
        message_id = _send_receipt(order)
    except mail.MailError as exc:
        if exc.retryable:
            raise DependencyUnavailable("Email could not be sent just now; try again in a minute.", retry_after=60) from exc
        _record_undeliverable(order_id, exc)
        raise Unprocessable(undeliverable_problem(exc), code="receipt_undeliverable") from exc
    if order.receipt_undeliverable_at or not order.receipt_sent_at:
        _record_receipt(order_id, message_id)
    return {"order_id": order_id, "sent_to": order.customer_email, "message_id": message_id}


def _count_resend(order_id: str) -> None:
    """Count a resend in this hour's window on the order (conditional writes, so racing
    requests cannot both take the last one); TooManyRequests once the window is full."""
    now = clock.now()
    hour = now.strftime("%Y-%m-%dT%H")
    item = OrderItem(*OrderItem.key(order_id))
    attempts = (
        ([OrderItem.resend_count.add(1)], (OrderItem.resend_hour == hour) & (OrderItem.resend_count < RESENDS_PER_HOUR)),
        ([OrderItem.resend_hour.set(hour), OrderItem.resend_count.set(1)],
         OrderItem.resend_hour.does_not_exist() | (OrderItem.resend_hour != hour)),
    )
    for _ in range(2):  # a request that loses the new window's first write counts in it
        for actions, condition in attempts:
            try:
                item.update(actions=actions, condition=condition)
                return
            except UpdateError as exc:
                if not condition_failed(exc):
                    raise
    wait = 3600 - (now.minute * 60 + now.second)
    raise TooManyRequests(f"A receipt may be resent at most {RESENDS_PER_HOUR} times an hour; try again later.",
                          retry_after=max(1, wait), code="too_many_resends")
