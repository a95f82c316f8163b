"""The invariants every race test, the model-based test, the integration race tests and
the soak check after each step: read the whole table (and Stripe), return what is wrong.

- seats: per ticket type and per shard, capacity = sold + held + remaining, none negative;
- money: for every order, what Stripe kept (charged minus refunded) equals what the order
  says (its total minus its refunded cents once it was ever paid, nothing otherwise);
- admissions: every admitted ticket (`used_at` set) is `used`, or void by a dispute, or
  refunded by an organiser's refund (not its customer's) made after the admission;
- refunds: an order's refunded cents never exceed its total and equal its refund records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

EVER_PAID = ("paid", "partially_refunded", "refunded", "disputed")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == int(value) else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _every_item(client: Any, table: str) -> Iterable[dict[str, Any]]:
    """Every item of the table in DynamoDB JSON, as a consistent Scan answers. From moto in
    process (`mock_aws`: the client has no endpoint of its own) the items are read from
    moto's backend: a Scan's answer through moto's response serializer costs about 0.2 s
    for a few hundred items, and the race and model tests read the table after every step
    (most of their time went there). From the local stack: a real Scan."""
    if "amazonaws.com" not in client.meta.endpoint_url:
        for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            yield from page["Items"]
        return
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][client.meta.region_name]
    for item in list(backend.get_table(table).all_items()):
        yield item.to_json()["Attributes"]  # read, never changed: the deserializer builds new values


def snapshot(client: Any, table: str) -> dict[str, list[dict[str, Any]]]:
    """Every shard, order, ticket and refund in the table, as plain dicts (a boto3 client:
    moto in process or the local stack's)."""
    from boto3.dynamodb.types import TypeDeserializer

    load = TypeDeserializer().deserialize
    found: dict[str, list[dict[str, Any]]] = {"shards": [], "orders": [], "tickets": [], "refunds": []}
    for raw in _every_item(client, table):
        item = _plain({k: load(v) for k, v in raw.items()})
        pk, sk = item["PK"], item["SK"]
        if pk.startswith("INV#"):
            found["shards"].append(item)
        elif pk.startswith("ORDER#") and sk == "META":
            found["orders"].append(item)
        elif pk.startswith("ORDER#") and sk.startswith("REFUND#"):
            found["refunds"].append(item)
        elif pk.startswith("TICKET#"):
            found["tickets"].append(item)
    return found


def seat_problems(shards: Iterable[dict[str, Any]]) -> list[str]:
    problems = []
    for s in shards:
        parts = {name: int(s.get(name) or 0) for name in ("capacity", "remaining", "held", "sold")}
        if parts["capacity"] != parts["remaining"] + parts["held"] + parts["sold"]:
            problems.append(f"shard {s['PK']}: capacity {parts['capacity']} != remaining+held+sold {parts}")
        if min(parts.values()) < 0:
            problems.append(f"shard {s['PK']}: negative {parts}")
    return problems


def money_problems(orders: Iterable[dict[str, Any]], refunds: Iterable[dict[str, Any]],
                   kept_at_stripe: Callable[[str], int] | None) -> list[str]:
    problems = []
    by_order: dict[str, list[dict[str, Any]]] = {}
    for r in refunds:
        by_order.setdefault(r["order_id"], []).append(r)
    for o in orders:
        total, refunded = int(o["total_cents"]), int(o.get("refunded_cents") or 0)
        recorded = sum(int(r["amount_cents"]) for r in by_order.get(o["order_id"], []))
        if refunded > total or refunded < 0:
            problems.append(f"order {o['order_id']}: refunded {refunded} of {total}")
        if refunded != recorded:
            problems.append(f"order {o['order_id']}: refunded_cents {refunded} != its refund records {recorded}")
        intent = (o.get("payment") or {}).get("payment_intent_id")
        if kept_at_stripe is None or not intent:
            continue
        ours = total - refunded if o["status"] in EVER_PAID else 0
        theirs = kept_at_stripe(intent)
        if ours != theirs:
            problems.append(f"order {o['order_id']} ({o['status']}): Stripe kept {theirs}, the order says {ours}")
    return problems


def admission_problems(tickets: Iterable[dict[str, Any]], refunds: Iterable[dict[str, Any]]) -> list[str]:
    problems = []
    records = {r["refund_id"]: r for r in refunds}
    for t in tickets:
        if not t.get("used_at"):
            continue
        if t["status"] == "used":
            continue
        if t["status"] == "void" and t.get("voided_by_dispute"):
            continue
        record = records.get(t.get("refund_id") or "")
        if t["status"] == "void" and record is not None:
            if record.get("created_by") == t.get("customer_sub"):
                problems.append(f"ticket {t['ticket_id']}: admitted at {t['used_at']} and refunded by its customer")
            elif record["created_at"] < t["used_at"]:
                problems.append(f"ticket {t['ticket_id']}: admitted at {t['used_at']} after its refund of {record['created_at']}")
            continue
        problems.append(f"ticket {t['ticket_id']}: admitted at {t['used_at']} but {t['status']}")
    return problems


def problems(client: Any, table: str, kept_at_stripe: Callable[[str], int] | None = None,
             orders: Iterable[str] | None = None, types: Iterable[str] | None = None, only: bool = False) -> list[str]:
    """Everything wrong with the table now (empty when every invariant holds). `orders`:
    ask Stripe about these orders only (the rest are checked without Stripe). `only`: judge
    nothing but these orders (their tickets and refunds) and the shards of `types` (a
    shared table, where other tests leave deliberately odd items)."""
    snap = snapshot(client, table)
    wanted = set(orders) if orders is not None else None
    asked = [o for o in snap["orders"] if wanted is None or o["order_id"] in wanted]
    unasked = [] if only else [o for o in snap["orders"] if wanted is not None and o["order_id"] not in wanted]
    shards, tickets, records = snap["shards"], snap["tickets"], snap["refunds"]
    if only:
        kinds = set(types or ())
        shards = [s for s in shards if s.get("type_id") in kinds]
        tickets = [t for t in tickets if t.get("order_id") in (wanted or set())]
        records = [r for r in records if r.get("order_id") in (wanted or set())]
    return (seat_problems(shards) + money_problems(asked, records, kept_at_stripe) + money_problems(unasked, records, None)
            + admission_problems(tickets, records))


def stripe_kept(stripe_client: Any) -> Callable[[str], int]:
    """What Stripe kept of a PaymentIntent: charged (if it succeeded) minus refunded."""

    def kept(intent_id: str) -> int:
        intent = stripe_client.v1.payment_intents.retrieve(intent_id)
        if intent.status != "succeeded":
            return 0
        refunds = stripe_client.v1.refunds.list(params={"payment_intent": intent_id, "limit": 100}).data
        return int(intent.amount) - sum(int(r.amount) for r in refunds if r.status in ("succeeded", "pending"))

    return kept
