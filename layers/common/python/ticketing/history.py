"""A customer's payment history (issue 17): `GET /api/me/payments/`.

Read from what the table already holds: the caller's orders (GSI1 `CUSTOMER#<sub>`,
newest first, as `/api/me/orders/`), only those money was taken for (paid, or later
refunded or disputed); the event names in one BatchGetItem; and, for the orders that have
refunds, the refund items in the order's own partition (one Query per such order, none for
the others). The card's brand and last four digits are those recorded with the payment
(`payment.card_brand`, `payment.card_last4`), null where Stripe's answer did not show them.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from ticketing.auth import Caller
from ticketing.config import settings
from ticketing.pages import ID, STAMP, decode_key, encode_cursor
from ticketing.table import EventItem, OrderItem, RefundItem, customer_partition

DEFAULT_PAGE = 50
PAID_STATUSES = ("paid", "partially_refunded", "refunded", "disputed")
KEY_NAMES = ("PK", "SK", "GSI1PK", "GSI1SK")
READ_FACTOR = 4  # orders read per payment answered at most (pending/expired ones are skipped)


class PaymentCardOut(BaseModel):
    brand: str | None
    last4: str | None


class PaymentRefundOut(BaseModel):
    id: str
    amount_cents: int
    reason: str
    status: str
    created_at: str


class PaymentRecordOut(BaseModel):
    order_id: str
    event_id: str
    event_name: str | None
    amount_cents: int
    currency: str
    status: str  # the order's: paid, partially_refunded, refunded, disputed
    payment_intent_id: str | None
    card: PaymentCardOut | None
    created_at: str
    paid_at: str | None
    refunded_cents: int
    refunds: list[PaymentRefundOut]


class PaymentPage(BaseModel):
    payments: list[PaymentRecordOut]
    count: int
    next_cursor: str | None = None


def _start(cursor: str | None, partition: str) -> dict[str, Any] | None:
    """The cursor's key, if this listing handed it to this caller (else 400 bad_cursor)."""
    return decode_key(cursor, {"PK": "ORDER#" + ID, "SK": "META", "GSI1PK": re.escape(partition),
                               "GSI1SK": "ORDER#" + STAMP + "#" + ID})


def my_payments(who: Caller, *, limit: int = DEFAULT_PAGE, cursor: str | None = None) -> PaymentPage:
    limit = max(1, min(limit, settings().page_size_max))
    partition = customer_partition(who.sub)
    answer = OrderItem._get_connection().query(
        partition,
        range_key_condition=OrderItem.GSI1SK.startswith("ORDER#"),
        filter_condition=OrderItem.status.is_in(*PAID_STATUSES),
        index_name="GSI1",
        scan_index_forward=False,
        limit=min(limit * READ_FACTOR, 1000),
        exclusive_start_key=_start(cursor, partition),
    )
    raw = answer.get("Items", [])
    last = answer.get("LastEvaluatedKey")
    if len(raw) > limit:
        raw = raw[:limit]
        last = {name: raw[-1][name] for name in KEY_NAMES}
    found = [OrderItem.from_raw_data(item) for item in raw]
    names = _event_names({o.event_id for o in found})
    listed = [_out(o, names.get(o.event_id), _refunds(o)) for o in found]
    return PaymentPage(payments=listed, count=len(listed), next_cursor=encode_cursor(last))


def _event_names(event_ids: set[str]) -> dict[str, str]:
    if not event_ids:
        return {}
    keys = [EventItem.key(event_id) for event_id in sorted(event_ids)]
    return {e.event_id: e.name for e in EventItem.batch_get(keys, attributes_to_get=["event_id", "name"])}


def _refunds(order: OrderItem) -> list[PaymentRefundOut]:
    if not int(order.refunded_cents or 0) and order.status not in ("refunded", "partially_refunded"):
        return []
    items = RefundItem.query(f"ORDER#{order.order_id}", RefundItem.SK.startswith("REFUND#"))
    made = sorted(items, key=lambda r: (r.created_at, r.refund_id), reverse=True)
    return [PaymentRefundOut(id=r.refund_id, amount_cents=int(r.amount_cents), reason=r.reason, status=r.status,
                      created_at=r.created_at) for r in made]


def _out(order: OrderItem, event_name: str | None, refunds: list[PaymentRefundOut]) -> PaymentRecordOut:
    payment = order.payment
    card = None
    if payment is not None and (payment.card_brand or payment.card_last4):
        card = PaymentCardOut(brand=payment.card_brand, last4=payment.card_last4)
    return PaymentRecordOut(
        order_id=order.order_id, event_id=order.event_id, event_name=event_name,
        amount_cents=int(order.total_cents), currency=order.currency, status=order.status,
        payment_intent_id=payment.payment_intent_id if payment is not None else None, card=card,
        created_at=order.created_at, paid_at=order.paid_at, refunded_cents=int(order.refunded_cents or 0),
        refunds=refunds,
    )
