"""Fulfilment rules in process (moto + the Stripe stand-in): payments that arrive after
the hold lapsed, and the receipt's exactly-once claim."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.unit.conftest import ADMIN, Invoker, catalogue_event, confirm_at_stripe, load_function, provision_fulfilment, stripe_in_process
from ticketing import config, fulfilment, mail, orders, payments, qr, receipts, webhooks
from ticketing.lifecycle import orders as lifecycle
from ticketing.table import InventoryShard, OrderItem



@pytest.fixture
def shop(aws, catalogue, stripe_standin, monkeypatch):
    provision_fulfilment(monkeypatch)
    event = catalogue_event(catalogue, "Late Show")
    _, ticket_type, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/", {"name": "Last seats", "price_cents": 3000, "capacity": 2}, claims=ADMIN)
    yield {"event": event, "type": ticket_type, "buy": Invoker(load_function("checkout"))}
    config.settings.cache_clear()
    mail.reset_client()


def _order(shop, sub, qty=2):
    status, answer, _ = shop["buy"](
        "POST", "/api/tickets/stripe/checkout/",
        {"event_id": shop["event"]["id"], "items": [{"ticket_type_id": shop["type"]["id"], "qty": qty}]},
        claims={"sub": sub, "email": f"{sub}@example.com", "name": sub, "email_verified": "true"},
    )
    assert status == 201, answer
    return answer


def _lapse_without_cancelling_the_payment(order_id):
    """What a hold's lapse looks like when the payment could not be cancelled in time."""
    assert lifecycle.release(orders.get(order_id), "expired", "hold_lapsed")


def _pay_at_stripe(intent_id):
    return confirm_at_stripe(intent_id)


def _sent(subject_prefix):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return [m for m in ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages if f"Subject: {subject_prefix}" in m.raw_data]


def _seats(type_id):
    shards = list(InventoryShard.scan(InventoryShard.PK.startswith(f"INV#{type_id}#")))
    return sum(int(s.remaining) for s in shards), sum(int(s.held) for s in shards), sum(int(s.sold) for s in shards)


def test_a_late_payment_with_the_seats_still_free_is_fulfilled(shop):
    order = _order(shop, "late-but-lucky")
    _lapse_without_cancelling_the_payment(order["order_id"])
    assert _seats(shop["type"]["id"]) == (2, 0, 0)
    _pay_at_stripe(order["payment_intent_id"])

    outcome, _ = fulfilment.settle(payments.retrieve_intent(order["payment_intent_id"]))
    assert outcome == "paid"
    paid = orders.get(order["order_id"])
    assert paid.status == "paid" and paid.closed_reason == "paid_after_expired"
    tickets = orders.tickets_of(paid)
    assert {t.status for t in tickets} == {"valid"}
    secret = json.loads(boto3.client("secretsmanager").get_secret_value(SecretId="ticketing/test/qr")["SecretString"])
    public = qr.public_document(secret)["keys"]
    assert all(qr.verify(t.qr_payload, public).ticket_id == t.ticket_id for t in tickets)
    assert _seats(shop["type"]["id"]) == (0, 0, 2)
    assert len(_sent("Your tickets")) == 1
    # Settling again changes nothing and sends nothing.
    assert fulfilment.settle(payments.retrieve_intent(order["payment_intent_id"]))[0] == "paid"
    assert _seats(shop["type"]["id"]) == (0, 0, 2) and len(_sent("Your tickets")) == 1


def test_a_late_payment_for_seats_sold_meanwhile_is_refunded_in_full(shop):
    late = _order(shop, "late-and-unlucky")
    _lapse_without_cancelling_the_payment(late["order_id"])
    _order(shop, "on-time")  # takes both seats again
    _pay_at_stripe(late["payment_intent_id"])

    outcome, _ = fulfilment.settle(payments.retrieve_intent(late["payment_intent_id"]))
    assert outcome == "refunded_late_payment_sold_out"
    closed = orders.get(late["order_id"])
    assert closed.status == "refunded" and int(closed.refunded_cents) == 6000
    refunds = orders.refunds_of(late["order_id"])
    assert [r["amount_cents"] for r in refunds] == [6000] and refunds[0]["stripe_refund_id"].startswith("re_")
    assert {t.status for t in orders.tickets_of(closed)} == {"void"}
    assert _seats(shop["type"]["id"]) == (0, 2, 0)  # the on-time order's hold is untouched
    assert len(_sent("Refund for order")) == 1
    # Stripe delivers again: no second refund, no second notice.
    assert fulfilment.settle(payments.retrieve_intent(late["payment_intent_id"]))[0] == "already_refunded"
    assert len(stripe_in_process().v1.refunds.list(params={"payment_intent": late["payment_intent_id"]}).data) == 1
    assert len(_sent("Refund for order")) == 1


def test_the_receipt_is_claimed_once_even_when_two_attempts_race(shop):
    order = _order(shop, "racer", qty=1)
    _pay_at_stripe(order["payment_intent_id"])
    intent = payments.retrieve_intent(order["payment_intent_id"])
    assert fulfilment.settle(intent)[0] == "paid"
    paid = orders.get(order["order_id"])
    assert paid.receipt_sent_at
    stale = OrderItem.from_raw_data(paid.serialize())
    stale.receipt_sent_at = None  # an attempt that read the order before the receipt went out
    assert receipts.deliver_receipt(stale) is False
    assert len(_sent("Your tickets")) == 1


