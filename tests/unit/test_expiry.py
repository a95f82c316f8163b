"""Expiring lapsed holds in process (moto, Stripe answered in process), release-first: the
seats of each lapsed order go back without a Stripe call (each order claimed once, so
overlapping expirers never release or cancel the same one twice); the released orders'
PaymentIntents are canceled afterwards, paced by the Stripe budget's background share; a
run near its timeout takes nothing more."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bench.capacity import FakeStripe
from local.environment import overriding
from tests.unit.conftest import ADMIN, Invoker, load_function
from ticketing import checkout, clock, config, orders, payments
from ticketing.table import InventoryShard

START = datetime(2030, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def lapsed(aws, catalogue, monkeypatch):
    """`lapsed(n)`: n pending orders whose holds lapsed a minute ago (clock frozen)."""
    fake = FakeStripe()
    monkeypatch.setattr(payments, "client", lambda: fake)
    buy = Invoker(load_function("checkout"))

    def make(count: int, capacity: int = 100) -> list[str]:
        clock.freeze(START)
        _, event, _ = catalogue(
            "POST", "/api/events/",
            {"name": "Lapse", "venue": "Hall", "currency": "usd", "starts_at": "2031-01-01T18:00:00Z", "ends_at": "2031-01-01T22:00:00Z"},
            claims=ADMIN,
        )
        _, ticket_type, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/",
                                      {"name": "GA", "price_cents": 900, "capacity": capacity}, claims=ADMIN)
        make.type_id = ticket_type["id"]
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


def _waiting(order_ids):
    """Which of the orders wait for their PaymentIntent's cancel (the UNCANCELED index)."""
    return [bool((orders.get(order_id).GSI2PK or "").startswith("UNCANCELED#")) for order_id in order_ids]


def _held(type_id: str) -> int:
    return sum(int(s.held) for s in InventoryShard.scan(InventoryShard.PK.startswith(f"INV#{type_id}#")))


def test_seats_go_back_before_any_stripe_call_and_the_cancels_follow(lapsed):
    made = lapsed(3)
    assert checkout.expire_lapsed(limit=10) == 3
    assert _statuses(made) == ["expired"] * 3 and _held(lapsed.type_id) == 0
    assert not lapsed.stripe.requests["payment_intents.cancel"]  # the release asks Stripe nothing
    assert _waiting(made) == [True] * 3 and orders.lapsed(10) == []
    assert checkout.cancel_released(limit=10) == 3
    assert lapsed.stripe.requests["payment_intents.cancel"] == 3
    assert _waiting(made) == [False] * 3
    assert [orders.get(o).payment.status for o in made] == ["canceled"] * 3
    assert checkout.cancel_released(limit=10) == 0 and lapsed.stripe.requests["payment_intents.cancel"] == 3


def test_an_order_claimed_by_another_expirer_is_left_to_it_until_the_claim_lapses(lapsed):
    made = lapsed(3)
    assert checkout._claim(made[0])  # another run (or a sold-out checkout) is on it
    assert not checkout._claim(made[0])
    assert checkout.expire_lapsed(limit=10) == 2
    assert _statuses(made) == ["pending", "expired", "expired"]
    assert checkout.expire_lapsed(limit=10) == 0
    assert checkout._claim(made[1], "CANCEL")  # another run is canceling this one's PaymentIntent
    assert checkout.cancel_released(limit=10) == 1
    assert lapsed.stripe.requests["payment_intents.cancel"] == 1  # each PaymentIntent canceled once
    clock.freeze(clock.now() + timedelta(seconds=checkout.CLAIM_SECONDS + 1))  # the other expirer died
    assert checkout.expire_lapsed(limit=10) == 1
    assert checkout.cancel_released(limit=10) == 2
    assert _statuses(made) == ["expired"] * 3 and lapsed.stripe.requests["payment_intents.cancel"] == 3


def test_a_hold_is_released_only_after_its_grace(lapsed):
    made = lapsed(1)
    expires = datetime.fromisoformat(orders.get(made[0]).expires_at.replace("Z", "+00:00"))
    clock.freeze(expires + timedelta(seconds=checkout.GRACE_SECONDS - 1))  # a payment's webhook may be on its way
    assert checkout.expire_lapsed(limit=10) == 0
    clock.freeze(expires + timedelta(seconds=checkout.GRACE_SECONDS + 1))
    assert checkout.expire_lapsed(limit=10) == 1


def test_a_run_releases_up_to_its_limit_page_by_page(lapsed, monkeypatch):
    monkeypatch.setattr(checkout, "PAGE", 2)
    made = lapsed(7)
    assert checkout.expire_lapsed(limit=5) == 5
    assert _statuses(made).count("expired") == 5
    assert checkout.expire_lapsed(limit=5) == 2
    assert checkout.cancel_released(limit=4) == 4 and checkout.cancel_released(limit=4) == 3


def test_cancels_are_paced_by_the_background_budget(lapsed):
    made = lapsed(5)
    assert checkout.expire_lapsed(limit=10) == 5  # the seats do not wait for the budget
    with overriding({"STRIPE_RATE_TOTAL": "10", "STRIPE_RATE_BACKGROUND_PERCENT": "20"}, config.settings.cache_clear):
        first = checkout.cancel_released(limit=10)  # no time to wait: what this second allows
        assert 0 < first <= 2
        clock.freeze(clock.now() + timedelta(seconds=1))
        second = checkout.cancel_released(limit=10)
        assert 0 < second <= 2
    assert lapsed.stripe.requests["payment_intents.cancel"] == first + second
    assert _waiting(made).count(False) == first + second


def test_a_run_near_its_timeout_takes_no_more_orders(lapsed):
    made = lapsed(2)
    short = lambda: checkout.MIN_SECONDS_LEFT - 1  # noqa: E731
    assert checkout.expire_lapsed(limit=10, time_left=short) == 0
    assert _statuses(made) == ["pending", "pending"]
    assert checkout.expire_lapsed(limit=10, time_left=lambda: 60) == 2
    assert checkout.cancel_released(limit=10, time_left=short) == 0 and not lapsed.stripe.requests["payment_intents.cancel"]
    assert checkout.cancel_released(limit=10, time_left=lambda: 60) == 2


def test_a_payment_that_got_through_before_the_cancel_is_left_to_its_webhook(lapsed):
    made = lapsed(2)
    assert checkout.expire_lapsed(limit=10) == 2
    lapsed.stripe.pay(orders.get(made[0]).payment.payment_intent_id)  # paid after the release, before the cancel
    assert checkout.cancel_released(limit=10) == 1
    paid = orders.get(made[0])
    assert paid.status == "expired" and paid.payment.status == "succeeded" and not _waiting(made)[0]
    assert checkout.cancel_released(limit=10) == 0  # not asked about again: its webhook pays it late or refunds it


def test_the_scheduled_job_releases_then_cancels(lapsed):
    made = lapsed(3)

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "expire", 512, "req-1"
        invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:expire"

        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 50_000

    job = load_function("expire_holds")
    monkey_workers = job.WORKERS
    try:
        job.WORKERS = 1  # moto in process is not thread-safe
        answer = job.lambda_handler({}, Context())
        assert (answer["expired"], answer["canceled"]) == (3, 3) and answer["release_seconds"] >= 0
    finally:
        job.WORKERS = monkey_workers
    assert _statuses(made) == ["expired"] * 3 and _waiting(made) == [False] * 3
