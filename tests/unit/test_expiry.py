"""Expiring lapsed holds in process (moto, Stripe answered in process): each lapsed order is
claimed once, so overlapping expirers never cancel the same PaymentIntent; the cancels are
paced by the Stripe budget's background share; a run near its timeout takes nothing more."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bench.capacity import FakeStripe
from local.environment import overriding
from tests.unit.conftest import ADMIN, Invoker, load_function
from ticketing import checkout, clock, config, orders, payments

START = datetime(2030, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def lapsed(aws, catalogue, monkeypatch):
    """`lapsed(n)`: n pending orders whose holds lapsed a minute ago (clock frozen)."""
    fake = FakeStripe()
    monkeypatch.setattr(payments, "client", lambda: fake)
    buy = Invoker(load_function("checkout"))

    def make(count: int) -> list[str]:
        clock.freeze(START)
        _, event, _ = catalogue(
            "POST", "/api/events/",
            {"name": "Lapse", "venue": "Hall", "currency": "usd", "starts_at": "2031-01-01T18:00:00Z", "ends_at": "2031-01-01T22:00:00Z"},
            claims=ADMIN,
        )
        _, ticket_type, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/", {"name": "GA", "price_cents": 900, "capacity": 100}, claims=ADMIN)
        made = []
        for n in range(count):
            clock.freeze(START + timedelta(seconds=n))
            status, answer, _ = buy("POST", "/api/tickets/stripe/checkout/",
                                    {"event_id": event["id"], "items": [{"ticket_type_id": ticket_type["id"], "qty": 1}]},
                                    claims={"sub": f"lapser-{n}", "email_verified": "true"})
            assert status == 201, answer
            made.append(answer["order_id"])
        clock.freeze(START + timedelta(minutes=config.settings().hold_minutes + 1))
        return made

    make.stripe = fake
    yield make
    clock.freeze(None)
    config.settings.cache_clear()


def _statuses(order_ids):
    return [orders.get(order_id).status for order_id in order_ids]


def test_an_order_claimed_by_another_expirer_is_left_to_it_until_the_claim_lapses(lapsed):
    made = lapsed(3)
    assert checkout._claim_expiry(made[0])  # another run (or a sold-out checkout) is on it
    assert not checkout._claim_expiry(made[0])
    assert checkout.expire_lapsed(limit=10) == 2
    assert _statuses(made) == ["pending", "expired", "expired"]
    assert lapsed.stripe.requests["payment_intents.cancel"] == 2  # each PaymentIntent cancelled once
    assert checkout.expire_lapsed(limit=10) == 0
    clock.freeze(clock.now() + timedelta(seconds=checkout.CLAIM_SECONDS + 1))  # the other expirer died
    assert checkout.expire_lapsed(limit=10) == 1
    assert _statuses(made) == ["expired"] * 3 and lapsed.stripe.requests["payment_intents.cancel"] == 3


def test_cancels_are_paced_by_the_background_budget(lapsed):
    made = lapsed(5)
    with overriding({"STRIPE_RATE_TOTAL": "10", "STRIPE_RATE_BACKGROUND_PERCENT": "20"}, config.settings.cache_clear):
        first = checkout.expire_lapsed(limit=10)  # inline (no time to wait): what this second allows
        assert 0 < first <= 2
        clock.freeze(clock.now() + timedelta(seconds=1))
        second = checkout.expire_lapsed(limit=10)
        assert 0 < second <= 2
    assert lapsed.stripe.requests["payment_intents.cancel"] == first + second
    assert _statuses(made).count("expired") == first + second


def test_a_run_near_its_timeout_takes_no_more_orders(lapsed):
    made = lapsed(2)
    assert checkout.expire_lapsed(limit=10, time_left=lambda: checkout.MIN_SECONDS_LEFT - 1) == 0
    assert _statuses(made) == ["pending", "pending"] and not lapsed.stripe.requests["payment_intents.cancel"]
    assert checkout.expire_lapsed(limit=10, time_left=lambda: 60) == 2
