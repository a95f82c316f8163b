"""Fees and free tickets end to end on the local stack: a free order paid with no card
(receipt through the queue, canceled with its seats back), an order with fees charged the
right amount at the Stripe stand-in and settled by the webhook, and one customer's
concurrent checkouts held to the event's per-customer limit. The rules themselves are
tested in process (tests/unit/test_fees.py, tests/unit/test_fees_and_free.py)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from local import stack as stack_module
from tests.integration.support import wait_for
from tests.integration.test_checkout import CHECKOUT, buy, shards
from tests.integration.test_webhook import order_of, pay, receipts_for

SK = stack_module.STRIPE_KEYS["secret_key"]


def test_a_free_order_is_paid_with_no_card(stack, api, make_event):
    event_id, types = make_event({"Free": (0, 10)}, fees={"percent_bps": 500, "fixed_cents": 100})
    token = api.token(email_verified="true")
    answer = buy(api, token, event_id, [(types["Free"], 2)])
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["status"], body["order_status"], body["client_secret"], body["payment_intent_id"], body["total_cents"]) == (
        "succeeded", "paid", None, None, 0)
    assert {t["status"] for t in body["tickets"]} == {"valid"}
    assert shards(stack, types["Free"])[:3] == (8, 0, 2)

    order = order_of(api, token, body["order_id"])
    assert order["status"] == "paid" and order["payment"]["payment_intent_id"] is None
    qr = api.get(f"/api/tickets/{body['tickets'][0]['id']}/qr/data/", token=token).json()
    assert qr["status"] == "valid" and qr["qr_payload"]
    assert wait_for(lambda: receipts_for(stack, body["order_id"]), timeout=60), "the receipt goes out through the queue"

    canceled = api.post(f"/api/orders/{body['order_id']}/cancel/", token=token)
    assert canceled.status_code == 200 and canceled.json()["status"] == "refunded", canceled.text
    assert {t["status"] for t in canceled.json()["tickets"]} == {"void"}
    assert shards(stack, types["Free"])[:3] == (10, 0, 0)


def test_an_order_with_fees_is_charged_the_right_amount_at_the_stand_in(stack, api, make_event):
    event_id, types = make_event({"GA": (2500, 10)}, fees={"percent_bps": 300, "fixed_cents": 45})
    shown = api.get(f"/api/events/{event_id}/").json()
    assert shown["fees"]["percent_bps"] == 300 and shown["ticket_types"][0]["fees_cents"] == 75 + 45
    token = api.token(email_verified="true")
    answer = buy(api, token, event_id, [(types["GA"], 3)])
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["subtotal_cents"], body["fees_cents"], body["total_cents"], body["order_status"]) == (7500, 360, 7860, "pending")

    intent = requests.get(f"{stack.stripe_url}/v1/payment_intents/{body['payment_intent_id']}", auth=(SK, ""), timeout=10).json()
    assert (intent["amount"], intent["currency"]) == (7860, "usd")

    assert pay(stack, body).status_code == 200
    paid = wait_for(lambda: (o := order_of(api, token, body["order_id"]))["status"] == "paid" and o, timeout=60)
    assert (paid["subtotal_cents"], paid["fees_cents"], paid["total_cents"]) == (7500, 360, 7860)
    money = api.get(f"/api/events/{event_id}/stats/", token=api.token(["admin"])).json()["money"]
    assert money == {"currency": "usd", "gross_cents": 7860, "fees_cents": 360, "refunded_cents": 0, "net_cents": 7500}


def test_one_customers_concurrent_checkouts_stay_within_the_per_customer_limit(stack, api, make_event):
    event_id, types = make_event({"Free": (0, 40)}, max_per_customer=4)
    token = api.token(email_verified="true")
    barrier = threading.Barrier(6)

    def attempt(_):
        barrier.wait()
        return api.post(CHECKOUT, token=token, json={"event_id": event_id, "items": [{"ticket_type_id": types["Free"], "qty": 2}]})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(attempt, range(6)))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 2 and all(code == 409 for code in codes if code != 201), [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"customer_limit"}
    assert shards(stack, types["Free"])[:3] == (36, 0, 4)
