"""Checkout: latency in process, DynamoDB and Stripe calls per checkout (counted), and the
writes per key per second of a simulated 5,000-checkouts-a-second rush on one type."""

from __future__ import annotations

import os
import random
from collections import Counter

from bench.common import calls_text, count_aws_calls, median_ms, table

RUSH_PER_SECOND = 5000
PARTITION_WCU = 1000  # DynamoDB's per-partition write ceiling


def _rush(capacity: int, shard_size: int, max_shards: int, seconds: int = 1) -> tuple[int, float, float]:
    """Simulate `RUSH_PER_SECOND` checkouts of 1-4 seats for `seconds` on one type, planned as
    checkout plans them; return (shards, hottest shard's writes/s, its WCU/s)."""
    from ticketing import inventory

    capacities = inventory.shard_capacities(capacity, shard_size, max_shards)
    remaining = dict(enumerate(capacities))
    writes: Counter = Counter()
    rng = random.Random(1)
    for _ in range(RUSH_PER_SECOND * seconds):
        qty = rng.randint(1, 4)
        try:
            plan = inventory.plan(remaining, qty, rng)
        except inventory.SoldOut:
            break
        for shard, take in plan.items():
            remaining[shard] -= take
            writes[shard] += 1
    hottest = max(writes.values()) / seconds
    return len(capacities), hottest, hottest * 2  # a transactional write costs 2 WCU


def run() -> str:
    import stripe
    from moto import mock_aws

    from bench.common import create_table_and_secrets
    from tests.conftest import load_function
    from tests.unit.conftest import ADMIN, Invoker

    from local.stack import stripe_standin

    stripe_calls: Counter = Counter()
    original_request = stripe.RequestsClient.request

    def counted(self, method, url, headers, post_data=None):
        stripe_calls[f"{method.upper()} {url.split('/v1/')[1].split('/')[0]}"] += 1
        return original_request(self, method, url, headers, post_data)

    stripe.RequestsClient.request = counted
    rows = []
    try:
        with stripe_standin() as stripe_url, count_aws_calls() as calls, mock_aws():
            os.environ["STRIPE_API_BASE"] = stripe_url
            create_table_and_secrets()
            catalogue = Invoker(load_function("catalogue"))
            buy = Invoker(load_function("checkout"))
            _, event, _ = catalogue(
                "POST", "/api/events/",
                {"name": "Bench", "venue": "Hall", "currency": "usd", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T22:00:00Z"},
                claims=ADMIN,
            )
            _, ticket_type, _ = catalogue(
                "POST", f"/api/events/{event['id']}/ticket-types/", {"name": "GA", "price_cents": 2500, "capacity": 100000}, claims=ADMIN
            )
            body = {"event_id": event["id"], "items": [{"ticket_type_id": ticket_type["id"], "qty": 2}]}
            claims = {"sub": "bench-buyer"}

            def checkout() -> None:
                status, answer, _ = buy("POST", "/api/tickets/stripe/checkout/", body, claims=claims)
                assert status == 201, answer

            checkout()  # warm: secrets, clients
            calls.clear()
            stripe_calls.clear()
            checkout()
            rows.append(("DynamoDB calls per checkout", calls_text(calls, "dynamodb")))
            rows.append(("Stripe calls per checkout", ", ".join(f"{k} x{v}" for k, v in sorted(stripe_calls.items()))))
            key = {"idempotency-key": "bench-key"}
            calls.clear()
            buy("POST", "/api/tickets/stripe/checkout/", body, claims=claims, headers=key)
            first = sum(calls.values())
            calls.clear()
            buy("POST", "/api/tickets/stripe/checkout/", body, claims=claims, headers=key)
            rows.append(("DynamoDB calls with Idempotency-Key: first / replay", f"{first} / {sum(calls.values())}"))
            rows.append(("checkout median in process (moto + Stripe stand-in)", f"{median_ms(checkout, repeat=20):.1f} ms"))
    finally:
        stripe.RequestsClient.request = original_request

    shards, writes, wcu = _rush(capacity=50_000, shard_size=50, max_shards=16)
    rows.append(
        (f"rush: {RUSH_PER_SECOND}/s on one type, {shards} shards: hottest shard", f"{writes:.0f} writes/s = {wcu:.0f} WCU/s (limit {PARTITION_WCU})")
    )
    _, single, single_wcu = _rush(capacity=50_000, shard_size=50_000, max_shards=1)
    rows.append(("same rush on one unsharded item", f"{single:.0f} writes/s = {single_wcu:.0f} WCU/s"))
    return table(rows, "Checkout")
