"""Checkout with a saved card (issue 17): confirmed on the server, paid through the same
webhook path; the authentication card answers requires_action; a decline leaves the order
pending; anything but one of the caller's cards is 422 with nothing held."""

from __future__ import annotations

import requests

from local import stack as stack_module
from tests.integration.support import wait_for
from tests.shop import CARDS, CHECKOUT, available, card_holder, order_of, pay, save_card, stripe_client, stripe_events

SK = stack_module.STRIPE_KEYS["secret_key"]


def checkout(api, token, event_id, type_id, qty=1, **extra):
    return api.post(CHECKOUT, token=token, json={"event_id": event_id, "items": [{"ticket_type_id": type_id, "qty": qty}], **extra})


def test_a_saved_card_pays_with_no_browser_step(api, stack, make_event):
    event_id, types = make_event({"GA": (2500, 10)})
    _, token = card_holder(api)
    pm_id = save_card(api, stack, token)
    answer = checkout(api, token, event_id, types["GA"], 2, payment_method_id=pm_id)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "succeeded" and body["total_cents"] == 5000
    assert wait_for(lambda: order_of(api, token, body["order_id"])["status"] == "paid")
    intent = stripe_client(stack).v1.payment_intents.retrieve(body["payment_intent_id"])
    assert (intent.payment_method, intent.amount) == (pm_id, 5000)
    payments = api.get("/api/me/payments/", token=token).json()["payments"]
    assert payments[0]["order_id"] == body["order_id"] and payments[0]["card"] == {"brand": "visa", "last4": "4242"}
    assert wait_for(lambda: api.get("/api/me/notifications/", token=token).json()["unread"] == 1)  # the receipt went out


def test_the_authentication_card_answers_requires_action_with_the_client_secret(api, stack, make_event):
    event_id, types = make_event({"GA": (2500, 10)})
    _, token = card_holder(api)
    setup = api.post(f"{CARDS}setup/", token=token).json()
    method = requests.post(f"{stack.stripe_url}/v1/payment_methods", timeout=10, auth=(SK, ""), data={
        "type": "card", "card[number]": "4000002760003184", "card[exp_month]": "12", "card[exp_year]": "2034", "card[cvc]": "123"}).json()
    confirm = requests.post(f"{stack.stripe_url}/v1/setup_intents/{setup['setup_intent_id']}/confirm", auth=(SK, ""), timeout=10,
                            data={"payment_method": method["id"], "client_secret": setup["client_secret"]})
    assert confirm.json()["status"] == "requires_action"
    requests.post(f"{stack.stripe_url}/v1/setup_intents/{setup['setup_intent_id']}/_authenticate", auth=(SK, ""), timeout=10,
                  data={"client_secret": setup["client_secret"], "success": "true"}).raise_for_status()
    answer = checkout(api, token, event_id, types["GA"], payment_method_id=method["id"])
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "requires_action" and body["client_secret"].startswith(body["payment_intent_id"])
    assert order_of(api, token, body["order_id"])["status"] == "pending"


def test_a_declined_saved_card_leaves_the_order_pending_with_the_error_and_seats_held(api, stack, make_event):
    event_id, types = make_event({"GA": (2500, 10)})
    _, token = card_holder(api)
    pm_id = save_card(api, stack, token, number="4000000000000341")  # saves fine, declines charges
    answer = checkout(api, token, event_id, types["GA"], 3, payment_method_id=pm_id)
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "requires_payment_method"
    order = order_of(api, token, answer.json()["order_id"])
    assert order["status"] == "pending" and order["payment"]["error_message"]
    assert available(api, event_id, types["GA"]) == 7
    # Stripe's payment_failed webhook changes nothing of that
    intent = answer.json()["payment_intent_id"]
    assert wait_for(lambda: any(e["state"] == "processed" for e in stripe_events(stack, intent)))
    order = order_of(api, token, answer.json()["order_id"])
    assert order["status"] == "pending" and order["payment"]["error_message"]
    assert order["payment"]["status"] == "requires_payment_method"


def test_anything_but_the_callers_card_is_422_with_nothing_held(api, stack, make_event):
    event_id, types = make_event({"GA": (2500, 10)})
    _, owner = card_holder(api)
    theirs = save_card(api, stack, owner)
    _, token = card_holder(api)
    mine = save_card(api, stack, token)
    assert api.request("DELETE", f"{CARDS}{mine}/", token=token).status_code == 200
    for card in (theirs, mine, "pm_unknown123", "not a card"):
        answer = checkout(api, token, event_id, types["GA"], payment_method_id=card)
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "payment_method_id"
    assert available(api, event_id, types["GA"]) == 10


def test_stripe_down_at_a_saved_card_checkout_holds_nothing(api, stack, make_event, stripe_faults):
    event_id, types = make_event({"GA": (2500, 10)})
    _, token = card_holder(api)
    pm_id = save_card(api, stack, token)
    stripe_faults(500, count=10, path="/v1/payment_methods", method="GET")
    answer = checkout(api, token, event_id, types["GA"], payment_method_id=pm_id)
    assert answer.status_code == 502, answer.text
    stripe_faults.clear()
    stripe_faults(500, count=10, path="/v1/payment_intents")
    answer = checkout(api, token, event_id, types["GA"], payment_method_id=pm_id)
    assert answer.status_code == 502, answer.text
    assert available(api, event_id, types["GA"]) == 10


def test_save_card_keeps_the_card_paid_with(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 10)})
    _, token = card_holder(api)
    body = checkout(api, token, event_id, types["GA"], save_card=True).json()
    assert pay(stack, body).status_code == 200
    assert wait_for(lambda: order_of(api, token, body["order_id"])["status"] == "paid")
    cards = api.get(CARDS, token=token).json()["payment_methods"]
    assert [c["last4"] for c in cards] == ["4242"]
    again = checkout(api, token, event_id, types["GA"], payment_method_id=cards[0]["id"])
    assert again.status_code == 201 and again.json()["status"] == "succeeded", again.text
    assert wait_for(lambda: api.get("/api/me/notifications/", token=token).json()["unread"] == 2)  # both receipts went out
