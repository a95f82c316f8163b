"""Bounces after SES accepted a receipt, through the local stack: the mail events function
(invoked as SNS would, through the gateway's `POST /_local/invoke/MailEventsFunction`)
records a permanent bounce of a paid order's receipt on the order; a transient bounce and a
complaint change nothing; a notification delivered twice gives the same order; a resend
that goes out clears it, and the first bounce arriving again late does not bring it back."""

from __future__ import annotations

import uuid

import requests

from tests.integration.support import wait_for
from tests.integration.test_receipts import _paid_order
from tests.integration.test_webhook import order_of, receipts_for, table_item
from tests.ses_events import notification, sns_event


def invoke(stack, *messages):
    answer = requests.post(f"{stack.api_url}/_local/invoke/MailEventsFunction", json=sns_event(*messages), timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["outcomes"]


def test_a_permanent_bounce_of_the_receipt_shows_on_the_order(api, stack, make_event):
    address = f"gone-{uuid.uuid4().hex[:6]}@example.com"
    token, order = _paid_order(api, stack, make_event, address)
    order_id = order["order_id"]
    assert wait_for(lambda: (order_of(api, token, order_id)["receipt"] or {}).get("status") == "sent")
    [sent] = receipts_for(stack, order_id)  # the receipt carries the order's header (and tag)
    item = table_item(stack, f"ORDER#{order_id}")
    message_id, sent_at = item["receipt_message_id"], item["receipt_sent_at"]
    about = dict(order_id=order_id, message_id=message_id, address=address, timestamp=sent_at)

    # a mailbox full and a complaint: nothing on the order
    assert invoke(stack, notification(bounce_type="Transient", sub_type="MailboxFull", **about),
                  notification("Complaint", **about), "not a notification") == ["ignored", "complaint", "ignored"]
    assert order_of(api, token, order_id)["receipt"]["status"] == "sent"

    # the address is gone: recorded, shown, and the same however often SNS delivers it
    bounce = notification(sub_type="NoEmail", **about)
    assert invoke(stack, bounce) == ["recorded"]
    shown = order_of(api, token, order_id)
    assert shown["status"] == "paid" and shown["receipt"]["status"] == "undeliverable"
    assert "bounced" in shown["receipt"]["problem"] and address not in shown["receipt"]["problem"]
    assert invoke(stack, bounce, bounce) == ["already_recorded", "already_recorded"]
    assert order_of(api, token, order_id) == shown
    notices = api.get("/api/me/notifications/", token=token).json()
    assert [n["kind"] for n in notices["notifications"]].count("receipt_undeliverable") == 1, notices

    # the customer resends it and it goes out: cleared; the first bounce again changes nothing
    assert api.post(f"/api/orders/{order_id}/resend-receipt/", token=token).status_code == 200
    assert order_of(api, token, order_id)["receipt"]["status"] == "sent"
    assert invoke(stack, bounce) == ["already_recorded"]
    assert order_of(api, token, order_id)["receipt"]["status"] == "sent"
    assert sent["X-Ticketing-Order"] == order_id


def test_a_bounce_for_an_order_that_does_not_exist_creates_nothing(stack):
    ghost = f"ord_{uuid.uuid4().hex[:12]}"
    assert invoke(stack, notification(order_id=ghost)) == ["already_recorded"]
    assert table_item(stack, f"ORDER#{ghost}") == {}
