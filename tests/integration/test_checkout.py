"""Checkout over HTTP on the local stack: holds that never oversell, payments that match
the order, retries, cancels, expiry, and Stripe failing."""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import stripe

from local import stack as stack_module
from tests.integration.support import wait_for

CHECKOUT = "/api/tickets/stripe/checkout/"


# ------------------------------------------------------------------ helpers
def buy(api, token, event_id, items, **headers):
    body = {"event_id": event_id, "items": [{"ticket_type_id": t, "qty": q} for t, q in items]}
    return api.post(CHECKOUT, token=token, json=body, headers=headers)


def shards(stack, type_id):
    """(remaining, held, sold, capacity) summed over a type's shards, read from the table."""
    items = stack.shards(type_id)
    assert items and all(item["remaining"] >= 0 for item in items)
    total = lambda name: sum(item[name] for item in items)  # noqa: E731
    return total("remaining"), total("held"), total("sold"), total("capacity")


def available(api, event_id, type_id):
    event = api.get(f"/api/events/{event_id}/").json()
    return next(t["available"] for t in event["ticket_types"] if t["id"] == type_id)


def holder_count(stack, sub, event_id):
    item = stack.client("dynamodb").get_item(
        TableName=stack_module.TABLE, Key={"PK": {"S": f"HOLDER#{sub}"}, "SK": {"S": f"EVENT#{event_id}"}}, ConsistentRead=True
    ).get("Item")
    return int(item["held"]["N"]) if item else 0


def stripe_client(stack):
    return stripe.StripeClient(stack_module.STRIPE_KEYS["secret_key"], base_addresses={"api": stack.stripe_url})


def lapse(stack, order_id):
    """Move an order's hold into the past, as if its 15 minutes had gone by."""
    past = "2000-01-01T00:00:00Z"
    stack.client("dynamodb").update_item(
        TableName=stack_module.TABLE, Key={"PK": {"S": f"ORDER#{order_id}"}, "SK": {"S": "META"}},
        UpdateExpression="SET expires_at = :e, GSI2SK = :s",
        ExpressionAttributeValues={":e": {"S": past}, ":s": {"S": f"{past}#{order_id}"}},
    )


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


def test_concurrent_buyers_never_oversell(api, stack, make_event):
    event_id, types = make_event({"A": (1000, 23), "B": (500, 17)})
    tokens = [api.token([], sub=f"rush-{i}-{uuid.uuid4().hex[:4]}") for i in range(12)]
    rng = random.Random(7)
    plans = [[(rng.choice(["A", "AB", "B"]), rng.randint(1, 4), rng.random() < 0.25) for _ in range(4)] for _ in tokens]
    outcomes, lock = [], threading.Lock()

    def shopper(index):
        for kinds, qty, cancel in plans[index]:
            items = [(types[k], qty) for k in kinds]
            answer = buy(api, tokens[index], event_id, items)
            with lock:
                outcomes.append((answer.status_code, answer.json(), items))
            if answer.status_code == 201 and cancel:
                assert api.post(f"/api/orders/{answer.json()['order_id']}/cancel/", token=tokens[index]).status_code == 200
                with lock:
                    outcomes.append(("canceled", answer.json(), items))

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        list(pool.map(shopper, range(len(tokens))))

    statuses = {status for status, _, _ in outcomes}
    assert statuses <= {201, 409, 429, "canceled"}, statuses
    assert any(status == 409 for status, _, _ in outcomes), "the rush should sell something out"
    for status, body, _ in outcomes:
        if status == 409:
            assert body["error"] == "Not enough tickets available"
            assert body["detail"].startswith("Only ") and " tickets remaining for " in body["detail"]
    canceled = {body["order_id"] for status, body, _ in outcomes if status == "canceled"}
    for name, capacity in (("A", 23), ("B", 17)):
        held_by_orders = sum(
            qty for status, body, items in outcomes if status == 201 and body["order_id"] not in canceled
            for type_id, qty in items if type_id == types[name]
        )
        remaining, held, sold, total = shards(stack, types[name])
        assert total == capacity
        assert held == held_by_orders and sold == 0
        assert remaining + held == capacity
        assert available(api, event_id, types[name]) == remaining


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
    # release-first: the seats came back before the cancel, which the same run makes next
    assert wait_for(lambda: stripe_client(stack).v1.payment_intents.retrieve(order["payment_intent_id"]).status == "canceled",
                    timeout=60, interval=0.5)
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


# Which baskets are refused, and how, is tested in process: tests/unit/test_checkout_baskets.py.


