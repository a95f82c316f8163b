"""Stripe unreachable at checkout (nothing listening where it should be): 502 in our
error format, and no seat stays held. In process: the point is the rule, not HTTP."""

from __future__ import annotations

import pytest

from local.ports import free_port
from tests.unit.conftest import ADMIN, Invoker, load_function


@pytest.fixture
def stripe_unreachable(monkeypatch):
    from ticketing import payments

    monkeypatch.setenv("STRIPE_API_BASE", f"http://127.0.0.1:{free_port()}")
    payments._client.cache_clear()
    yield
    payments._client.cache_clear()


def test_stripe_unreachable_answers_502_and_holds_nothing(aws, catalogue, stripe_unreachable):
    _, event, _ = catalogue(
        "POST", "/api/events/",
        {"name": "Dark", "venue": "Hall", "currency": "usd", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T22:00:00Z"},
        claims=ADMIN,
    )
    _, ticket_type, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/",
                                  {"name": "GA", "price_cents": 500, "capacity": 40}, claims=ADMIN)
    buy = Invoker(load_function("checkout"))
    body = {"event_id": event["id"], "items": [{"ticket_type_id": ticket_type["id"], "qty": 2}]}
    status, answer, _ = buy("POST", "/api/tickets/stripe/checkout/", body, claims={"sub": "nobody-home"})
    assert status == 502 and answer["error"] == "Payment processing error" and answer["detail"]
    _, shown, _ = catalogue("GET", f"/api/events/{event['id']}/")
    assert shown["ticket_types"][0]["available"] == 40
