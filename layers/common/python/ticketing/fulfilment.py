"""Payment settling: a PaymentIntent's current state becomes the order's. Paid: tickets
valid (with their signed codes), seats sold, and the receipt (`ticketing.receipts`). A
payment after the hold lapsed takes the seats again if they are free, or is refunded in
full; a canceled intent releases the seats. Every state change is conditional
(`ticketing.lifecycle`), so even two concurrent attempts at the same payment issue one set
of tickets. The order is read once per Stripe event: each transition updates the copy in
hand.
"""

from __future__ import annotations

from typing import Any

from ticketing import catalogue, inventory, orders, payments, qr, receipts
from ticketing.errors import Conflict
from ticketing.lifecycle import LATE, OrderStatus
from ticketing.lifecycle import orders as lifecycle
from ticketing.observability import logger, metrics
from ticketing.table import OrderItem

RECEIPTED = receipts.RECEIPTED


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
        "card_brand": intent.card_brand, "card_last4": intent.card_last4,  # the payment history's card (issue 17)
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
        receipts.deliver_receipt(order)
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

        event = catalogue.find_event(order.event_id)
        refunds.notify(order, refund.amount, reason, event_name=event.name if event else None)
    return "refunded_" + reason
