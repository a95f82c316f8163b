"""The one table: every item type, its keys and its indexes, as PynamoDB models.

Single-table design (see README, "Data model"). Keys are built only here.

| item            | PK                  | SK             | GSI1PK / GSI1SK                        | GSI2PK / GSI2SK                 |
|-----------------|---------------------|----------------|----------------------------------------|---------------------------------|
| event           | EVENT#<event_id>    | META           | EVENTS / <starts_at>#<event_id>        |                                 |
| ticket type     | EVENT#<event_id>    | TYPE#<type_id> |                                        |                                 |
| inventory shard | INV#<type_id>#<n>   | INV            |                                        |                                 |
| refund          | ORDER#<order_id>    | REFUND#<id>    |                                        |                                 |
| order           | ORDER#<order_id>    | META           | CUSTOMER#<sub> / ORDER#<created>#<id>  | pending: HOLDS#<k> / <expires_at>#<id>; expired, its PaymentIntent not yet canceled: UNCANCELED#<k> / <released_at>#<id>; paid: CHARGE#<charge_id> / ORDER |
| ticket          | TICKET#<ticket_id>  | META           | CUSTOMER#<sub> / TICKET#<created>#<id>; transferred, unclaimed: HOLDING#<email> / same | VOIDED#<event_id> / <voided_at>#<id> (once voided after issue, or its code re-issued) |
| seats a customer holds for an event | HOLDER#<sub> | EVENT#<event_id> |                      |                                 |
| received Stripe event | STRIPE_EVENT#<id> | META     | STRIPE_EVENTS#<k> / <received_at>#<id> (k < 16) |                        |
| gate scan (audit) | SCANS#<event_id or unknown>#<yyyy-mm-dd>#<k> (k < 8) | <scanned_at>#<random> |     | TTL `ttl` (400 days)            |
| idempotency record | <Powertools' hashed key> | IDEMPOTENCY |                                     | TTL `ttl` (ticketing.idempotency) |
| Stripe budget counter | RATE#<pool>#<endpoint>#<epoch second>#<k> | RATE |                        | TTL `ttl` (ticketing.stripe_budget) |
| who expires a lapsed order | EXPIRY#<order_id> | CLAIM (release), CANCEL (its PaymentIntent) |       | TTL `ttl` (ticketing.checkout.expire_lapsed) |
| order's transition log | ORDER#<order_id>  | LOG#<at>#<random> |                                     |                                 |
| a ticket's transfer (who held it when) | ORDER#<order_id> | TRANSFER#<at>#<ticket_id>#<v> |                |                                 |
| event cancellation job | CANCEL#<event_id> | JOB        |                                        |                                 |
| an order's outcome in it | CANCEL#<event_id> | ORDER#<order_id> |                                |                                 |
| event change fan-out job | CHANGE#<event_id> | JOB         |                                        |                                 |
| a customer told of it | CHANGE#<event_id> | V#<version>#<sub> |                                  |                                 |
| voucher (issue 19) | VOUCHER#<code>      | META           | VOUCHERS#<event_id> / <voucher_id>     |                                 |
| wrong voucher codes a customer tried | GUESSES#<sub> | VOUCHER_GUESSES |                          | TTL `ttl` (ticketing.vouchers)  |
| a type's waiting list (issue 19) | WAIT#<type_id> | HEAD      |                                        | WAITLISTS / <type_id>           |
| a place on it   | WAIT#<type_id>      | ENTRY#<seq>    | CUSTOMER#<sub> / WAIT#<joined>#<id>    | offered: OFFERS#<k> / <expires_at>#<id> |
| who is on it    | WAIT#<type_id>      | SUB#<sub>      |                                        |                                 |
| an offer's code | OFFER#<code>        | META           |                                        | TTL `ttl`                       |

GSI3 (GSI3PK / GSI3SK): an event's orders `EVENT#<event_id>#ORDERS#<k>` / `<created>#<order_id>`
and tickets `EVENT#<event_id>#TICKETS#<k>` / `<created>#<ticket_id>`, k in 0-31 (a hash of the
id), written at checkout; readers query the 32 partitions and merge. The capacity model
(`bench/capacity.py`) sizes the spreads: each keeps its hottest key under DynamoDB's
1,000 write units a second per partition at the rates in README's "On-sale runbook".

GSI2 holds pending orders by expiry, spread over HOLD_PARTITIONS keys so a rush does not
write one index partition; an expired order whose PaymentIntent is still to be canceled at
Stripe moves to UNCANCELED#<k> (same spread) until it is; once paid, an order moves to CHARGE#<charge_id> there, so a
refund or dispute event (which names the charge) finds it with one Query.

Inventory shards have a partition each, so the writes of a hot ticket type
spread over several partitions instead of queueing on one item.
"""

