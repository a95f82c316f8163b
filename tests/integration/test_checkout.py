"""Checkout through the local stack: buyers at once never oversell, a malformed body and a
missing token at the edge, holds lapsing on the stack's schedule, expiry runs at once,
DynamoDB throttling and conflict storms (injected into the AWS stand-in), and a Stripe
slower than the client's timeout. The checkout rules themselves are tested in process:
tests/unit/test_checkout_api.py and tests/unit/test_checkout_baskets.py. The helpers here
are shared by the other integration modules."""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.integration.support import wait_for
from tests.shop import CHECKOUT, available, buy, holder_count, lapse, shards, stripe_client  # noqa: F401 - shared with the other integration modules


# ------------------------------------------------------------------ helpers
# -------------------------------------------------------------------- tests
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


def test_malformed_json_and_no_token(api):
    assert api.post(CHECKOUT, token=api.token([]), data="{", headers={"Content-Type": "application/json"}).status_code == 400
    assert api.post(CHECKOUT, json={}).json() == {"message": "Unauthorized"}


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