def test_malformed_json_and_no_token(api):
    assert api.post(CHECKOUT, token=api.token([]), data="{", headers={"Content-Type": "application/json"}).status_code == 400
    assert api.post(CHECKOUT, json={}).json() == {"message": "Unauthorized"}


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
    assert buy(api, api.token([], sub=sub), event_id, [(types["GA"], 4)]).status_code == 201


def test_a_lapsed_hold_expires_on_the_schedule(api, stack, make_event):
    event_id, types = make_event({"GA": (1000, 10)})
    sub = f"slow-{uuid.uuid4().hex[:6]}"
    token = api.token([], sub=sub)
    order = buy(api, token, event_id, [(types["GA"], 4)]).json()
    lapse(stack, order["order_id"])
    # the stack runs the schedule every 15 s
    shown = wait_for(lambda: (o := api.get(f"/api/orders/{order['order_id']}/", token=token).json())["status"] != "pending" and o,
                     timeout=60, interval=0.5)
    assert shown and shown["status"] == "expired"
    assert available(api, event_id, types["GA"]) == 10 and holder_count(stack, sub, event_id) == 0
    # release-first: the seats came back before the cancel, which the same run makes next
    assert wait_for(lambda: stripe_client(stack).v1.payment_intents.retrieve(order["payment_intent_id"]).status == "canceled",
                    timeout=60, interval=0.5)


def test_overlapping_expiry_runs_release_each_hold_once(api, stack, make_event):
    event_id, types = make_event({"GA": (1000, 12)})
    orders = [buy(api, api.token([]), event_id, [(types["GA"], 3)]).json() for _ in range(3)]
    for order in orders:
        lapse(stack, order["order_id"])

    def run_expiry(_):
        answer = requests.post(f"{stack.api_url}/_local/invoke/ExpireHoldsFunction", json={}, timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.json()["expired"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(run_expiry, range(4)))
    remaining, held, _, capacity = shards(stack, types["GA"])
    assert (remaining, held) == (12, 0), "a hold was released twice or not at all"
    assert available(api, event_id, types["GA"]) == 12


def test_checkout_reclaims_lapsed_holds_instead_of_answering_sold_out(api, stack, make_event):
    event_id, types = make_event({"Last": (1000, 2)})
    first_token = api.token([])
    first = buy(api, first_token, event_id, [(types["Last"], 2)]).json()
    lapse(stack, first["order_id"])
    second = buy(api, api.token([]), event_id, [(types["Last"], 2)])
    assert second.status_code == 201, second.text
    assert api.get(f"/api/orders/{first['order_id']}/", token=first_token).json()["status"] == "expired"
    assert shards(stack, types["Last"])[:2] == (0, 2)


def test_dynamodb_throttling_during_checkout_is_503_and_holds_nothing(api, stack, make_event, aws_faults):
    event_id, types = make_event({"GA": (1000, 20)})
    sub = f"throttled-{uuid.uuid4().hex[:6]}"
    aws_faults(service="dynamodb", operation="TransactWriteItems", status=400,
               code="ProvisionedThroughputExceededException", count=-1)
    answer = buy(api, api.token([], sub=sub), event_id, [(types["GA"], 3)])
    assert answer.status_code == 503 and answer.headers.get("Retry-After")
    assert set(answer.json()) >= {"error", "detail"}
    aws_faults.clear()
    assert available(api, event_id, types["GA"]) == 20 and holder_count(stack, sub, event_id) == 0


def test_a_conditional_check_storm_still_never_oversells(api, stack, make_event, aws_faults):
    """Every other transaction is cancelled as if by a conflicting writer: checkout retries
    from fresh reads, and what it sells still adds up."""
    event_id, types = make_event({"GA": (1000, 12)})
    aws_faults(service="dynamodb", operation="TransactWriteItems", status=400, code="TransactionConflictException", count=6)
    tokens = [api.token([]) for _ in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda token: buy(api, token, event_id, [(types["GA"], 2)]), tokens))
    assert {a.status_code for a in answers} <= {201, 503}
    sold = sum(2 for a in answers if a.status_code == 201)
    remaining, held, _, capacity = shards(stack, types["GA"])
    assert held == sold and remaining + held == capacity == 12


def test_stripe_slower_than_the_timeout_is_502_and_holds_nothing(api, stack, make_event, stripe_faults):
    event_id, types = make_event({"GA": (1000, 20)})
    sub = f"slow-stripe-{uuid.uuid4().hex[:6]}"
    stripe_faults("slow", delay=9, count=2)
    answer = buy(api, api.token([], sub=sub), event_id, [(types["GA"], 2)])
    assert answer.status_code == 502, answer.text
    assert available(api, event_id, types["GA"]) == 20 and holder_count(stack, sub, event_id) == 0