from __future__ import annotations

import os

from pynamodb.attributes import (
    BooleanAttribute,
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


class GSI3(GlobalSecondaryIndex):
    """An event's orders and tickets, each spread over EVENT_INDEX_PARTITIONS keys
    (`EVENT#<event_id>#ORDERS#<k>`, `EVENT#<event_id>#TICKETS#<k>`) so a rush on one event
    writes 32 index partitions, not one; readers query all of them and merge."""

    class Meta:
        index_name = "GSI3"
        projection = AllProjection()

    GSI3PK = UnicodeAttribute(hash_key=True)
    GSI3SK = UnicodeAttribute(range_key=True)


class Fixture(MapAttribute):
    fixture_id = UnicodeAttribute()
    starts_at = UnicodeAttribute()
    ends_at = UnicodeAttribute()
    name = UnicodeAttribute(null=True)


class FeesMap(MapAttribute):
    """An event's service fees (ticketing.fees), copied onto each order sold with them."""

    percent_bps = NumberAttribute(default=0)
    fixed_cents = NumberAttribute(default=0)
    per = UnicodeAttribute(default="ticket")  # ticket or order
    passed_on = BooleanAttribute(default=True)
    refundable = BooleanAttribute(default=False)


class TransferPolicy(MapAttribute):
    """Whether holders may transfer the event's tickets, and until when (ticketing.transfers)."""

    enabled = BooleanAttribute(default=False)
    until = UnicodeAttribute(null=True)  # null: until the event starts


class WaitingListSettings(MapAttribute):
    enabled = BooleanAttribute(default=False)
    offer_minutes = NumberAttribute(default=60)


class WaitingRoom(MapAttribute):
    """An event's on-sale waiting room (`ticketing.waiting_room`); `admit_per_minute` None:
    derived from the Stripe budget."""

    enabled = BooleanAttribute(default=False)
    opens_at = UnicodeAttribute()
    admit_per_minute = NumberAttribute(null=True)
    admission_ttl_seconds = NumberAttribute(default=600)
    paused = BooleanAttribute(default=False)


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
    times_version = NumberAttribute(null=True)  # counts changes of times or venue (ticketing.event_changes)
    waiting_room = WaitingRoom(null=True)
    fees = FeesMap(null=True)  # service fees for new orders (issue 17)
    max_per_customer = NumberAttribute(null=True)  # tickets one customer may buy (paid + held)
    transfers = TransferPolicy(null=True)  # absent: transfers off
    waiting_list = WaitingListSettings(null=True)  # issue 19: opt-in per event (ticketing.waitlist)

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
    hidden = BooleanAttribute(null=True)  # off the event page; sold only with a revealing voucher (issue 19)

    @staticmethod
    def key(event_id: str, type_id: str) -> tuple[str, str]:
        return f"EVENT#{event_id}", f"TYPE#{type_id}"


class InventoryShard(Model):
    """A slice of one ticket type's seats. `remaining` is what conditional writes guard:
    a hold decrements it only where it stays >= 0 and the shard is not `closed` (its event
    canceled: `inventory.close`); `held` and `sold` are for reporting."""

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
    closed = BooleanAttribute(null=True)

    @staticmethod
    def key(type_id: str, shard: int) -> tuple[str, str]:
        return f"INV#{type_id}#{shard}", "INV"

    @staticmethod
    def can_take(seats: int):
        """The condition of every write that takes seats off sale (a hold, a waiting-list
        offer, a late payment's seats): the shard has them, and its sales are not closed."""
        return (InventoryShard.remaining >= seats) & InventoryShard.closed.does_not_exist()


HOLD_PARTITIONS = 16


def hold_partition(order_id: str) -> str:
    return f"HOLDS#{sum(order_id.encode()) % HOLD_PARTITIONS}"


UNCANCELED = "UNCANCELED#"


def uncanceled_partition(order_id: str) -> str:
    """Where an order released before its PaymentIntent was canceled waits for the cancel."""
    return f"{UNCANCELED}{sum(order_id.encode()) % HOLD_PARTITIONS}"


EVENT_INDEX_PARTITIONS = 32


def event_orders_index(event_id: str, order_id: str, created_at: str) -> dict[str, str]:
    """GSI3 attributes of an order: its event's orders, newest first in each partition."""
    k = sum(order_id.encode()) % EVENT_INDEX_PARTITIONS
    return {"GSI3PK": f"EVENT#{event_id}#ORDERS#{k}", "GSI3SK": f"{created_at}#{order_id}"}


def event_tickets_index(event_id: str, ticket_id: str, created_at: str) -> dict[str, str]:
    """GSI3 attributes of a ticket: its event's tickets (attendees), over the partitions."""
    k = sum(ticket_id.encode()) % EVENT_INDEX_PARTITIONS
    return {"GSI3PK": f"EVENT#{event_id}#TICKETS#{k}", "GSI3SK": f"{created_at}#{ticket_id}"}


def event_index_partitions(event_id: str, kind: str) -> list[str]:
    """Every GSI3 partition key of an event's `kind` (ORDERS or TICKETS)."""
    return [f"EVENT#{event_id}#{kind}#{k}" for k in range(EVENT_INDEX_PARTITIONS)]


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
    card_brand = UnicodeAttribute(null=True)  # of the card paid with, when Stripe's answer showed it
    card_last4 = UnicodeAttribute(null=True)


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
    GSI3PK = UnicodeAttribute(null=True)  # EVENT#<event_id>#ORDERS#<k> (event_orders_index)
    GSI3SK = UnicodeAttribute(null=True)  # <created_at>#<order_id>
    gsi3 = GSI3()

    order_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    fixture_id = UnicodeAttribute(null=True)
    customer_sub = UnicodeAttribute()
    customer_email = UnicodeAttribute(null=True)
    customer_name = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    total_cents = NumberAttribute()  # charged: subtotal + the buyer's fees
    subtotal_cents = NumberAttribute(null=True)  # the tickets' prices (absent: orders before fees, = total)
    fees_cents = NumberAttribute(null=True)  # the fees the buyer pays (0 when absorbed)
    all_fees_cents = NumberAttribute(null=True)  # every fee of the order, absorbed ones included
    fees_returned_cents = NumberAttribute(null=True)  # fees given up by refunds
    fees = FeesMap(null=True)  # the fees it was sold with
    currency = UnicodeAttribute()
    lines = ListAttribute(of=OrderLine)
    ticket_ids = ListAttribute(of=UnicodeAttribute)
    payment = Payment(default=dict)
    refunded_cents = NumberAttribute(default=0)
    created_at = UnicodeAttribute()
    expires_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    closed_reason = UnicodeAttribute(null=True)
    status_before_dispute = UnicodeAttribute(null=True)
    dispute_status = UnicodeAttribute(null=True)
    paid_at = UnicodeAttribute(null=True)
    receipt_claimed_until = UnicodeAttribute(null=True)  # a sender's lease, so one email goes out
    receipt_sent_at = UnicodeAttribute(null=True)
    receipt_message_id = UnicodeAttribute(null=True)
    receipt_undeliverable_at = UnicodeAttribute(null=True)  # the address was refused for good (mail code or SES)
    receipt_problem = UnicodeAttribute(null=True)  # why, in words the customer sees on the order
    resend_hour = UnicodeAttribute(null=True)  # the UTC hour ("2026-12-02T10") resend_count counts
    resend_count = NumberAttribute(null=True)  # receipts resent in resend_hour (limited, ticketing.fulfilment)
    voucher_code = UnicodeAttribute(null=True)  # the voucher used (issue 19): its use is given back on release
    discount_cents = NumberAttribute(null=True)  # what the voucher took off, before fees

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
    GSI3PK = UnicodeAttribute(null=True)  # EVENT#<event_id>#TICKETS#<k> (event_tickets_index)
    GSI3SK = UnicodeAttribute(null=True)  # <created_at>#<ticket_id>
    gsi3 = GSI3()

    ticket_id = UnicodeAttribute()
    serial = UnicodeAttribute()
    order_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    fixture_id = UnicodeAttribute(null=True)
    type_id = UnicodeAttribute()
    type_name = UnicodeAttribute()
    price_cents = NumberAttribute()
    fee_cents = NumberAttribute(null=True)  # its fee (ticketing.fees), so its refund is exact
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
    gate = UnicodeAttribute(null=True)  # where it was checked in (with used_at)
    scanner = UnicodeAttribute(null=True)  # who checked it in (the scanner's sub)
    voided_by_dispute = UnicodeAttribute(null=True)  # the dispute id, so a dispute won restores it
    refund_id = UnicodeAttribute(null=True)  # the refund that holds (or voided) this ticket
    admission = UnicodeAttribute(null=True)  # online or offline: how it was admitted (with used_at)
    times_version = NumberAttribute(null=True)  # the event's change whose end `event_ends_at` shows (ticketing.event_changes)
    code_version = NumberAttribute(null=True)  # the signed code's version (qr.py); absent: 0
    transferred_at = UnicodeAttribute(null=True)  # the last transfer (ticketing.transfers)

    @staticmethod
    def key(ticket_id: str) -> tuple[str, str]:
        return f"TICKET#{ticket_id}", "META"


class HolderCount(Model):
    """Seats one customer holds (pending) for one event, capped per customer."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)
    held = NumberAttribute(default=0)
    bought = NumberAttribute(null=True)  # tickets held or paid, against the event's max_per_customer

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
    fees_cents = NumberAttribute(null=True)  # the fees this refund gave up (ticketing.fees.refund_of)

    @staticmethod
    def key(order_id: str, refund_id: str) -> tuple[str, str]:
        return f"ORDER#{order_id}", f"REFUND#{refund_id}"


STRIPE_EVENT_PARTITIONS = 16


def stripe_events_partition(event_id: str) -> str:
    """The GSI1 key of a received Stripe event: spread over STRIPE_EVENT_PARTITIONS keys."""
    return f"STRIPE_EVENTS#{sum(event_id.encode()) % STRIPE_EVENT_PARTITIONS}"


def stripe_events_partitions() -> list[str]:
    """Every GSI1 key of received Stripe events (readers query them all and merge)."""
    return [f"STRIPE_EVENTS#{k}" for k in range(STRIPE_EVENT_PARTITIONS)]


class StripeEventItem(Model):
    """One received Stripe event, for exactly-once processing and for audit. Its GSI1 key
    is one of STRIPE_EVENT_PARTITIONS (`stripe_events_partition`), so a rush of webhooks
    does not write one index partition."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="META")
    GSI1PK = UnicodeAttribute()
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


class ScanItem(Model):
    """One gate scan attempt, kept for audit whatever its outcome (forgeries included).

    Keyed by the (verified) event, the day and one of SCAN_PARTITIONS (at random), so a day
    at one event is SCAN_PARTITIONS Queries (`scan_partitions`), doors-open at 1,000 scans a
    second writes no partition past its limit, and a forged code's record needs no read: a
    code whose signature fails goes to `SCANS#unknown#<day>#<k>`. Expires after
    `SCAN_TTL_DAYS` through the table's TTL."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)

    scanned_at = UnicodeAttribute()  # when the scan happened (the scanner's clock offline)
    recorded_at = UnicodeAttribute()  # when we received it
    action = UnicodeAttribute()  # verify, checkin, offline
    result = UnicodeAttribute()  # accepted, rejected, duplicate, conflict, void, invalid, ok
    reason = UnicodeAttribute()  # a Verify reason
    scanner = UnicodeAttribute()  # the caller's sub
    gate = UnicodeAttribute(null=True)
    code = UnicodeAttribute(null=True)  # the scanned code, truncated (no signature)
    ticket_id = UnicodeAttribute(null=True)
    event_id = UnicodeAttribute(null=True)
    ttl = NumberAttribute()

    @staticmethod
    def key(event_id: str | None, scanned_at: str, suffix: str) -> tuple[str, str]:
        k = sum(suffix.encode()) % SCAN_PARTITIONS
        return f"SCANS#{event_id or 'unknown'}#{scanned_at[:10]}#{k}", f"{scanned_at}#{suffix}"


SCAN_PARTITIONS = 8


def scan_partitions(event_id: str | None, day: str) -> list[str]:
    """Every partition key of one event's (or `unknown`'s) scans on `day` (yyyy-mm-dd)."""
    return [f"SCANS#{event_id or 'unknown'}#{day}#{k}" for k in range(SCAN_PARTITIONS)]


class CancelJobItem(Model):
    """An event's cancellation job: one per event (the key makes a second one impossible).
    Its counters move in the same transaction as each order's marker, so they count each
    order once; `cursor` is where the next batch starts (the GSI3 positions)."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="JOB")

    event_id = UnicodeAttribute()
    job_id = UnicodeAttribute()
    state = UnicodeAttribute()  # running, completed
    created_at = UnicodeAttribute()
    created_by = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    completed_at = UnicodeAttribute(null=True)
    batch_size = NumberAttribute()
    cursor = UnicodeAttribute(null=True)  # None: from the top of this pass
    passes = NumberAttribute(default=1)  # a second pass catches orders placed while canceling
    batches = NumberAttribute(default=0)
    done = NumberAttribute(default=0)
    refunded = NumberAttribute(default=0)
    canceled = NumberAttribute(default=0)
    skipped = NumberAttribute(default=0)
    failed = NumberAttribute(default=0)
    refunded_cents = NumberAttribute(default=0)

    @staticmethod
    def key(event_id: str) -> tuple[str, str]:
        return f"CANCEL#{event_id}", "JOB"


