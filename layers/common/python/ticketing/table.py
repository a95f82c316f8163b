"""The one table: every item type, its keys and its indexes, as PynamoDB models.

Single-table design (see README, "Data model"). Keys are built only here.

| item            | PK                  | SK             | GSI1PK / GSI1SK                        | GSI2PK / GSI2SK                 |
|-----------------|---------------------|----------------|----------------------------------------|---------------------------------|
| event           | EVENT#<event_id>    | META           | EVENTS / <starts_at>#<event_id>        |                                 |
| ticket type     | EVENT#<event_id>    | TYPE#<type_id> |                                        |                                 |
| inventory shard | INV#<type_id>#<n>   | INV            |                                        |                                 |
| refund          | ORDER#<order_id>    | REFUND#<id>    |                                        |                                 |
| order           | ORDER#<order_id>    | META           | CUSTOMER#<sub> / ORDER#<created>#<id>  | HOLDS#<k> / <expires_at>#<id>   |
| ticket          | TICKET#<ticket_id>  | META           | CUSTOMER#<sub> / TICKET#<created>#<id> | VOIDED#<event_id> / <voided_at>#<id> (once voided after issue) |
| seats a customer holds for an event | HOLDER#<sub> | EVENT#<event_id> |                      |                                 |
| received Stripe event | STRIPE_EVENT#<id> | META     | STRIPE_EVENTS / <received_at>#<id>     |                                 |

GSI2 holds only pending orders (the attributes are removed when an order leaves
`pending`), spread over HOLD_PARTITIONS keys so a rush does not write one index partition.

Inventory shards have a partition each, so the writes of a hot ticket type
spread over several partitions instead of queueing on one item.
"""

from __future__ import annotations

import os

from pynamodb.attributes import (
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


class _Meta:
    table_name = os.environ.get("TABLE_NAME", "ticketing")
    region = _region()
    max_retry_attempts = 3
    connect_timeout_seconds = 2
    read_timeout_seconds = 5


class GSI1(GlobalSecondaryIndex):
    class Meta:
        index_name = "GSI1"
        projection = AllProjection()

    GSI1PK = UnicodeAttribute(hash_key=True)
    GSI1SK = UnicodeAttribute(range_key=True)


class GSI2(GlobalSecondaryIndex):
    class Meta:
        index_name = "GSI2"
        projection = AllProjection()

    GSI2PK = UnicodeAttribute(hash_key=True)
    GSI2SK = UnicodeAttribute(range_key=True)


class Fixture(MapAttribute):
    fixture_id = UnicodeAttribute()
    starts_at = UnicodeAttribute()
    ends_at = UnicodeAttribute()
    name = UnicodeAttribute(null=True)


class EventItem(Model):
    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="META")
    GSI1PK = UnicodeAttribute(default="EVENTS")
    GSI1SK = UnicodeAttribute()
    gsi1 = GSI1()

    event_id = UnicodeAttribute()
    name = UnicodeAttribute()
    venue = UnicodeAttribute()
    description = UnicodeAttribute(null=True)
    starts_at = UnicodeAttribute()
    ends_at = UnicodeAttribute()
    currency = UnicodeAttribute()
    status = UnicodeAttribute(default="on_sale")
    fixtures = ListAttribute(of=Fixture, default=list)
    created_at = UnicodeAttribute()
    created_by = UnicodeAttribute()

    @staticmethod
    def key(event_id: str) -> tuple[str, str]:
        return f"EVENT#{event_id}", "META"


class TicketTypeItem(Model):
    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)

    type_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    name = UnicodeAttribute()
    price_cents = NumberAttribute()
    capacity = NumberAttribute()
    max_per_order = NumberAttribute()
    fixture_id = UnicodeAttribute(null=True)
    sales_start = UnicodeAttribute()
    sales_end = UnicodeAttribute()
    shards = NumberAttribute()
    created_at = UnicodeAttribute()

    @staticmethod
    def key(event_id: str, type_id: str) -> tuple[str, str]:
        return f"EVENT#{event_id}", f"TYPE#{type_id}"


