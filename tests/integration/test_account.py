"""Saved cards and the notification inbox (issue 17) through the local stack: first requests
at once create one Stripe customer, CORS lets a browser DELETE a card, a receipt SES
refuses (injected into the AWS stand-in) is told in the inbox, and an event's cancellation
(its job run by the stack's queue poller) is filed in the inbox. The account's other rules
are tested in process: tests/unit/test_account_api.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from tests.integration.support import wait_for
from tests.shop import CARDS, buy, card_holder, pay, stripe_client, stripe_customers
from tests.shop import save_card  # noqa: F401 - for test_least_privilege


def test_concurrent_first_requests_create_one_customer(api, stack):
    sub, token = card_holder(api)
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
    _, token = card_holder(api)
    order = buy(api, token, event_id, [(types["GA"], 1)]).json()
    aws_faults(service="ses", status=400, code="MessageRejected", count=-1)
    pay(stack, order)
    notes = wait_for(lambda: api.get("/api/me/notifications/", token=token).json()["notifications"])
    aws_faults.clear()
    assert [(n["kind"], n["order_id"]) for n in notes] == [("receipt_undeliverable", order["order_id"])]


def test_an_event_cancellation_is_filed_as_event_canceled(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 5)})
    _, token = card_holder(api)
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