class CancelMarkerItem(Model):
    """One order's outcome in its event's cancellation: written once (`done` or `failed`),
    so no order is refunded or counted twice; `retrying` records attempts until then."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)

    order_id = UnicodeAttribute()
    state = UnicodeAttribute()  # retrying, done, failed
    outcome = UnicodeAttribute(null=True)  # refunded, canceled, skipped, or why it failed
    attempts = NumberAttribute(default=0)
    error = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute()

    @staticmethod
    def key(event_id: str, order_id: str) -> tuple[str, str]:
        return f"CANCEL#{event_id}", f"ORDER#{order_id}"


class EventChangeJobItem(Model):
    """Telling an event's ticket holders that its times or venue changed (issue 17): one
    item per event, rewritten by each change (`version`, the event's `times_version`) in
    the transaction that changes the event, so a newer change supersedes an older one's
    fan-out. `cursor` is where the next batch starts (GSI3 positions of the event's
    tickets); `batches` versions the job so of two deliveries only one moves it on."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="JOB")

    event_id = UnicodeAttribute()
    version = NumberAttribute()
    state = UnicodeAttribute()  # running, completed
    starts_at = UnicodeAttribute()  # the event's times and venue after this change
    ends_at = UnicodeAttribute()
    venue = UnicodeAttribute()
    was_starts_at = UnicodeAttribute()  # and before it (what the message says changed)
    was_ends_at = UnicodeAttribute()
    was_venue = UnicodeAttribute()
    cursor = UnicodeAttribute(null=True)
    batches = NumberAttribute(default=0)
    told = NumberAttribute(default=0)  # customers told (emailed or, undeliverable, in the inbox only)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    completed_at = UnicodeAttribute(null=True)

    @staticmethod
    def key(event_id: str) -> tuple[str, str]:
        return f"CHANGE#{event_id}", "JOB"


class EventChangeNoticeItem(Model):
    """One customer told of one change of an event: claimed with a lease before the email
    is sent, then recorded (`sent_at`), so a retried batch does not tell them twice."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)

    sub = UnicodeAttribute()
    claimed_until = UnicodeAttribute(null=True)
    attempts = NumberAttribute(default=0)
    sent_at = UnicodeAttribute(null=True)
    message_id = UnicodeAttribute(null=True)
    outcome = UnicodeAttribute(null=True)  # emailed, undeliverable, no_address

    @staticmethod
    def key(event_id: str, version: int, sub: str) -> tuple[str, str]:
        return f"CHANGE#{event_id}", f"V#{version}#{sub}"


class RateCounterItem(Model):
    """One shard of one Stripe budget counter for one second (`ticketing.stripe_budget`):
    `used` requests of at most `cap`; gone through the table's TTL a minute later."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="RATE")
    used = NumberAttribute(default=0)
    ttl = NumberAttribute(null=True)

    @staticmethod
    def key(counter: str, second: int, shard: int) -> tuple[str, str]:
        return f"RATE#{counter}#{second}#{shard}", "RATE"


class ExpiryClaimItem(Model):
    """Who expires a lapsed order (`ticketing.checkout.expire_lapsed`, SK `CLAIM`) or cancels
    its PaymentIntent afterwards (`cancel_released`, SK `CANCEL`): owned until `until`, so
    concurrent expirers release each hold and cancel each PaymentIntent once; gone through
    the TTL an hour later."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="CLAIM")
    until = UnicodeAttribute()
    ttl = NumberAttribute(null=True)

    @staticmethod
    def key(order_id: str, stage: str = "CLAIM") -> tuple[str, str]:
        return f"EXPIRY#{order_id}", stage


class AccountItem(Model):
    """A customer's account (issue 17): its Stripe Customer, claimed once by a conditional
    write (`customer_claimed_until`, a lease) before it is created, and the SetupIntent
    rate limit (a fixed window: `setup_window` and the count made in it)."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="PROFILE")

    sub = UnicodeAttribute()
    stripe_customer_id = UnicodeAttribute(null=True)
    customer_claimed_until = UnicodeAttribute(null=True)
    customer_created_at = UnicodeAttribute(null=True)
    setup_window = UnicodeAttribute(null=True)
    setup_count = NumberAttribute(null=True)

    @staticmethod
    def key(sub: str) -> tuple[str, str]:
        return f"ACCOUNT#{sub}", "PROFILE"


class NotificationItem(Model):
    """One inbox entry of a customer (issue 17), in the customer's own partition, so another
    customer's id is simply not found. GSI1: the inbox newest first; GSI2 (sparse, removed
    when read): the unread ones, so the unread count reads only unread items."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)
    GSI1PK = UnicodeAttribute()
    GSI1SK = UnicodeAttribute()
    GSI2PK = UnicodeAttribute(null=True)
    GSI2SK = UnicodeAttribute(null=True)
    gsi1 = GSI1()
    gsi2 = GSI2()

    notification_id = UnicodeAttribute()
    sub = UnicodeAttribute()
    kind = UnicodeAttribute()  # receipt, refund, event_changed, event_canceled, receipt_undeliverable
    title = UnicodeAttribute()
    body = UnicodeAttribute()
    order_id = UnicodeAttribute(null=True)
    event_id = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    read_at = UnicodeAttribute(null=True)

    @staticmethod
    def key(sub: str, notification_id: str) -> tuple[str, str]:
        return f"INBOX#{sub}", f"NOTE#{notification_id}"

    @staticmethod
    def inbox(sub: str) -> str:
        return f"INBOX#{sub}"

    @staticmethod
    def unread(sub: str) -> str:
        return f"UNREAD#{sub}"


class TransferItem(Model):
    """Who held a ticket when: one record per transfer, in the order's partition
    (`ORDER#<order_id>` / `TRANSFER#<at>#<ticket_id>#<code version>`), written with the transfer."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)

    order_id = UnicodeAttribute()
    ticket_id = UnicodeAttribute()
    from_sub = UnicodeAttribute()
    from_email = UnicodeAttribute(null=True)
    from_name = UnicodeAttribute(null=True)
    to_email = UnicodeAttribute()
    to_name = UnicodeAttribute()
    code_version = NumberAttribute()
    at = UnicodeAttribute()
    by = UnicodeAttribute()

    @staticmethod
    def key(order_id: str, at: str, ticket_id: str, code_version: int) -> tuple[str, str]:
        return f"ORDER#{order_id}", f"TRANSFER#{at}#{ticket_id}#{code_version}"


class TransitionLogItem(Model):
    """One transition of an order, its tickets or its refunds (see `ticketing.lifecycle`):
    who, when, from, to and why, written in the transition's own transaction and kept in
    the order's partition (`ORDER#<order_id>` / `LOG#<at>#<random>`), as pretix's order log."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)

    order_id = UnicodeAttribute()
    entity = UnicodeAttribute()  # order, ticket, refund
    transition = UnicodeAttribute()  # a name declared in ticketing.lifecycle.states
    from_status = UnicodeAttribute(null=True)
    to_status = UnicodeAttribute(null=True)
    by = UnicodeAttribute()  # the caller's sub, stripe, system, event-cancel:<sub>
    why = UnicodeAttribute()
    ids = ListAttribute(of=UnicodeAttribute, default=list)  # the tickets or refund it moved
    at = UnicodeAttribute()

    @staticmethod
    def key(order_id: str, at: str, suffix: str) -> tuple[str, str]:
        return f"ORDER#{order_id}", f"LOG#{at}#{suffix}"


class VoucherItem(Model):
    """A voucher of one event (issue 19), keyed by its code (unique across events, so a code
    of another event is recognised as such). GSI1 lists an event's vouchers by id (ids are
    time-ordered), which also finds one by id. `uses` moves only in the lifecycle's hold
    and release transactions (`ticketing.lifecycle.orders`), conditional on `max_uses`."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="META")
    GSI1PK = UnicodeAttribute()
    GSI1SK = UnicodeAttribute()
    gsi1 = GSI1()

    voucher_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    code = UnicodeAttribute()
    kind = UnicodeAttribute()  # percent, amount, reveal
    value = NumberAttribute()  # percent: whole percent 0-100; amount: minor units; reveal: 0
    ticket_type_ids = ListAttribute(of=UnicodeAttribute, default=list)  # empty: every visible type
    max_uses = NumberAttribute()
    uses = NumberAttribute(default=0)
    valid_from = UnicodeAttribute(null=True)
    valid_until = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    retired_at = UnicodeAttribute(null=True)

    @staticmethod
    def key(code: str) -> tuple[str, str]:
        return f"VOUCHER#{code}", "META"

    @staticmethod
    def event_index(event_id: str) -> str:
        return f"VOUCHERS#{event_id}"


