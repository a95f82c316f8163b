"""Disputes (chargebacks): `charge.dispute.*` events converge on Stripe's current state.

Whatever event arrives (created, updated, closed, funds withdrawn or reinstated), the
dispute is fetched from Stripe, as the webhook does for PaymentIntents, and the order is
brought in line with it, so the order of delivery does not matter:

- open (needs_response, under_review, warning_*) or lost: the order is `disputed` and its
  tickets void (they fail at the gate and reach the scanners' voided list);
- won (or an inquiry closed without a chargeback): the order is restored if this dispute
  had disputed it; if it never had (closed delivered before created), nothing changes.
"""

from __future__ import annotations

from typing import Any

from ticketing import orders, payments
from ticketing.lifecycle import OPEN_DISPUTES, RESTORING_DISPUTES, DisputeStatus, OrderStatus
from ticketing.lifecycle import orders as lifecycle
from ticketing.lifecycle.states import REFUNDABLE
from ticketing.observability import logger, metrics
from ticketing.table import OrderItem


def converge(dispute_object: dict[str, Any]) -> tuple[str, str | None]:
    """Bring the order of the dispute in `dispute_object` (an event's) in line with the
    dispute's current state at Stripe. Returns (outcome, order id)."""
    dispute = payments.retrieve_dispute(str(dispute_object.get("id")))
    order = _order_of(dispute)
    if order is None:
        return "unknown_order", None
    status = dispute.status
    if status in OPEN_DISPUTES or status == DisputeStatus.LOST:
        if order.status in REFUNDABLE:
            logger.error("dispute opened", extra={"order_id": order.order_id, "dispute": dispute.id, "reason": dispute.reason})
            metrics.add_metric(name="DisputesOpened", unit="Count", value=1)
            if lifecycle.dispute_open(order, orders.tickets_of(order), dispute.id, status):
                return ("disputed" if status != DisputeStatus.LOST else "dispute_lost"), order.order_id
            order = orders.get(order.order_id) or order
        if order.status == OrderStatus.DISPUTED:
            if order.dispute_status != status:
                lifecycle.dispute_status(order.order_id, status)
            return ("already_disputed" if status != DisputeStatus.LOST else "dispute_lost"), order.order_id
        return f"ignored_{order.status}", order.order_id
    if status in RESTORING_DISPUTES:
        if order.status == OrderStatus.DISPUTED:
            if lifecycle.dispute_won(order, orders.tickets_of(order), dispute.id, status):
                return "dispute_won", order.order_id
            return "already_restored", order.order_id
        return "dispute_won", order.order_id  # never disputed here (closed came first): nothing to undo
    return f"dispute_{status}", order.order_id


def _order_of(dispute: payments.Dispute) -> OrderItem | None:
    order = orders.by_charge(dispute.charge_id) if dispute.charge_id else None
    if order is None and dispute.payment_intent_id:
        intent = payments.retrieve_intent(dispute.payment_intent_id)
        order = orders.get(intent.metadata["order_id"]) if intent.metadata.get("order_id") else None
    return order
