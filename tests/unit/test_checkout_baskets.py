"""What checkout refuses, in process (the rule is the point, not HTTP; the gateway's own
path is covered in tests/integration): bad baskets, each a 4xx naming the field, and
Stripe unreachable, a 502; nothing held either way."""

from __future__ import annotations

import uuid

import boto3
import pytest

from local.ports import free_port
from tests.unit.conftest import ADMIN, Invoker, load_function

CHECKOUT = "/api/tickets/stripe/checkout/"


@pytest.fixture
def event(aws, catalogue):
    """An event on sale with one type A of 50 seats at $10: (event id, type id)."""
    _, made, _ = catalogue(
        "POST", "/api/events/",
        {"name": "Baskets", "venue": "Hall", "currency": "usd", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T22:00:00Z"},
        claims=ADMIN,
    )
    _, ticket_type, _ = catalogue("POST", f"/api/events/{made['id']}/ticket-types/",
                                  {"name": "A", "price_cents": 1000, "capacity": 50}, claims=ADMIN)
    return made["id"], ticket_type["id"]


def held_by(sub: str, event_id: str) -> int:
    item = boto3.client("dynamodb").get_item(
        TableName="ticketing-test", Key={"PK": {"S": f"HOLDER#{sub}"}, "SK": {"S": f"EVENT#{event_id}"}}, ConsistentRead=True
    ).get("Item")
    return int(item["held"]["N"]) if item else 0


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"event_id": "ev_nope", "items": [{"ticket_type_id": "x", "qty": 1}]}, 422, "event_id"),
        ({"items": [{"ticket_type_id": "{A}", "qty": 1}]}, 422, "event_id"),
        ({"event_id": "{E}", "items": []}, 422, "items"),
        ({"event_id": "{E}"}, 422, "items"),
        ({"event_id": "{E}", "items": [{"ticket_type_id": "tt_other", "qty": 1}]}, 422, "items.0.ticket_type_id"),
        ({"event_id": "{E}", "items": [{"ticket_type_id": "{A}", "qty": 0}]}, 422, "items.0.qty"),
        ({"event_id": "{E}", "items": [{"ticket_type_id": "{A}", "qty": 11}]}, 422, "items.0.qty"),
        ({"event_id": "{E}", "items": [{"ticket_type_id": "{A}", "qty": "2"}]}, 422, "items.0.qty"),
        ({"event_id": "{E}", "items": [{"ticket_type_id": "{A}", "qty": 1.5}]}, 422, "items.0.qty"),
        ({"event_id": "{E}", "items": [{"ticket_type_id": "{A}", "qty": 1}, {"ticket_type_id": "{A}", "qty": 1}]}, 422, "items.1.ticket_type_id"),
        ({"event_id": "{E}", "items": [{"ticket_type_id": "{A}", "qty": 1}] * 11}, 422, "items"),
        ({"event_id": "{E}", "fixture_id": "fx_nope", "items": [{"ticket_type_id": "{A}", "qty": 1}]}, 422, "fixture_id"),
        ({"event_id": "{E}", "items": [{"ticket_type_id": "{A}", "qty": 1}], "total_cents": 1}, 201, None),
        ([1, 2], 422, "body"),
    ],
)
def test_bad_baskets_are_4xx_naming_the_field_and_hold_nothing(event, catalogue, stripe_standin, body, status, field):
    event_id, type_id = event
    text = str(body).replace("'", '"').replace("{E}", event_id).replace("{A}", type_id)
    sub = f"bad-{uuid.uuid4().hex[:6]}"
    code, answer, _ = Invoker(load_function("checkout"))("POST", CHECKOUT, raw_body=text, claims={"sub": sub, "email_verified": "true"})
    assert code == status, answer
    if status == 201:  # a client-sent total is ignored: the stored price counts
        assert answer["total_cents"] == 1000
        return
    assert set(answer) >= {"error", "detail"} and answer["field"] == field
    _, shown, _ = catalogue("GET", f"/api/events/{event_id}/")
    assert shown["ticket_types"][0]["available"] == 50 and held_by(sub, event_id) == 0


@pytest.fixture
def stripe_unreachable(monkeypatch):
    """Nothing listening where Stripe should be."""
    from ticketing import payments

    monkeypatch.setenv("STRIPE_API_BASE", f"http://127.0.0.1:{free_port()}")
    payments._client.cache_clear()
    yield
    payments._client.cache_clear()


def test_stripe_unreachable_answers_502_and_holds_nothing(event, catalogue, stripe_unreachable):
    event_id, type_id = event
    body = {"event_id": event_id, "items": [{"ticket_type_id": type_id, "qty": 2}]}
    status, answer, _ = Invoker(load_function("checkout"))("POST", CHECKOUT, body, claims={"sub": "nobody-home", "email_verified": "true"})
    assert status == 502 and answer["error"] == "Payment processing error" and answer["detail"]
    _, shown, _ = catalogue("GET", f"/api/events/{event_id}/")
    assert shown["ticket_types"][0]["available"] == 50 and held_by("nobody-home", event_id) == 0
