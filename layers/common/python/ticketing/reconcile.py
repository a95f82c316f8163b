"""Reconciliation: compare Stripe's PaymentIntents and refunds with our orders, report
any drift, and optionally repair it with the same code the webhook runs.

    python -m ticketing.reconcile [--since 2026-11-01T00:00:00Z] [--repair]

Drift it finds:
- `paid_not_fulfilled`: Stripe took the money, the order is not paid (a webhook was lost);
  repair settles it as the webhook would (fulfil, or refund a late payment).
- `paid_unknown_order`: Stripe took money for an order we do not have (report only).
- `refund_not_recorded`: Stripe refunded more than the order records, or made a refund
  of ours that is still pending with us 20 minutes on (its answer and the webhook were
  lost); repair mirrors it as the webhook would.
- `refund_not_sent`: a refund of ours reserved (money and tickets set aside) that never
  reached Stripe, the process having stopped in between; 20 minutes on, repair releases
  it, as a refused refund is, so it can be asked for again.
- `fulfilled_not_paid`: the order is paid but Stripe says the payment did not succeed
  (report only: a person looks).
It prints a JSON report and exits 1 if drift remains (0 when clean or all repaired), so a
scheduled job or a person can act on it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import timedelta

from ticketing import clock, orders, payments
from ticketing.errors import Conflict
from ticketing.lifecycle import LATE, OrderStatus, RefundStatus
from ticketing.observability import logger
from ticketing.table import OrderItem, RefundItem

# Longer than any function runs (Lambda stops at 15 minutes): a refund of ours still
# pending this long after it was reserved is not in flight any more.
STALE_AFTER = timedelta(minutes=20)


def stale(order: OrderItem) -> list[RefundItem]:
    """The order's refunds still pending STALE_AFTER after they were reserved: the process
    stopped between reserving and Stripe's answer (and no webhook brought the answer)."""
    cutoff = clock.iso(clock.now() - STALE_AFTER)
    found = RefundItem.query(RefundItem.key(order.order_id, "")[0], RefundItem.SK.startswith("REFUND#"), consistent_read=True)
    return [record for record in found if record.status == RefundStatus.PENDING and record.created_at < cutoff]


def sent(record: RefundItem, stripe_refunds: list[payments.RefundResult]) -> bool:
    """Whether Stripe holds this refund of ours (by our id in its metadata, or its own id)."""
    return any(r.metadata.get("refund_id") == record.refund_id or f"rf_{r.id}" == record.refund_id for r in stripe_refunds)


def release_unsent(order: OrderItem, record: RefundItem) -> None:
    """Give back what a refund Stripe never received set aside, as a refused one would; the
    customer (or an admin) can ask again. Conditional on the record still being pending."""
    from ticketing.lifecycle import refunds as lifecycle
    from ticketing.lifecycle.writes import Refused

    held = set(record.ticket_ids or [])
    try:
        lifecycle.undo(order, record, [t for t in orders.tickets_of(order) if t.ticket_id in held], by="reconcile",
                       why="never reached Stripe")
    except Refused as exc:
        raise Conflict(f"Refund {record.refund_id} changed while it was released; look again.", code="refund_changed") from exc
    logger.warning("unsent refund released", extra={"order_id": order.order_id, "refund_id": record.refund_id})


@dataclass
class Drift:
    kind: str
    order_id: str | None
    payment_intent_id: str
    detail: str
    repaired: bool = False


def scan(since_epoch: int | None = None, repair: bool = False) -> list[Drift]:
    from ticketing import fulfilment, refunds

    drifts: list[Drift] = []
    for intent in payments.intents(since_epoch):
        order_id = intent.metadata["order_id"]
        order = orders.get(order_id)
        if intent.status == "succeeded":
            if order is None:
                drifts.append(Drift("paid_unknown_order", order_id, intent.id, f"{intent.amount} {intent.currency} taken"))
                continue
            if order.status in (OrderStatus.PENDING, *LATE) and order.payment.payment_intent_id in (None, intent.id):
                drift = Drift("paid_not_fulfilled", order_id, intent.id, f"order is {order.status}")
                if repair:
                    outcome, _ = fulfilment.settle(intent)
                    drift.repaired = outcome in ("paid", "refunded_late_payment_sold_out")
                    drift.detail += f"; settled: {outcome}"
                drifts.append(drift)
                continue
            at_stripe = payments.refunds_of(intent.id)
            stale = _stale_refunds(order, intent.id, at_stripe, repair)
            drifts += stale
            if stale and repair:
                order = orders.get(order_id)  # the repairs moved its refunded total
            refunded_at_stripe = sum(r.amount for r in at_stripe if r.status in ("succeeded", "pending"))
            recorded = int(order.refunded_cents or 0)
            if refunded_at_stripe > recorded:
                drift = Drift("refund_not_recorded", order_id, intent.id, f"Stripe refunded {refunded_at_stripe}, recorded {recorded}")
                if repair:
                    refunds.mirror(None, intent.id)
                    fresh = orders.get(order_id)
                    drift.repaired = int(fresh.refunded_cents or 0) >= refunded_at_stripe
                drifts.append(drift)
        elif order is not None and order.status == OrderStatus.PAID and order.payment.payment_intent_id == intent.id:
            drifts.append(Drift("fulfilled_not_paid", order_id, intent.id, f"PaymentIntent is {intent.status}"))
    return drifts


def _stale_refunds(order: OrderItem, intent_id: str, at_stripe: list[payments.RefundResult], repair: bool) -> list[Drift]:
    """Refunds of ours still pending long after they were reserved. Stripe made them (its
    answer and the webhook were lost): repair completes them as the webhook would. Stripe
    never got them (the process stopped first): repair releases what they set aside."""
    from ticketing import refunds

    drifts = []
    for record in stale(order):
        made = sent(record, at_stripe)
        drift = Drift(
            "refund_not_recorded" if made else "refund_not_sent", order.order_id, intent_id,
            f"refund {record.refund_id} of {int(record.amount_cents)} pending since {record.created_at}",
        )
        if repair:
            if made:
                refunds.mirror(None, intent_id)
            else:
                release_unsent(order, record)
            drift.repaired = record.refund_id not in {r.refund_id for r in stale(order)}
        drifts.append(drift)
    return drifts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare Stripe with the orders; optionally repair drift.")
    parser.add_argument("--since", help="only PaymentIntents created at or after this ISO time")
    parser.add_argument("--repair", action="store_true", help="settle lost payments, mirror unrecorded refunds, release unsent ones")
    args = parser.parse_args(argv)
    since = int(clock.parse_iso(args.since).timestamp()) if args.since else None
    drifts = scan(since, args.repair)
    remaining = [d for d in drifts if not d.repaired]
    print(json.dumps({"checked_at": clock.iso(clock.now()), "drift": [asdict(d) for d in drifts], "unresolved": len(remaining)}, indent=2))
    return 1 if remaining else 0


if __name__ == "__main__":
    sys.exit(main())