class InventoryShard(Model):
    """A slice of one ticket type's seats. `remaining` is what conditional writes guard:
    a hold decrements it only where it stays >= 0; `held` and `sold` are for reporting."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="INV")

    event_id = UnicodeAttribute()
    type_id = UnicodeAttribute()
    shard = NumberAttribute()
    capacity = NumberAttribute()
    remaining = NumberAttribute()
    held = NumberAttribute(default=0)
    sold = NumberAttribute(default=0)

    @staticmethod
    def key(type_id: str, shard: int) -> tuple[str, str]:
        return f"INV#{type_id}#{shard}", "INV"


HOLD_PARTITIONS = 10


def hold_partition(order_id: str) -> str:
    return f"HOLDS#{sum(order_id.encode()) % HOLD_PARTITIONS}"


class ShardTake(MapAttribute):
    shard = NumberAttribute()
    qty = NumberAttribute()


class OrderLine(MapAttribute):
    type_id = UnicodeAttribute()
    name = UnicodeAttribute()
    qty = NumberAttribute()
    price_cents = NumberAttribute()
    takes = ListAttribute(of=ShardTake, default=list)  # where the line's seats are held


class Payment(MapAttribute):
    payment_intent_id = UnicodeAttribute(null=True)
    client_secret = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)
    payment_method = UnicodeAttribute(null=True)
    charge_id = UnicodeAttribute(null=True)
    error_message = UnicodeAttribute(null=True)


class OrderItem(Model):
    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="META")
    GSI1PK = UnicodeAttribute()
    GSI1SK = UnicodeAttribute()
    GSI2PK = UnicodeAttribute(null=True)
    GSI2SK = UnicodeAttribute(null=True)
    gsi1 = GSI1()
    gsi2 = GSI2()

    order_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    fixture_id = UnicodeAttribute(null=True)
    customer_sub = UnicodeAttribute()
    customer_email = UnicodeAttribute(null=True)
    customer_name = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    total_cents = NumberAttribute()
    currency = UnicodeAttribute()
    lines = ListAttribute(of=OrderLine)
    ticket_ids = ListAttribute(of=UnicodeAttribute)
    payment = Payment(default=dict)
    refunded_cents = NumberAttribute(default=0)
    created_at = UnicodeAttribute()
    expires_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    closed_reason = UnicodeAttribute(null=True)
    paid_at = UnicodeAttribute(null=True)
    receipt_claimed_until = UnicodeAttribute(null=True)  # a sender's lease, so one email goes out
    receipt_sent_at = UnicodeAttribute(null=True)
    receipt_message_id = UnicodeAttribute(null=True)

    @staticmethod
    def key(order_id: str) -> tuple[str, str]:
        return f"ORDER#{order_id}", "META"


class TicketItem(Model):
    """A ticket. What a listing or the gate shows about its event is copied onto it at
    checkout (name, times, holder), so one read answers a scan and one query a page."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="META")
    GSI1PK = UnicodeAttribute()
    GSI1SK = UnicodeAttribute()
    GSI2PK = UnicodeAttribute(null=True)  # VOIDED#<event_id> once an issued ticket is voided
    GSI2SK = UnicodeAttribute(null=True)  # <voided_at>#<ticket_id>
    gsi1 = GSI1()
    gsi2 = GSI2()

    ticket_id = UnicodeAttribute()
    serial = UnicodeAttribute()
    order_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    fixture_id = UnicodeAttribute(null=True)
    type_id = UnicodeAttribute()
    type_name = UnicodeAttribute()
    price_cents = NumberAttribute()
    currency = UnicodeAttribute()
    status = UnicodeAttribute()
    customer_sub = UnicodeAttribute()
    created_at = UnicodeAttribute()
    issued_at = UnicodeAttribute(null=True)
    used_at = UnicodeAttribute(null=True)
    qr_payload = UnicodeAttribute(null=True)  # signed when the ticket becomes valid
    event_name = UnicodeAttribute(null=True)
    event_ends_at = UnicodeAttribute(null=True)  # the fixture's end if it has one, else the event's
    fixture_starts_at = UnicodeAttribute(null=True)
    fixture_ends_at = UnicodeAttribute(null=True)
    holder_email = UnicodeAttribute(null=True)
    holder_name = UnicodeAttribute(null=True)
    voided_at = UnicodeAttribute(null=True)

    @staticmethod
    def key(ticket_id: str) -> tuple[str, str]:
        return f"TICKET#{ticket_id}", "META"


class HolderCount(Model):
    """Seats one customer holds (pending) for one event, capped per customer."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)
    held = NumberAttribute(default=0)

    @staticmethod
    def key(sub: str, event_id: str) -> tuple[str, str]:
        return f"HOLDER#{sub}", f"EVENT#{event_id}"


class RefundItem(Model):
    """A refund of (part of) an order, kept in the order's partition."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)

    refund_id = UnicodeAttribute()
    order_id = UnicodeAttribute()
    amount_cents = NumberAttribute()
    currency = UnicodeAttribute()
    status = UnicodeAttribute()
    stripe_refund_id = UnicodeAttribute(null=True)
    ticket_ids = ListAttribute(of=UnicodeAttribute, default=list)
    reason = UnicodeAttribute()
    created_at = UnicodeAttribute()
    created_by = UnicodeAttribute(null=True)

    @staticmethod
    def key(order_id: str, refund_id: str) -> tuple[str, str]:
        return f"ORDER#{order_id}", f"REFUND#{refund_id}"


class StripeEventItem(Model):
    """One received Stripe event, for exactly-once processing and for audit."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="META")
    GSI1PK = UnicodeAttribute(default="STRIPE_EVENTS")
    GSI1SK = UnicodeAttribute()
    gsi1 = GSI1()

    event_id = UnicodeAttribute()
    type = UnicodeAttribute()
    livemode = UnicodeAttribute(null=True)
    object_id = UnicodeAttribute(null=True)
    received_at = UnicodeAttribute()
    processed_at = UnicodeAttribute(null=True)
    state = UnicodeAttribute()  # processing, processed, failed
    lease_until = UnicodeAttribute(null=True)
    attempts = NumberAttribute(default=0)
    outcome = UnicodeAttribute(null=True)
    order_id = UnicodeAttribute(null=True)
    ttl = NumberAttribute(null=True)

    @staticmethod
    def key(event_id: str) -> tuple[str, str]:
        return f"STRIPE_EVENT#{event_id}", "META"


def customer_partition(sub: str) -> str:
    return f"CUSTOMER#{sub}"


def event_partition(event_id: str) -> str:
    return f"EVENT#{event_id}"


_connection = None


def connection():
    """One low-level connection per container (for transactions), so its botocore client
    and HTTP connections are reused across requests."""
    global _connection
    if _connection is None:
        from pynamodb.connection import Connection

        _connection = Connection(region=_Meta.region)
    return _connection
