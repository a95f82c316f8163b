"""Mail problems are the customer's data, not our outage, in process (tests/unit/world.py):
an address the mail code refuses is recorded on the order (and the Stripe event that paid
it is processed, not failed); checkout wants a verified email; resends are limited. SES
itself rejecting a receipt is injected into the AWS stand-in: tests/integration/test_receipts.py."""

from __future__ import annotations

import uuid

from tests.shop import buy, order_of, paid_order, payment_processed, receipts_for, stripe_events


def _paid_order(api, stack, make_event, email: str):
    event_id, types = make_event({"GA": (1500, 10)})
    order, token = paid_order(api, stack, event_id, [(types["GA"], 1)], settled=False, sub=f"mail-{uuid.uuid4().hex[:6]}", email=email)
    return token, order


def test_an_address_the_mail_code_refuses_is_recorded_on_the_order_and_the_payment_event_succeeds(api, stack, make_event):
    token, order = _paid_order(api, stack, make_event, "jö@example.com")  # SES cannot deliver a non-ASCII local part
    shown = order_of(api, token, order["order_id"])
    assert shown["receipt"] and shown["receipt"]["status"] == "undeliverable", shown
    assert shown["status"] == "paid" and {t["status"] for t in shown["tickets"]} == {"valid"}
    assert "cannot receive" in shown["receipt"]["problem"]
    assert payment_processed(stack, order), stripe_events(stack, order["payment_intent_id"])
    assert not receipts_for(stack, order["order_id"])
    resent = api.post(f"/api/orders/{order['order_id']}/resend-receipt/", token=token)
    assert resent.status_code == 422 and resent.json()["code"] == "receipt_undeliverable", resent.text


def test_resends_are_limited_per_order_with_retry_after(api, stack, make_event):
    token, order = _paid_order(api, stack, make_event, f"often-{uuid.uuid4().hex[:6]}@example.com")
    assert (order_of(api, token, order["order_id"])["receipt"] or {}).get("status") == "sent"
    answers = [api.post(f"/api/orders/{order['order_id']}/resend-receipt/", token=token) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    refused = answers[-1]
    assert refused.json()["code"] == "too_many_resends" and 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert len(receipts_for(stack, order["order_id"])) == 4  # the receipt and three resends


def test_checkout_wants_a_verified_email(api, make_event):
    event_id, types = make_event({"GA": (1500, 10)})
    unverified = api.token([], email_verified=False)
    answer = buy(api, unverified, event_id, [(types["GA"], 1)])
    assert answer.status_code == 422 and answer.json()["code"] == "email_unverified", answer.text
    assert buy(api, api.token([]), event_id, [(types["GA"], 1)]).status_code == 201  # verified by default