class VoucherGuessItem(Model):
    """Wrong voucher codes one customer tried in the current window (`ticketing.vouchers`):
    past the limit, checkout with a code answers 429 until the window ends."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="VOUCHER_GUESSES")
    window = UnicodeAttribute()
    count = NumberAttribute(default=0)
    ttl = NumberAttribute(null=True)

    @staticmethod
    def key(sub: str) -> tuple[str, str]:
        return f"GUESSES#{sub}", "VOUCHER_GUESSES"


class WaitHeadItem(Model):
    """A ticket type's waiting list (issue 19): the next place number and `waiting`, the
    seats wanted by those still waiting (not yet offered). While `waiting` > 0 the public
    sees that many fewer seats (`ticketing.waitlist.public_free`). GSI2 `WAITLISTS` lists
    every waiting list for the offer run."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="HEAD")
    GSI2PK = UnicodeAttribute(default="WAITLISTS")
    GSI2SK = UnicodeAttribute()
    gsi2 = GSI2()

    event_id = UnicodeAttribute()
    type_id = UnicodeAttribute()
    next_seq = NumberAttribute(default=0)
    waiting = NumberAttribute(default=0)

    @staticmethod
    def key(type_id: str) -> tuple[str, str]:
        return f"WAIT#{type_id}", "HEAD"


