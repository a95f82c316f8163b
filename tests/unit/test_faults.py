"""The issue's faults at an on-sale, in process (moto, Stripe answered in process): Stripe
answering 429 to everything, DynamoDB throttling the hottest key (the Stripe budget's
counters, and the inventory shards), a transaction conflict storm. Each checkout is answered
503 with Retry-After, holds nothing, and loses nothing (a lapsed hold's PaymentIntent still
gets canceled once Stripe answers again). `bench.capacity` prints what each costs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bench.capacity import FakeStripe
from bench.faults import CONFLICT, THROTTLED, dynamodb_fault
from tests.unit.conftest import ADMIN, Invoker, load_function
from ticketing import checkout, clock, config, orders, payments, waiting_room
from ticketing.lifecycle import writes
from ticketing.table import HolderCount, InventoryShard, OrderItem

START = datetime(2030, 6, 1, 12, 0, 0, 200_000, tzinfo=timezone.utc)
CAPACITY = 50


@pytest.fixture
def sale(aws, catalogue, monkeypatch):
    fake = FakeStripe()
    monkeypatch.setattr(payments, "client", lambda: fake)
    monkeypatch.setattr(writes, "_pause", lambda attempt: None)
    buy = Invoker(load_function("checkout"))
    clock.freeze(START)
    _, event, _ = catalogue(
        "POST", "/api/events/",
        {"name": "Faults", "venue": "Hall", "currency": "usd", "starts_at": "2031-01-01T18:00:00Z", "ends_at": "2031-01-01T22:00:00Z"},
        claims=ADMIN,
    )
    _, ticket_type, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/",
                                  {"name": "GA", "price_cents": 900, "capacity": CAPACITY}, claims=ADMIN)

    def attempt(sub: str, same_second: bool = False) -> tuple[int, dict, dict]:
        if not same_second:
            # a second of its own (after any the test moved to): within the budget
            clock.freeze(clock.now().replace(microsecond=START.microsecond) + timedelta(seconds=1))
        return buy("POST", "/api/tickets/stripe/checkout/",
                   {"event_id": event["id"], "items": [{"ticket_type_id": ticket_type["id"], "qty": 2}]},
                   claims={"sub": sub, "email_verified": "true"}, headers={"idempotency-key": f"key-{sub}"})

    def nothing_held(sub: str) -> None:
        shards = list(InventoryShard.scan(InventoryShard.PK.startswith(f"INV#{ticket_type['id']}#")))
        assert sum(int(s.held) for s in shards) == 0 and sum(int(s.remaining) for s in shards) == CAPACITY
        try:
            assert int(HolderCount.get(*HolderCount.key(sub, event["id"]), consistent_read=True).held or 0) == 0
        except HolderCount.DoesNotExist:
            pass
        pending = [o for o in OrderItem.scan(OrderItem.PK.startswith("ORDER#") & (OrderItem.event_id == event["id"]))
                   if o.status == "pending"]
        assert pending == []

    yield {"attempt": attempt, "nothing_held": nothing_held, "stripe": fake}
    clock.freeze(None)
    config.settings.cache_clear()


def _unavailable(answer: tuple[int, dict, dict], code: str) -> None:
    status, body, headers = answer
    assert status == 503 and body["code"] == code and int(headers["Retry-After"]) >= 1, answer
    assert set(body) >= {"error", "detail"}


def test_stripe_answering_429_to_everything(sale):
    made = sale["attempt"]("early")  # a hold from before Stripe started refusing, to lapse during it
    assert made[0] == 201
    sale["stripe"].throttled = True
    _unavailable(sale["attempt"]("throttled"), "stripe_rate_limited")
    # Stripe's 429 spends the rest of the budget (this second and the next): the next buyer
    # in that second is answered by the budget without calling Stripe, and the waiting room
    # sees the pressure and slows.
    calls = sum(sale["stripe"].requests.values())
    _unavailable(sale["attempt"]("throttled", same_second=True), "stripe_budget")
    assert sum(sale["stripe"].requests.values()) == calls
    assert waiting_room.stripe_pressure(clock.now().timestamp() + 1)
    assert waiting_room.stripe_pressure(clock.now().timestamp() + 2)
    # The lapsed hold: its seats come back without Stripe; its cancel waits, nothing is lost.
    clock.freeze(clock.now() + timedelta(minutes=config.settings().hold_minutes + 1))
    assert checkout.expire_lapsed(limit=10) == 1
    assert checkout.cancel_released(limit=10) == 0
    waiting = orders.get(made[1]["order_id"])
    assert waiting.status == "expired" and waiting.GSI2PK.startswith("UNCANCELED#")
    sale["nothing_held"]("throttled")
    sale["stripe"].throttled = False
    clock.freeze(clock.now() + timedelta(seconds=checkout.CLAIM_SECONDS + 1))
    assert checkout.cancel_released(limit=10) == 1
    assert sale["stripe"].intents[made[1]["payment_intent_id"]]["status"] == "canceled"
    retry = sale["attempt"]("throttled")
    assert retry[0] == 201, retry  # the retry, with the same Idempotency-Key


@pytest.mark.parametrize("operations", [("BatchGetItem",), ("UpdateItem",)])
def test_dynamodb_throttling_the_hottest_key_the_budgets_counters(sale, operations):
    with dynamodb_fault(operations, "RATE#", THROTTLED) as failed:
        answer = sale["attempt"]("throttled")
    assert failed["calls"] >= 1
    _unavailable(answer, "dependency_unavailable" if operations == ("BatchGetItem",) else "stripe_budget_unavailable")
    assert not sale["stripe"].requests  # Stripe never asked
    sale["nothing_held"]("throttled")
    assert sale["attempt"]("throttled")[0] == 201


def test_dynamodb_throttling_the_inventory_shards(sale):
    with dynamodb_fault(("TransactWriteItems",), "INV#", THROTTLED):
        answer = sale["attempt"]("throttled")
    _unavailable(answer, "contention")
    assert not sale["stripe"].requests
    sale["nothing_held"]("throttled")


def test_a_transaction_conflict_storm(sale):
    with dynamodb_fault(("TransactWriteItems",), "INV#", CONFLICT) as failed:
        answer = sale["attempt"]("stormed")
    assert failed["calls"] == writes.ATTEMPTS  # retried, then given up
    _unavailable(answer, "contention")
    assert not sale["stripe"].requests
    sale["nothing_held"]("stormed")
    assert sale["attempt"]("stormed")[0] == 201
