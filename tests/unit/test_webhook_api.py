"""The webhook's rules in process (tests/unit/world.py), with events signed as Stripe signs
them: unauthentic deliveries change nothing; payments for unknown orders, of the wrong
amount or on another order's intent fulfil nothing; unknown event types are acknowledged;
receipts are resent for their owner only; the health answer tells nothing secret. Events
the Stripe stand-in delivers itself, ten deliveries at once and SES down go through the
local stack (tests/integration/test_webhook.py)."""

from __future__ import annotations

import json
import time

import pytest

from tests.shop import deliver, event_for, order_of, pay, receipts_for, signed, stripe_client, table_item


# -------------------------------------------------------------------- tests
@pytest.mark.parametrize(
    ("how", "signature"),
    [
        ("missing", None),
        ("forged", lambda p: signed(p, secret="whsec_someone_else")),
        ("stale", lambda p: signed(p, timestamp=int(time.time()) - 600)),
        ("garbage", lambda p: "t=1,v1=deadbeef"),
    ],
)
def test_unauthentic_deliveries_get_400_and_change_nothing(api, stack, event_and_order, how, signature):
    order = event_and_order["order"]
    stripe_client(stack).v1.payment_intents.confirm(order["payment_intent_id"], params={"payment_method": "pm_card_visa"})
    payload = event_for(order["payment_intent_id"])
    answer = deliver(api, payload, signature(payload) if signature else None)
    assert answer.status_code == 400 and set(answer.json()) >= {"error", "detail"}
    assert table_item(stack, f"STRIPE_EVENT#{json.loads(payload)['id']}") == {}


def test_a_payment_for_an_unknown_order_is_ignored(api, stack):
    intent = stripe_client(stack).v1.payment_intents.create(
        params={"amount": 1000, "currency": "usd", "metadata": {"order_id": "or_does_not_exist"}}
    )
    payload = event_for(intent.id)
    answer = deliver(api, payload, signed(payload))
    assert answer.status_code == 200 and answer.json()["outcome"] == "unknown_order"
    assert table_item(stack, "ORDER#or_does_not_exist") == {}


def test_a_payment_of_the_wrong_amount_does_not_fulfil_the_order(api, stack, event_and_order):
    ctx = event_and_order
    order = ctx["order"]
    client = stripe_client(stack)
    client.v1.payment_intents.update(order["payment_intent_id"], params={"amount": 100})
    client.v1.payment_intents.confirm(order["payment_intent_id"], params={"payment_method": "pm_card_visa"})
    payload = event_for(order["payment_intent_id"])
    answer = deliver(api, payload, signed(payload))
    assert answer.status_code == 200 and answer.json()["outcome"] == "rejected_mismatch"
    shown = order_of(api, ctx["token"], order["order_id"])
    assert shown["status"] == "pending" and {t["status"] for t in shown["tickets"]} == {"pending"}


def test_a_payment_on_another_orders_intent_does_not_fulfil_it(api, stack, event_and_order):
    ctx = event_and_order
    order = ctx["order"]
    intent = stripe_client(stack).v1.payment_intents.create(
        params={
            "amount": order["total_cents"], "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
            "metadata": {"order_id": order["order_id"], "event_id": ctx["event_id"], "customer_id": ctx["sub"]},
        }
    )
    payload = event_for(intent.id)
    answer = deliver(api, payload, signed(payload))
    assert answer.status_code == 200 and answer.json()["outcome"] == "foreign_payment_intent"
    assert order_of(api, ctx["token"], order["order_id"])["status"] == "pending"


def test_unknown_event_types_are_acknowledged_and_ignored(api):
    payload = event_for("cus_123", kind="customer.created", obj={"id": "cus_123", "object": "customer"})
    answer = deliver(api, payload, signed(payload))
    assert answer.status_code == 200 and answer.json()["outcome"] == "ignored"


def test_resend_receipt_sends_it_again_for_the_owner_only(api, stack, event_and_order):
    ctx = event_and_order
    order = ctx["order"]
    early = api.post(f"/api/orders/{order['order_id']}/resend-receipt/", token=ctx["token"])
    assert early.status_code == 409
    pay(stack, order)
    assert len(receipts_for(stack, order["order_id"])) == 1
    assert api.post(f"/api/orders/{order['order_id']}/resend-receipt/", token=api.token([])).status_code == 404
    again = api.post(f"/api/orders/{order['order_id']}/resend-receipt/", token=ctx["token"])
    assert again.status_code == 200 and again.json()["sent_to"] == f"{ctx['sub']}@example.com"
    assert len(receipts_for(stack, order["order_id"])) == 2


def test_webhook_health_says_only_whether_it_is_configured_and_how_long_ago_the_last_event_came(api, event_and_order, stack):
    payload = event_for("cus_1", kind="customer.updated", obj={"id": "cus_1", "object": "customer"})
    deliver(api, payload, signed(payload))
    answer = api.get("/api/webhooks/health/")
    health = answer.json()
    assert set(health) == {"status", "webhook_secret_configured", "seconds_since_last_event"}
    assert health["status"] == "ok" and health["webhook_secret_configured"] is True
    assert isinstance(health["seconds_since_last_event"], int) and health["seconds_since_last_event"] >= 0
    assert json.loads(payload)["id"] not in answer.text and "customer.updated" not in answer.text