OFFER_PARTITIONS = 8


def offer_partition(entry_id: str) -> str:
    return f"OFFERS#{sum(entry_id.encode()) % OFFER_PARTITIONS}"


class WaitEntryItem(Model):
    """One place on a waiting list, in line by `seq` (its sort key). `state`: waiting ->
    offered -> taken (checked out with the offer) or lapsed; waiting/offered -> left.
    While offered, `offer_takes` are the seats held for it (held on their shards) and GSI2
    holds it by expiry (`OFFERS#<k>`), so the expiry run finds lapsed offers."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)
    GSI1PK = UnicodeAttribute()
    GSI1SK = UnicodeAttribute()
    GSI2PK = UnicodeAttribute(null=True)
    GSI2SK = UnicodeAttribute(null=True)
    gsi1 = GSI1()
    gsi2 = GSI2()

    entry_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    type_id = UnicodeAttribute()
    seq = NumberAttribute()
    sub = UnicodeAttribute()
    email = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)
    qty = NumberAttribute()
    state = UnicodeAttribute()  # waiting, offered, taken, lapsed, left
    joined_at = UnicodeAttribute()
    offer_code = UnicodeAttribute(null=True)
    offered_at = UnicodeAttribute(null=True)
    offer_expires_at = UnicodeAttribute(null=True)
    offer_takes = ListAttribute(of=ShardTake, null=True)
    order_id = UnicodeAttribute(null=True)
    ended_at = UnicodeAttribute(null=True)

    @staticmethod
    def key(type_id: str, seq: int) -> tuple[str, str]:
        return f"WAIT#{type_id}", f"ENTRY#{int(seq):010d}"


class WaitMemberItem(Model):
    """Who is on a type's waiting list (one place each): joining twice finds this."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)
    seq = NumberAttribute()

    @staticmethod
    def key(type_id: str, sub: str) -> tuple[str, str]:
        return f"WAIT#{type_id}", f"SUB#{sub}"


