"""The Stripe budget in process (moto): at most the configured requests in any second, per
endpoint and per pool, background work keeping its share, and a checkout over the budget
answered 503 with Retry-After before any seat is held (counts, not timings)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from local.environment import overriding
from tests.unit.conftest import ADMIN, Invoker, load_function
from ticketing import clock, config, stripe_budget
from ticketing.errors import DependencyUnavailable
from ticketing.table import InventoryShard, OrderItem

SECOND = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def budget(aws):
    def configure(total: int, per_endpoint: int, background_percent: int = 20):
        values = {"STRIPE_RATE_TOTAL": str(total), "STRIPE_RATE_PER_ENDPOINT": str(per_endpoint),
                  "STRIPE_RATE_BACKGROUND_PERCENT": str(background_percent)}
        return overriding(values, config.settings.cache_clear)

    clock.freeze(SECOND)
    yield configure
    clock.freeze(None)
    config.settings.cache_clear()


def _spent(endpoint: str, tries: int, pool: str = stripe_budget.FOREGROUND) -> int:
    admitted = 0
    for _ in range(tries):
        try:
            stripe_budget.take(endpoint, pool)
            admitted += 1
        except DependencyUnavailable as refused:
            assert refused.retry_after == 1 and refused.fields["code"] == "stripe_budget"
    return admitted


@pytest.mark.parametrize("limit", [1, 7, 20, 25, 100])
def test_shards_add_up_to_the_limit(limit):
    caps = stripe_budget.shard_caps(limit)
    assert sum(caps) == limit and len(caps) <= stripe_budget.SHARDS and min(caps) >= 1


def test_no_second_admits_more_than_the_endpoints_rate(budget):
    with budget(total=100, per_endpoint=20):
        admitted = _spent("payment_intents.create", 200)
        assert 0 < admitted <= 20
        clock.freeze(SECOND + timedelta(seconds=1))  # a new second, a new budget
        assert 0 < _spent("payment_intents.create", 200) <= 20


def test_pools_share_the_total_and_background_keeps_its_part(budget):
    with budget(total=10, per_endpoint=100, background_percent=20):
        assert stripe_budget.pool_limit(stripe_budget.FOREGROUND) == 8
        assert stripe_budget.pool_limit(stripe_budget.BACKGROUND) == 2
        foreground = sum(_spent(endpoint, 20) for endpoint in ("payment_intents.create", "payment_intents.cancel"))
        assert foreground <= 8
        assert 0 < _spent("payment_intents.cancel", 20, stripe_budget.BACKGROUND) <= 2


def test_a_checkout_over_the_budget_is_503_with_retry_after_and_holds_nothing(budget, catalogue, stripe_standin):
    buy = Invoker(load_function("checkout"))
    _, event, _ = catalogue(
        "POST", "/api/events/",
        {"name": "Budget", "venue": "Hall", "currency": "usd", "starts_at": "2031-01-01T18:00:00Z", "ends_at": "2031-01-01T22:00:00Z"},
        claims=ADMIN,
    )
    _, ticket_type, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/", {"name": "GA", "price_cents": 900, "capacity": 100}, claims=ADMIN)
    body = {"event_id": event["id"], "items": [{"ticket_type_id": ticket_type["id"], "qty": 2}]}
    with budget(total=100, per_endpoint=1):
        first, _, _ = buy("POST", "/api/tickets/stripe/checkout/", body, claims={"sub": "in-time", "email_verified": "true"})
        status, answer, headers = buy("POST", "/api/tickets/stripe/checkout/", body, claims={"sub": "too-late", "email_verified": "true"})
    assert first == 201
    assert status == 503 and answer["code"] == "stripe_budget" and int(headers["Retry-After"]) >= 1
    shards = list(InventoryShard.scan(InventoryShard.PK.startswith(f"INV#{ticket_type['id']}#")))
    assert sum(int(s.remaining) for s in shards) == 98 and sum(int(s.held) for s in shards) == 2
    assert [o.customer_sub for o in OrderItem.scan(OrderItem.PK.startswith("ORDER#") & (OrderItem.event_id == event["id"]))] == ["in-time"]


def test_a_call_at_a_seconds_edge_is_counted_in_the_next_second_too(budget):
    """Stripe may stamp a call made just before a second ends in the next one: `still`
    spends from that next second as well, so no second's calls exceed its budget."""
    with budget(total=100, per_endpoint=2):
        clock.freeze(SECOND + timedelta(seconds=0.9))
        second = stripe_budget.take("payment_intents.create")
        stripe_budget.still(second, "payment_intents.create")  # 0.1 s left: the next second pays too
        clock.freeze(SECOND + timedelta(seconds=1))
        assert _spent("payment_intents.create", 5) == 1  # one of the next second's two is gone
        clock.freeze(SECOND + timedelta(seconds=2.2))
        second = stripe_budget.take("payment_intents.create")
        stripe_budget.still(second, "payment_intents.create")  # mid-second: nothing more
        assert _spent("payment_intents.create", 5) == 1


def test_a_checkout_refused_by_the_budget_leaves_no_idempotency_record_to_replay(budget, catalogue, stripe_standin):
    """The 503 is not remembered under its Idempotency-Key: the retry after Retry-After,
    with the same key and body, holds the seats and answers 201 (and is replayed after)."""
    buy = Invoker(load_function("checkout"))
    _, event, _ = catalogue(
        "POST", "/api/events/",
        {"name": "Retry", "venue": "Hall", "currency": "usd", "starts_at": "2031-01-01T18:00:00Z", "ends_at": "2031-01-01T22:00:00Z"},
        claims=ADMIN,
    )
    _, ticket_type, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/", {"name": "GA", "price_cents": 900, "capacity": 100}, claims=ADMIN)
    body = {"event_id": event["id"], "items": [{"ticket_type_id": ticket_type["id"], "qty": 2}]}
    claims = {"sub": "retrier", "email_verified": "true"}
    key = {"idempotency-key": "retry-after-503"}
    with budget(total=100, per_endpoint=1):
        clock.freeze(SECOND + timedelta(seconds=0.1))
        assert buy("POST", "/api/tickets/stripe/checkout/", body, claims={"sub": "first", "email_verified": "true"})[0] == 201
        status, answer, headers = buy("POST", "/api/tickets/stripe/checkout/", body, claims=claims, headers=key)
        assert status == 503 and answer["code"] == "stripe_budget" and int(headers["Retry-After"]) == 1
        clock.freeze(SECOND + timedelta(seconds=1.1))  # after Retry-After
        status, first, _ = buy("POST", "/api/tickets/stripe/checkout/", body, claims=claims, headers=key)
        assert status == 201, first
        clock.freeze(SECOND + timedelta(seconds=2.1))
        status, replay, _ = buy("POST", "/api/tickets/stripe/checkout/", body, claims=claims, headers=key)
    assert status == 201 and replay["order_id"] == first["order_id"]
    held = [o for o in OrderItem.scan(OrderItem.PK.startswith("ORDER#") & (OrderItem.event_id == event["id"])) if o.customer_sub == "retrier"]
    assert len(held) == 1
