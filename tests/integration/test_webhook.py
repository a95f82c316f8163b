"""Stripe webhooks end to end on the local stack: pay as a front end does, the webhook
arrives from the Stripe stand-in with a real signature, tickets become valid and one
receipt goes out; a declined card, a canceled PaymentIntent, the same event ten times at
once and SES down change nothing they should not. The webhook's rules for forged,
mismatched and unknown events are tested in process: tests/unit/test_webhook_api.py.
The helpers here are shared by the other integration modules."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.integration.support import queue_drained, stripe_events, wait_for
from tests.integration.test_checkout import available, holder_count, shards, stripe_client
from tests.shop import WEBHOOK, buy, decode_qr, deliver, event_for, order_of, pay, receipts_for, signed, table_item  # noqa: F401 - shared with the other integration modules


# -------------------------------------------------------------------- tests
def test_paying_makes_tickets_valid_and_sends_one_receipt_whose_qr_codes_decode(api, stack, event_and_order):
    ctx = event_and_order
    order = ctx["order"]
    assert pay(stack, order).json()["status"] == "succeeded"
    shown = wait_for(lambda: (o := order_of(api, ctx["token"], order["order_id"]))["status"] == "paid" and o)
    assert shown, "the webhook did not mark the order paid"
    assert shown["payment"]["status"] == "succeeded" and shown["payment"]["charge_id"].startswith("ch_")
    assert shown["payment"]["payment_method"] == "card"
    assert {t["status"] for t in shown["tickets"]} == {"valid"}
    ga_remaining, ga_held, ga_sold, _ = shards(stack, ctx["types"]["GA"])
    assert (ga_held, ga_sold, ga_remaining) == (0, 2, 28)
    assert holder_count(stack, ctx["sub"], ctx["event_id"]) == 0

    receipts = wait_for(lambda: receipts_for(stack, order["order_id"]))
    assert len(receipts) == 1
    receipt = receipts[0]
    assert receipt["To"].addresses[0].addr_spec == f"{ctx['sub']}@example.com"
    assert receipt["To"].addresses[0].display_name == "O'Brien, \"Jo\" Ünïcode"
    text = receipt.get_body(("plain",)).get_content()
    assert "$140.00" in text  # 2 x $25.00 + $90.00
    payloads = {t["id"]: table_item(stack, f"TICKET#{t['id']}")["qr_payload"] for t in shown["tickets"]}
    images = [part for part in receipt.walk() if part.get_content_type() == "image/png"]
    decoded = {decode_qr(part.get_content()) for part in images}
    assert decoded == set(payloads.values()) and len(images) == 3
    for ticket in shown["tickets"]:
        assert ticket["serial"] in text


def test_a_declined_card_leaves_the_order_pending_and_a_good_card_then_pays(api, stack, event_and_order):
    ctx = event_and_order
    order = ctx["order"]
    declined = pay(stack, order, card="4000000000000341")
    assert declined.status_code == 402
    failed = wait_for(lambda: (o := order_of(api, ctx["token"], order["order_id"]))["payment"]["error_message"] and o)
    assert failed["status"] == "pending"
    assert failed["payment"]["status"] == "requires_payment_method"
    assert failed["payment"]["error_message"]
    assert pay(stack, order).json()["status"] == "succeeded"
    assert wait_for(lambda: order_of(api, ctx["token"], order["order_id"])["status"] == "paid")


def test_the_same_event_ten_times_at_once_issues_one_set_of_tickets_and_one_email(api, stack, event_and_order):
    ctx = event_and_order
    order = ctx["order"]
    stripe_client(stack).v1.payment_intents.confirm(order["payment_intent_id"], params={"payment_method": "pm_card_visa"})
    payload = event_for(order["payment_intent_id"])  # one event id, delivered ten times

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: deliver(api, payload, signed(payload)), range(10)))
    assert {a.status_code for a in answers} <= {200, 503}
    assert any(a.status_code == 200 and not a.json()["duplicate"] for a in answers)
    assert wait_for(lambda: order_of(api, ctx["token"], order["order_id"])["status"] == "paid")
    first = {t["id"]: table_item(stack, f"TICKET#{t['id']}")["qr_payload"] for t in order["tickets"]}
    for _ in range(3):  # and again, sequentially, after the fact
        again = deliver(api, payload, signed(payload))
        assert again.status_code == 200 and again.json()["duplicate"] is True
    # The stand-in's own delivery of the real event (another event id) arrives too: once it
    # is processed, and no receipt is waiting in the queue, no second receipt can follow.
    processed = lambda: [e for e in stripe_events(stack, order["payment_intent_id"]) if e["state"] == "processed"]  # noqa: E731
    assert wait_for(lambda: len(processed()) == 2), stripe_events(stack, order["payment_intent_id"])
    assert wait_for(lambda: queue_drained(stack, "ReceiptQueue"))
    assert len(receipts_for(stack, order["order_id"])) == 1
    assert {t["id"]: table_item(stack, f"TICKET#{t['id']}")["qr_payload"] for t in order["tickets"]} == first
    assert shards(stack, ctx["types"]["GA"])[1:3] == (0, 2)


def test_a_canceled_payment_intent_cancels_the_order_and_releases_the_seats(api, stack, event_and_order):
    ctx = event_and_order
    order = ctx["order"]
    stripe_client(stack).v1.payment_intents.cancel(order["payment_intent_id"])
    shown = wait_for(lambda: (o := order_of(api, ctx["token"], order["order_id"]))["status"] != "pending" and o)
    assert shown["status"] == "canceled"
    assert available(api, ctx["event_id"], ctx["types"]["GA"]) == 30


def test_ses_down_at_payment_time_then_the_receipt_goes_out_once_it_is_back(api, stack, event_and_order, aws_faults):
    ctx = event_and_order
    order = ctx["order"]
    aws_faults(service="ses", status=503, code="ServiceUnavailable", count=-1)
    assert pay(stack, order).json()["status"] == "succeeded"
    assert wait_for(lambda: order_of(api, ctx["token"], order["order_id"])["status"] == "paid")
    # The webhook's attempt and at least one retry from the receipt queue have met SES down.
    assert wait_for(lambda: aws_faults.hits() >= 2, timeout=30), "the receipt was not retried"
    assert receipts_for(stack, order["order_id"]) == []
    assert table_item(stack, f"ORDER#{order['order_id']}").get("receipt_sent_at") is None
    aws_faults.clear()
    assert wait_for(lambda: receipts_for(stack, order["order_id"]), timeout=40), "the queued receipt never went out"
    assert wait_for(lambda: table_item(stack, f"ORDER#{order['order_id']}").get("receipt_sent_at"))
    assert wait_for(lambda: queue_drained(stack, "ReceiptQueue"))  # nothing left that could send it again
    assert len(receipts_for(stack, order["order_id"])) == 1