def test_a_lapsed_hold_whose_payment_went_through_is_released_then_paid_late(shop):
    """Release-first: the expiry does not ask Stripe, so a payment whose webhook has not come
    in GRACE_SECONDS after the hold lapsed is a late payment: it takes the seats again
    while they are free (else it is refunded: tests/unit/test_races.py)."""
    from ticketing import checkout

    order = _order(shop, "paid-at-the-last-second", qty=1)
    _pay_at_stripe(order["payment_intent_id"])
    past = "2000-01-01T00:00:00Z"
    OrderItem(*OrderItem.key(order["order_id"])).update(
        actions=[OrderItem.expires_at.set(past), OrderItem.GSI2SK.set(f"{past}#{order['order_id']}")]
    )
    assert [o.order_id for o in orders.lapsed(10)] == [order["order_id"]]
    assert checkout.expire_lapsed() == 1
    assert orders.get(order["order_id"]).status == "expired" and _seats(shop["type"]["id"]) == (2, 0, 0)
    assert checkout.cancel_released() == 0  # Stripe says succeeded: nothing to cancel, left to the webhook
    assert orders.lapsed(10) == [] and orders.get(order["order_id"]).GSI2PK is None
    assert fulfilment.settle(payments.retrieve_intent(order["payment_intent_id"]))[0] == "paid"
    assert orders.get(order["order_id"]).status == "paid" and _seats(shop["type"]["id"]) == (1, 0, 1)


class _Stopped(BaseException):
    """The process ending mid-request (a Lambda timeout): nothing after it runs."""


def test_a_receipt_whose_sender_died_holding_its_lease_still_goes_out_once(shop, monkeypatch):
    from datetime import timedelta

    from ticketing import clock

    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="receipts")["QueueUrl"]
    monkeypatch.setenv("RECEIPT_QUEUE_URL", queue)
    order = _order(shop, "died-mid-receipt", qty=1)
    _pay_at_stripe(order["payment_intent_id"])
    intent = payments.retrieve_intent(order["payment_intent_id"])

    def dying(_order):
        raise _Stopped()

    with monkeypatch.context() as patched:  # the first delivery takes the lease and dies
        patched.setattr(receipts, "_send_receipt", dying)
        with pytest.raises(_Stopped):
            fulfilment.settle(intent)
    assert orders.get(order["order_id"]).status == "paid"

    # Stripe's next delivery finds the lease held: it sends nothing and leaves the order
    # on the receipt queue for when the lease has run out.
    assert fulfilment.settle(intent)[0] == "paid"
    assert _sent("Your tickets") == []
    queued = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert int(queued["ApproximateNumberOfMessagesDelayed"]) + int(queued["ApproximateNumberOfMessages"]) == 1
    with pytest.raises(receipts.ReceiptBusy):  # too early: the message stays on the queue
        receipts.retry_receipt(order["order_id"])

    clock.freeze(clock.now() + timedelta(seconds=receipts.LEASE_SECONDS + 1))
    try:
        receipts.retry_receipt(order["order_id"])
        receipts.retry_receipt(order["order_id"])  # the queue delivering twice sends nothing more
        assert fulfilment.settle(intent)[0] == "paid"
    finally:
        clock.freeze(None)
    assert len(_sent("Your tickets")) == 1
    assert orders.get(order["order_id"]).receipt_sent_at


def test_a_partially_refunded_order_still_gets_its_receipt_from_a_late_delivery(shop):
    order = _order(shop, "refunded-before-receipt", qty=2)
    _pay_at_stripe(order["payment_intent_id"])
    intent = payments.retrieve_intent(order["payment_intent_id"])
    payloads = {t: qr.sign(t, shop["event"]["id"]) for t in orders.get(order["order_id"]).ticket_ids}
    assert lifecycle.mark_paid(orders.get(order["order_id"]), payloads, {"payment_intent_id": intent.id, "status": "succeeded"})
    OrderItem(*OrderItem.key(order["order_id"])).update(actions=[OrderItem.status.set("partially_refunded")])
    assert fulfilment.settle(intent)[0] == "paid"
    assert len(_sent("Your tickets")) == 1


def test_the_webhook_reads_the_order_once_per_stripe_event(shop):
    """payment_intent.succeeded for a two-ticket order: its DynamoDB calls, counted (also
    printed by `make bench`). The order is read once; every transition updates the copy
    in hand instead of reading it again."""
    from bench.common import count_aws_calls

    order = _order(shop, "counted", qty=2)
    _pay_at_stripe(order["payment_intent_id"])
    stripe_event = {"id": "evt_counted_1", "type": "payment_intent.succeeded", "data": {"object": {"id": order["payment_intent_id"]}}}
    with count_aws_calls() as calls:
        outcome = webhooks.handle(stripe_event)
    assert outcome.outcome == "paid"
    assert {name: n for name, n in calls.items() if name.startswith("dynamodb.")} == {
        "dynamodb.PutItem": 2,  # the Stripe event's claim; the receipt filed in the customer's inbox (mail hook)
        # the order (once, by the webhook) and its event (for the receipt); the inbox's mail
        # hook is told the order's customer and event by the sender, so it reads nothing
        "dynamodb.GetItem": 2,
        "dynamodb.TransactWriteItems": 1,  # pending -> paid: order, tickets, seats, holder count, log record
        # the tickets, for the receipt; the Stripe budget's two counters (its pool and the
        # endpoint), read before the PaymentIntent is retrieved
        "dynamodb.BatchGetItem": 3,
        # the receipt's claim and its record, the event's finish; one spend from each counter
        "dynamodb.UpdateItem": 5,
    }
    assert len(_sent("Your tickets")) == 1
