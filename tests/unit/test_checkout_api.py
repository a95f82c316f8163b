"""Checkout rules in process (tests/unit/world.py): holds that match the PaymentIntent,
sold out, cancels, other customers' orders, idempotency keys, the hold cap, types off
sale, Stripe failing, and lapsed holds reclaimed. Buyers at once, the schedule, the
expiry function run concurrently, DynamoDB faults and a Stripe slower than the client's
timeout go through the local stack (tests/integration/test_checkout.py)."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.shop import available, buy, holder_count, lapse, shards, stripe_client


# -------------------------------------------------------------------- tests
def test_checkout_holds_seats_and_creates_a_matching_payment_intent(api, stack, make_event):
    event_id, types = make_event({"GA": (2500, 40), "VIP": (9900, 5)})
    token = api.token([], sub=f"buyer-{uuid.uuid4().hex[:6]}")
    answer = buy(api, token, event_id, [(types["GA"], 2), (types["VIP"], 1)])
    assert answer.status_code == 201, answer.text
    order = answer.json()
    assert order["total_cents"] == 2 * 2500 + 9900 and order["currency"] == "usd"
    assert order["status"] == "requires_payment_method" and order["client_secret"].startswith(order["payment_intent_id"])
    assert sorted(t["price_cents"] for t in order["tickets"]) == [2500, 2500, 9900]
    assert all(t["serial"].startswith("TKT-") and len(t["serial"]) == 12 for t in order["tickets"])
    assert order["expires_at"].endswith("Z")

    intent = stripe_client(stack).v1.payment_intents.retrieve(order["payment_intent_id"])
    assert intent.amount == order["total_cents"] and intent.currency == "usd"
    assert intent.metadata["order_id"] == order["order_id"] and intent.metadata["event_id"] == event_id

    assert available(api, event_id, types["GA"]) == 38 and available(api, event_id, types["VIP"]) == 4
    shown = api.get(f"/api/orders/{order['order_id']}/", token=token).json()
    assert shown["status"] == "pending" and shown["payment"]["payment_intent_id"] == order["payment_intent_id"]
    assert {t["status"] for t in shown["tickets"]} == {"pending"} and shown["refunded_cents"] == 0


def test_sold_out_names_the_type_and_holds_nothing(api, stack, make_event):
    event_id, types = make_event({"Balcony": (4000, 3)})
    first = buy(api, api.token([]), event_id, [(types["Balcony"], 2)])
    assert first.status_code == 201
    buyer = f"late-{uuid.uuid4().hex[:6]}"
    answer = buy(api, api.token([], sub=buyer), event_id, [(types["Balcony"], 2)])
    assert answer.status_code == 409
    assert answer.json()["error"] == "Not enough tickets available"
    assert answer.json()["detail"] == "Only 1 tickets remaining for Balcony"
    assert available(api, event_id, types["Balcony"]) == 1
    assert holder_count(stack, buyer, event_id) == 0


def test_cancel_releases_seats_and_cancels_the_payment_intent(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 10)})
    sub = f"canceller-{uuid.uuid4().hex[:6]}"
    token = api.token([], sub=sub)
    order = buy(api, token, event_id, [(types["GA"], 3)]).json()
    assert api.post(f"/api/orders/{order['order_id']}/cancel/", token=api.token([])).status_code == 404
    answer = api.post(f"/api/orders/{order['order_id']}/cancel/", token=token)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "canceled"
    assert {t["status"] for t in answer.json()["tickets"]} == {"void"}
    assert available(api, event_id, types["GA"]) == 10 and holder_count(stack, sub, event_id) == 0
    assert stripe_client(stack).v1.payment_intents.retrieve(order["payment_intent_id"]).status == "canceled"
    again = api.post(f"/api/orders/{order['order_id']}/cancel/", token=token)
    assert again.status_code == 409 and again.json()["code"] == "order_canceled"
    assert available(api, event_id, types["GA"]) == 10


def test_another_customers_order_is_404_and_admins_see_it(api, make_event):
    event_id, types = make_event({"GA": (1500, 10)})
    token = api.token([])
    order = buy(api, token, event_id, [(types["GA"], 1)]).json()
    stranger = api.get(f"/api/orders/{order['order_id']}/", token=api.token([]))
    assert stranger.status_code == 404 and stranger.json()["error"] == "Not found"
    assert api.get(f"/api/orders/{order['order_id']}/", token=api.token(["admin"])).status_code == 200
    assert api.get("/api/orders/or_nope/", token=token).status_code == 404


def test_idempotency_key_replays_the_same_order_and_refuses_another_body(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 10)})
    sub = f"retrier-{uuid.uuid4().hex[:6]}"
    token = api.token([], sub=sub)
    key = uuid.uuid4().hex
    first = buy(api, token, event_id, [(types["GA"], 2)], **{"Idempotency-Key": key})
    again = buy(api, token, event_id, [(types["GA"], 2)], **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert available(api, event_id, types["GA"]) == 8 and holder_count(stack, sub, event_id) == 2
    other = buy(api, token, event_id, [(types["GA"], 3)], **{"Idempotency-Key": key})
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
    # The key is the caller's own: another customer with the same key gets a new order.
    stranger = buy(api, api.token([]), event_id, [(types["GA"], 2)], **{"Idempotency-Key": key})
    assert stranger.status_code == 201 and stranger.json()["order_id"] != first.json()["order_id"]
    # Without a key, a retry is a new order.
    assert buy(api, token, event_id, [(types["GA"], 1)]).json()["order_id"] != first.json()["order_id"]
    assert available(api, event_id, types["GA"]) == 5


def test_one_customer_cannot_hold_more_than_the_cap(api, stack, make_event):
    event_id, types = make_event({"GA": (1000, 100)})
    sub = f"bot-{uuid.uuid4().hex[:6]}"
    token = api.token([], sub=sub)
    assert buy(api, token, event_id, [(types["GA"], 10)]).status_code == 201
    refused = buy(api, token, event_id, [(types["GA"], 3)])
    assert refused.status_code == 429 and refused.json()["code"] == "too_many_holds"
    assert available(api, event_id, types["GA"]) == 90 and holder_count(stack, sub, event_id) == 10
    assert buy(api, token, event_id, [(types["GA"], 2)]).status_code == 201  # up to the cap (12)


def test_ticket_type_off_sale_is_refused(api, make_event):
    from datetime import datetime, timedelta, timezone

    event_id, _ = make_event({})
    later = datetime.now(timezone.utc) + timedelta(days=1)
    created = api.post(
        f"/api/events/{event_id}/ticket-types/", token=api.token(["admin"]),
        json={"name": "Early", "price_cents": 100, "capacity": 5, "sales_start": later.strftime("%Y-%m-%dT%H:%M:%SZ")},
    ).json()
    answer = buy(api, api.token([]), event_id, [(created["id"], 1)])
    assert answer.status_code == 422 and "not on sale" in answer.json()["detail"]


@pytest.mark.parametrize(("fault", "status"), [(500, 502), ("drop", 502), (429, 503)])
def test_stripe_failing_answers_the_documented_error_and_holds_nothing(api, stack, make_event, stripe_faults, fault, status):
    event_id, types = make_event({"GA": (1000, 20)})
    sub = f"unlucky-{uuid.uuid4().hex[:6]}"
    stripe_faults(fault)
    answer = buy(api, api.token([], sub=sub), event_id, [(types["GA"], 4)])
    assert answer.status_code == status, answer.text
    assert set(answer.json()) >= {"error", "detail"}
    if status == 503:
        assert int(answer.headers["Retry-After"]) >= 1
    assert available(api, event_id, types["GA"]) == 20 and holder_count(stack, sub, event_id) == 0
    stripe_faults.clear()
    # Stripe's 429 spent the rest of that second's and the next second's budget: a client
    # that honours Retry-After gets through once those seconds are past
    for _ in range(3):
        again = buy(api, api.token([], sub=sub), event_id, [(types["GA"], 4)])
        if again.status_code != 503:
            break
        assert fault == 429 and again.json()["code"] == "stripe_budget", again.text
        assert available(api, event_id, types["GA"]) == 20 and holder_count(stack, sub, event_id) == 0
        time.sleep(int(again.headers["Retry-After"]))
    assert again.status_code == 201, again.text


def test_checkout_reclaims_lapsed_holds_instead_of_answering_sold_out(api, stack, make_event):
    event_id, types = make_event({"Last": (1000, 2)})
    first_token = api.token([])
    first = buy(api, first_token, event_id, [(types["Last"], 2)]).json()
    lapse(stack, first["order_id"])
    second = buy(api, api.token([]), event_id, [(types["Last"], 2)])
    assert second.status_code == 201, second.text
    assert api.get(f"/api/orders/{first['order_id']}/", token=first_token).json()["status"] == "expired"
    assert shards(stack, types["Last"])[:2] == (0, 2)