class OfferCodeItem(Model):
    """An offer's code -> its place on the list (checkout with `offer_code` reads this)."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="META")
    type_id = UnicodeAttribute()
    seq = NumberAttribute()
    sub = UnicodeAttribute()
    ttl = NumberAttribute(null=True)

    @staticmethod
    def key(code: str) -> tuple[str, str]:
        return f"OFFER#{code}", "META"


# ------------------------------------------------------------ waiting room (ticketing.waiting_room)
QUEUE_INDEX_PARTITIONS = 8  # GSI2 keys an event's admitted places spread over


class QueueRoomItem(Model):
    """An event whose waiting room is enabled: the admission job ticks every room listed
    under `QUEUE_ROOMS` (one Query a second), and takes a room that is over off the list.
    `listed` is new each time the room is listed, so taking it off removes only the
    listing that was read."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True, default="QUEUE_ROOMS")
    SK = UnicodeAttribute(range_key=True)
    event_id = UnicodeAttribute()
    ends_at = UnicodeAttribute()
    listed = UnicodeAttribute(null=True)

    @staticmethod
    def key(event_id: str) -> tuple[str, str]:
        return "QUEUE_ROOMS", f"EVENT#{event_id}"


class QueueCounterItem(Model):
    """One shard of an event's arrival counter: `E` (before opening; `closed` once the room
    opened) or `L` (after). A join takes the next number of a shard."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="COUNT")
    count = NumberAttribute(default=0)
    closed = BooleanAttribute(null=True)

    @staticmethod
    def key(event_id: str, phase: str, shard: int) -> tuple[str, str]:
        return f"QCOUNT#{event_id}#{phase}#{shard}", "COUNT"


class QueueStateItem(Model):
    """The admission state of an event's waiting room, written by the admission job once a
    second to each of `replicas` keys (readers take one at random)."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="STATE")
    version = NumberAttribute(default=0)
    opened = BooleanAttribute(default=False)
    seed = UnicodeAttribute(null=True)  # the pre-opening draw's key (hex), set at opening
    early = ListAttribute(of=NumberAttribute, default=list)  # pre-opening arrivals per shard, frozen at opening
    late = ListAttribute(of=NumberAttribute, default=list)  # arrivals since, per shard, at the last tick
    serving = NumberAttribute(default=0)  # positions 1..serving are admitted
    admitted = NumberAttribute(default=0)  # buyers admitted (positions that hold someone)
    at = NumberAttribute(default=0)  # epoch seconds of the last tick
    carry = NumberAttribute(default=0)  # a fraction of a buyer owed to the next tick
    rate = NumberAttribute(default=0)  # buyers a minute now (the setting, slowed under pressure)
    factor = NumberAttribute(default=1)  # 0.1-1: the slow-down under Stripe pressure
    sold_out = BooleanAttribute(default=False)
    paused = BooleanAttribute(default=False)
    marks = ListAttribute(default=list)  # [[epoch, admitted], ...] every ~10 s, the last TTL's worth

    @staticmethod
    def key(event_id: str, replica: int) -> tuple[str, str]:
        return f"QUEUE#{event_id}#STATE#{replica}", "STATE"


