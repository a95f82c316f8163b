"""Saved cards and the notification inbox (issue 17) through the local stack: first requests
at once create one Stripe customer, CORS lets a browser DELETE a card, a receipt SES
refuses (injected into the AWS stand-in) is told in the inbox, and an event's cancellation
(its job run by the stack's queue poller) is filed in the inbox. The account's other rules
are tested in process: tests/unit/test_account_api.py."""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from local import stack as stack_module
from tests.integration.support import wait_for
from tests.integration.test_checkout import buy, stripe_client
from tests.integration.test_webhook import pay

PK = stack_module.STRIPE_KEYS["publishable_key"]
CARDS = "/api/me/payment-methods/"


def customer(api):
    sub = f"cards-{uuid.uuid4().hex[:8]}"
    return sub, api.token([], sub=sub, email=f"{sub}@example.com", name="Card Holder")


def account_key(sub: str) -> str:
    return hashlib.sha256(sub.encode()).hexdigest()[:32]


def stripe_customers(stack, sub):
    listed = stripe_client(stack).v1.customers.list(params={"limit": 100}).auto_paging_iter()
    return [c.id for c in listed if (c.to_dict().get("metadata") or {}).get("account") == account_key(sub)]


def save_card(api, stack, token, number="4242424242424242"):
    """What the front end does: a SetupIntent from us, then Stripe.js with the publishable key."""
    setup = api.post(f"{CARDS}setup/", token=token)
    assert setup.status_code == 201, setup.text
    body = setup.json()
    method = requests.post(f"{stack.stripe_url}/v1/payment_methods", timeout=10, data={
        "key": PK, "type": "card", "card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2034", "card[cvc]": "123"})
    assert method.status_code == 200, method.text
    confirmed = requests.post(f"{stack.stripe_url}/v1/setup_intents/{body['setup_intent_id']}/confirm", timeout=10, data={
        "key": PK, "payment_method": method.json()["id"], "client_secret": body["client_secret"]})
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded", confirmed.text
    return method.json()["id"]


def test_concurrent_first_requests_create_one_customer(api, stack):
    sub, token = customer(api)
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: api.post(f"{CARDS}setup/", token=token), range(5)))
    statuses = [a.status_code for a in answers]
    assert all(s in (201, 503) for s in statuses), [a.text for a in answers]
    assert all(a.headers.get("Retry-After") for a in answers if a.status_code == 503)
    assert 201 in statuses
    assert len(stripe_customers(stack, sub)) == 1
    intents = [stripe_client(stack).v1.setup_intents.retrieve(a.json()["setup_intent_id"]) for a in answers if a.status_code == 201]
    assert len({i.customer for i in intents}) == 1


def test_cors_preflight_allows_delete(api, stack):
    answer = requests.options(f"{stack.api_url}{CARDS}pm_x/", timeout=10, headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "DELETE"})
    assert "DELETE" in answer.headers.get("Access-Control-Allow-Methods", ""), answer.headers


def test_a_receipt_ses_refuses_for_good_is_told_in_the_inbox(api, stack, make_event, aws_faults):
    event_id, types = make_event({"GA": (1500, 5)})
    _, token = customer(api)
    order = buy(api, token, event_id, [(types["GA"], 1)]).json()
    aws_faults(service="ses", status=400, code="MessageRejected", count=-1)
    pay(stack, order)
    notes = wait_for(lambda: api.get("/api/me/notifications/", token=token).json()["notifications"])
    aws_faults.clear()
    assert [(n["kind"], n["order_id"]) for n in notes] == [("receipt_undeliverable", order["order_id"])]


def test_an_event_cancellation_is_filed_as_event_canceled(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 5)})
    _, token = customer(api)
    order = buy(api, token, event_id, [(types["GA"], 1)]).json()
    pay(stack, order)
    assert wait_for(lambda: api.get("/api/me/notifications/", token=token).json()["unread"] == 1)  # the receipt
    admin = api.token(["admin"])
    assert api.post(f"/api/events/{event_id}/cancel/", token=admin, json={}).status_code == 202

    def kinds():
        return sorted(n["kind"] for n in api.get("/api/me/notifications/", token=token).json()["notifications"])

    assert wait_for(lambda: kinds() == ["event_canceled", "receipt"], timeout=90), kinds()
    # the job's last pass too, so nothing of this test still runs when the next one starts
    assert wait_for(lambda: api.get(f"/api/events/{event_id}/cancel/", token=admin).json()["state"] == "completed", timeout=90)
