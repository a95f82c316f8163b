"""AWS and Stripe calls per request, counted (not timed): checkout is two reads and two
updates spending the Stripe budget, one read of the event, one read of the shards, one
transaction and one update, plus one PaymentIntent."""

from __future__ import annotations

from collections import Counter

import pytest
import stripe

from bench.common import count_aws_calls
from tests.unit.conftest import ADMIN, Invoker, load_function
from ticketing import clock


@pytest.fixture
def stripe_calls(monkeypatch):
    calls: Counter = Counter()
    original = stripe.RequestsClient.request

    def counted(self, method, url, headers, post_data=None):
        calls[f"{method.upper()} {url.split('/v1/')[1].split('?')[0].split('/')[0]}"] += 1
        return original(self, method, url, headers, post_data)

    monkeypatch.setattr(stripe.RequestsClient, "request", counted)
    return calls


def test_calls_per_checkout_and_per_replay(aws, catalogue, stripe_standin, stripe_calls):
    # the unit secret's sk_test_unit key is accepted by the stand-in
    buy = Invoker(load_function("checkout"))
    _, event, _ = catalogue(
        "POST", "/api/events/",
        {"name": "Count", "venue": "Hall", "currency": "usd", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T22:00:00Z"},
        claims=ADMIN,
    )
    _, ticket_type, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/", {"name": "GA", "price_cents": 500, "capacity": 500}, claims=ADMIN)
    body = {"event_id": event["id"], "items": [{"ticket_type_id": ticket_type["id"], "qty": 2}]}
    claims = {"sub": "counter", "email_verified": "true"}
    buy("POST", "/api/tickets/stripe/checkout/", body, claims=claims)  # warm the secret cache

    # early in a second and frozen: a checkout near a second's end (or crossing it) spends the next one's budget too
    clock.freeze(clock.now().replace(microsecond=200_000))
    try:
        with count_aws_calls() as calls:
            stripe_calls.clear()
            status, _, _ = buy("POST", "/api/tickets/stripe/checkout/", body, claims=claims)
    finally:
        clock.freeze(None)
    assert status == 201
    dynamodb = {k.split(".")[1]: v for k, v in calls.items() if k.startswith("dynamodb.")}
    assert dynamodb == {"Query": 1, "BatchGetItem": 3, "TransactWriteItems": 1, "UpdateItem": 3}
    assert dict(stripe_calls) == {"POST payment_intents": 1}

    key = {"idempotency-key": "count-key"}
    buy("POST", "/api/tickets/stripe/checkout/", body, claims=claims, headers=key)
    with count_aws_calls() as calls:
        stripe_calls.clear()
        status, _, _ = buy("POST", "/api/tickets/stripe/checkout/", body, claims=claims, headers=key)
    assert status == 201
    assert sum(calls.values()) == 1 and not stripe_calls  # a replay reads one record, calls no Stripe


def test_reading_an_event_is_one_query_and_one_batch_read(catalogue):
    _, event, _ = catalogue(
        "POST", "/api/events/",
        {"name": "Count", "venue": "Hall", "currency": "usd", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T22:00:00Z"},
        claims=ADMIN,
    )
    for index in range(3):
        catalogue("POST", f"/api/events/{event['id']}/ticket-types/", {"name": f"T{index}", "price_cents": 100, "capacity": 300}, claims=ADMIN)
    with count_aws_calls() as calls:
        status, body, _ = catalogue("GET", f"/api/events/{event['id']}/")
    assert status == 200 and len(body["ticket_types"]) == 3
    assert dict(calls) == {"dynamodb.Query": 1, "dynamodb.BatchGetItem": 1}