class QueuePlaceItem(Model):
    """An account's place in an event's waiting room: the shard and number it drew; once
    admitted (first poll at or past the front), `admitted_at` and `expires_at` and GSI2
    `QADMIT#<event>#<k>` / `<expires_at>`; once spent by a checkout, GSI2 `QSPENT#<event>#<k>`."""

    Meta = _Meta

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True, default="PLACE")
    GSI2PK = UnicodeAttribute(null=True)
    GSI2SK = UnicodeAttribute(null=True)
    gsi2 = GSI2()

    event_id = UnicodeAttribute()
    sub = UnicodeAttribute()
    phase = UnicodeAttribute()  # E (joined before opening) or L
    shard = NumberAttribute()
    number = NumberAttribute()  # 0-based, within the shard
    joined_at = NumberAttribute()  # epoch seconds
    round = NumberAttribute(default=0)  # how many times this account joined again after spending or lapsing
    admitted_at = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)
    spent_at = UnicodeAttribute(null=True)
    spent_order = UnicodeAttribute(null=True)

    @staticmethod
    def key(event_id: str, sub: str) -> tuple[str, str]:
        return f"QPLACE#{event_id}#{sub}", "PLACE"


def queue_index(event_id: str, sub: str, kind: str) -> str:
    """GSI2 key of an admitted (`QADMIT`) or spent (`QSPENT`) place."""
    return f"{kind}#{event_id}#{sum(sub.encode()) % QUEUE_INDEX_PARTITIONS}"
