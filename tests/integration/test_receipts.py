"""SES rejecting a receipt for good (injected into the AWS stand-in) is the customer's data,
not our outage: it is recorded on the order, the Stripe event that paid it is processed,
and it is not retried for days. The other mail rules are tested in process:
tests/unit/test_receipts_api.py."""

from __future__ import annotations

import uuid

from tests.integration.support import stripe_events, wait_for
from tests.shop import order_of, paid_order, payment_processed, table_item


def _paid_order(api, stack, make_event, email: str):
    event_id, types = make_event({"GA": (1500, 10)})
    order, token = paid_order(api, stack, event_id, [(types["GA"], 1)], settled=False, sub=f"mail-{uuid.uuid4().hex[:6]}", email=email)
    return token, order


def test_ses_rejecting_the_receipt_is_recorded_on_the_order_not_retried_for_days(api, stack, make_event, aws_faults):
    aws_faults(service="ses", status=400, code="MessageRejected", count=-1)
    token, order = _paid_order(api, stack, make_event, f"bounce-{uuid.uuid4().hex[:6]}@example.com")
    shown = wait_for(lambda: (o := order_of(api, token, order["order_id"]))["receipt"]
                     and o["receipt"]["status"] == "undeliverable" and o)
    assert shown and "MessageRejected" in shown["receipt"]["problem"]
    assert wait_for(lambda: payment_processed(stack, order)), stripe_events(stack, order["payment_intent_id"])
    assert not table_item(stack, f"ORDER#{order['order_id']}").get("receipt_claimed_until")  # no lease left behind
    resent = api.post(f"/api/orders/{order['order_id']}/resend-receipt/", token=token)
    assert resent.status_code == 422 and resent.json()["code"] == "receipt_undeliverable"
    aws_faults.clear()
    again = api.post(f"/api/orders/{order['order_id']}/resend-receipt/", token=token)  # fixed: sent, and the order says so
    assert again.status_code == 200, again.text
    assert order_of(api, token, order["order_id"])["receipt"]["status"] == "sent"
