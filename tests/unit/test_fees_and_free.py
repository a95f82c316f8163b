"""Service fees and free tickets, in process (moto + the Stripe stand-in): the rules are
the point, not HTTP (tests/integration/test_fees_and_free.py runs the two end to end).

- fees on an event: validated (422 naming the field), shown on the event page (all-in
  price), charged once computed (the PaymentIntent's amount is the order's total), stored
  per ticket so a refund is exact, kept by an order when the event's fees change, and
  summed in the stats (gross - refunded - fees == net to the organiser);
- Stripe's minimum charge: a paid price under it is refused when set (the price, or fees
  that make it so);
- free orders: paid at checkout with no PaymentIntent (Stripe unreachable proves no call),
  tickets valid, receipt queued, canceled or refunded with the seats back;
- the per-customer limit counts paid orders and holds.
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
import stripe

from local.ports import free_port
from local.stack import _new_qr_keys
from tests.unit.conftest import ADMIN, Invoker, load_function
from ticketing import config, fulfilment, mail, payments
from ticketing.table import InventoryShard, OrderItem, TicketItem

CHECKOUT = "/api/tickets/stripe/checkout/"
QUEUE = "receipts-unit"
SENDER = "tickets@unit.example"


@pytest.fixture
def shop(aws, catalogue, monkeypatch):
    """Functions in process with a QR signing key and a receipt queue."""
    monkeypatch.setenv("QR_SIGNING_SECRET_NAME", "ticketing/test/qr")
    boto3.client("secretsmanager").create_secret(Name="ticketing/test/qr", SecretString=json.dumps(_new_qr_keys()))
    monkeypatch.setenv("RECEIPT_QUEUE_URL", boto3.client("sqs").create_queue(QueueName=QUEUE)["QueueUrl"])
    monkeypatch.setenv("SENDER_EMAIL", SENDER)
    boto3.client("ses").verify_email_identity(EmailAddress=SENDER)
    config.settings.cache_clear()
    mail.reset_client()
    yield {"catalogue": catalogue, "checkout": Invoker(load_function("checkout")), "refund": Invoker(load_function("refund")),
           "organiser": Invoker(load_function("organiser"))}
    config.settings.cache_clear()
    mail.reset_client()


def _event(shop, **fields):
    body = {"name": "Fees", "venue": "Hall", "currency": "usd", "starts_at": "2030-01-01T18:00:00Z",
            "ends_at": "2030-01-01T22:00:00Z", **fields}
    status, event, _ = shop["catalogue"]("POST", "/api/events/", body, claims=ADMIN)
    assert status == 201, event
    return event


def _type(shop, event_id, price, capacity=20, **fields):
    status, made, _ = shop["catalogue"]("POST", f"/api/events/{event_id}/ticket-types/",
                                        {"name": f"T{price}", "price_cents": price, "capacity": capacity, **fields}, claims=ADMIN)
    assert status == 201, made
    return made


def _buyer(sub=None):
    sub = sub or f"buyer-{uuid.uuid4().hex[:8]}"
    return {"sub": sub, "email": f"{sub}@example.com", "name": sub, "email_verified": "true"}


def _buy(shop, event_id, items, who):
    return shop["checkout"]("POST", CHECKOUT, {"event_id": event_id, "items": [{"ticket_type_id": t, "qty": q} for t, q in items]},
                            claims=who)


def _pay(answer):
    """Pay at the stand-in as the browser would, then settle as the webhook would."""
    client = stripe.StripeClient("sk_test_unit", base_addresses={"api": payments.os.environ["STRIPE_API_BASE"]})
    client.v1.payment_intents.confirm(answer["payment_intent_id"], params={"payment_method": "pm_card_visa"})
    outcome, _ = fulfilment.settle(payments.retrieve_intent(answer["payment_intent_id"]))
    assert outcome == "paid"


def _sent(order_id):
    """The receipt email's text part, decoded."""
    import email

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    for message in ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages:
        parsed = email.message_from_string(message.raw_data)
        for part in parsed.walk():
            if part.get_content_type() == "text/plain" and order_id in (text := part.get_payload(decode=True).decode()):
                return text
    raise AssertionError(f"no receipt for {order_id}")


def _seats(type_id):
    shards = list(InventoryShard.scan(InventoryShard.PK.startswith(f"INV#{type_id}#")))
    return sum(int(s.remaining) for s in shards), sum(int(s.held) for s in shards), sum(int(s.sold) for s in shards)


# ------------------------------------------------------------------ settings
@pytest.mark.parametrize(
    ("fees", "field"),
    [
        ({"percent_bps": -1}, "fees.percent_bps"),
        ({"percent_bps": 10_001}, "fees.percent_bps"),
        ({"fixed_cents": -5}, "fees.fixed_cents"),
        ({"fixed_cents": 100_001}, "fees.fixed_cents"),
        ({"per": "seat"}, "fees.per"),
        ({"passed_on": "yes"}, "fees.passed_on"),
        ({"percent_bps": 1.5}, "fees.percent_bps"),
    ],
)
def test_fees_out_of_range_are_422_naming_the_field_and_change_nothing(shop, fees, field):
    status, answer, _ = shop["catalogue"]("POST", "/api/events/", {
        "name": "Bad", "venue": "Hall", "currency": "usd", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T22:00:00Z",
        "fees": fees}, claims=ADMIN)
    assert status == 422 and answer["field"] == field, answer
    event = _event(shop, fees={"percent_bps": 100})
    status, answer, _ = shop["catalogue"]("PATCH", f"/api/events/{event['id']}/", {"fees": fees}, claims=ADMIN)
    assert status == 422 and answer["field"] == field, answer
    assert shop["catalogue"]("GET", f"/api/events/{event['id']}/")[1]["fees"]["percent_bps"] == 100


def test_an_unknown_currency_is_422(shop):
    status, answer, _ = shop["catalogue"]("POST", "/api/events/", {
        "name": "X", "venue": "Hall", "currency": "xts", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T22:00:00Z"},
        claims=ADMIN)
    assert status == 422 and answer["field"] == "currency"


def test_the_event_page_shows_the_fees_and_the_all_in_price_and_null_removes_them(shop):
    event = _event(shop, fees={"percent_bps": 500, "fixed_cents": 30})
    assert event["fees"] == {"percent_bps": 500, "fixed_cents": 30, "per": "ticket", "passed_on": True, "refundable": False}
    paid, free = _type(shop, event["id"], 1000), _type(shop, event["id"], 0)
    assert paid["fees_cents"] == 80 and free["fees_cents"] == 0
    shown = shop["catalogue"]("GET", f"/api/events/{event['id']}/")[1]
    assert {t["id"]: t["fees_cents"] for t in shown["ticket_types"]} == {paid["id"]: 80, free["id"]: 0}

    status, absorbed, _ = shop["catalogue"]("PATCH", f"/api/events/{event['id']}/", {"fees": {"percent_bps": 500, "passed_on": False}},
                                            claims=ADMIN)
    assert status == 200 and absorbed["fees"]["passed_on"] is False
    assert {t["fees_cents"] for t in absorbed["ticket_types"]} == {0}, "absorbed fees are not the buyer's"

    status, removed, _ = shop["catalogue"]("PATCH", f"/api/events/{event['id']}/", {"fees": None}, claims=ADMIN)
    assert status == 200 and removed["fees"] is None


def test_a_paid_price_under_stripes_minimum_is_refused_when_it_is_set(shop):
    event = _event(shop)
    for price in (1, 49):
        status, answer, _ = shop["catalogue"]("POST", f"/api/events/{event['id']}/ticket-types/",
                                              {"name": "Cheap", "price_cents": price, "capacity": 5}, claims=ADMIN)
        assert status == 422 and answer["code"] == "below_minimum_charge" and answer["minimum_cents"] == 50, answer
    _type(shop, event["id"], 0)  # free is fine
    fifty = _type(shop, event["id"], 50)
    status, answer, _ = shop["catalogue"]("PATCH", f"/api/events/{event['id']}/ticket-types/{fifty['id']}/", {"price_cents": 10},
                                          claims=ADMIN)
    assert status == 422 and answer["code"] == "below_minimum_charge"

    # 40 cents plus a 10-cent fee passed on is 50: chargeable; absorbing the fee makes it 40: refused
    fees_event = _event(shop, fees={"fixed_cents": 10})
    forty = _type(shop, fees_event["id"], 40)
    assert forty["fees_cents"] == 10
    status, answer, _ = shop["catalogue"]("PATCH", f"/api/events/{fees_event['id']}/",
                                          {"fees": {"fixed_cents": 10, "passed_on": False}}, claims=ADMIN)
    assert status == 422 and answer["code"] == "below_minimum_charge" and answer["field"] == "fees"
    assert shop["catalogue"]("GET", f"/api/events/{fees_event['id']}/")[1]["fees"]["passed_on"] is True

    yen = _event(shop, currency="jpy")
    status, answer, _ = shop["catalogue"]("POST", f"/api/events/{yen['id']}/ticket-types/",
                                          {"name": "Cheap", "price_cents": 49, "capacity": 5}, claims=ADMIN)
    assert status == 422 and answer["code"] == "below_minimum_charge" and answer["minimum_cents"] == 50
    _type(shop, yen["id"], 50)


# ------------------------------------------------------------------ charging
def test_fees_passed_on_are_charged_once_and_stored_per_ticket(shop, stripe_standin):
    event = _event(shop, fees={"percent_bps": 250, "fixed_cents": 99, "per": "order"})
    a, b = _type(shop, event["id"], 1999), _type(shop, event["id"], 2500)
    status, answer, _ = _buy(shop, event["id"], [(a["id"], 2), (b["id"], 1)], _buyer())
    assert status == 201, answer
    # 2.5% of 19.99 is 0.49975 -> 50 (half up) twice, of 25.00 is 62.5 -> 63; 99 once spread 33+33+33
    assert (answer["subtotal_cents"], answer["fees_cents"], answer["total_cents"]) == (6498, 50 + 50 + 63 + 99, 6498 + 262)
    assert answer["order_status"] == "pending" and answer["status"] == "requires_payment_method"
    assert sum(t["price_cents"] + t["fees_cents"] for t in answer["tickets"]) == answer["total_cents"]
    intent = payments.retrieve_intent(answer["payment_intent_id"])
    assert (intent.amount, intent.currency) == (answer["total_cents"], "usd")
    stored = {t.ticket_id: int(t.fee_cents) for t in TicketItem.batch_get([TicketItem.key(t["id"]) for t in answer["tickets"]])}
    assert sorted(stored.values()) == [83, 83, 96]

    _pay(answer)  # the webhook's amount check agrees with the total
    order = shop["checkout"]("GET", f"/api/orders/{answer['order_id']}/", claims=ADMIN)[1]
    assert (order["status"], order["subtotal_cents"], order["fees_cents"], order["total_cents"]) == ("paid", 6498, 262, 6760)
    receipt = _sent(answer["order_id"])
    assert "Subtotal: $64.98" in receipt and "Service fees: $2.62" in receipt and "Total: $67.60" in receipt


def test_zero_decimal_currency_is_charged_in_whole_yen(shop, stripe_standin):
    event = _event(shop, currency="jpy", fees={"percent_bps": 350})
    ticket_type = _type(shop, event["id"], 1000)
    status, answer, _ = _buy(shop, event["id"], [(ticket_type["id"], 3)], _buyer())
    assert status == 201 and (answer["fees_cents"], answer["total_cents"], answer["currency"]) == (105, 3105, "jpy")
    assert payments.retrieve_intent(answer["payment_intent_id"]).amount == 3105


def test_refunds_return_the_fee_only_when_refundable_or_by_the_organiser_and_stats_add_up(shop, stripe_standin):
    event = _event(shop, fees={"percent_bps": 1000, "fixed_cents": 50})  # 10% + 0.50 a ticket, not refundable
    ticket_type = _type(shop, event["id"], 2000)
    who = _buyer()
    status, answer, _ = _buy(shop, event["id"], [(ticket_type["id"], 3)], who)
    assert status == 201 and answer["total_cents"] == 3 * 2250
    _pay(answer)
    # the event's fees change: this order keeps those it was sold with
    shop["catalogue"]("PATCH", f"/api/events/{event['id']}/", {"fees": {"percent_bps": 0, "refundable": True}}, claims=ADMIN)

    first, second, third = (t["id"] for t in answer["tickets"])
    status, refund, _ = shop["refund"]("POST", f"/api/orders/{answer['order_id']}/refund/", {"ticket_ids": [first]}, claims=who)
    assert status == 201 and refund["amount_cents"] == 2000, "a customer's refund keeps a non-refundable fee"
    status, refund, _ = shop["refund"]("POST", f"/api/orders/{answer['order_id']}/refund/", {"ticket_ids": [second]}, claims=ADMIN)
    assert status == 201 and refund["amount_cents"] == 2250, "an organiser's refund gives the fee back"

    stats = shop["organiser"]("GET", f"/api/events/{event['id']}/stats/", claims=ADMIN)[1]["money"]
    assert stats == {"currency": "usd", "gross_cents": 6750, "fees_cents": 500, "refunded_cents": 4250, "net_cents": 2000}
    assert stats["gross_cents"] - stats["refunded_cents"] - stats["fees_cents"] == stats["net_cents"]

    status, refund, _ = shop["refund"]("POST", f"/api/orders/{answer['order_id']}/refund/", {}, claims=who)
    assert status == 201 and refund["amount_cents"] == 2000 and refund["ticket_ids"] == [third]
    order = OrderItem.get(*OrderItem.key(answer["order_id"]))
    assert order.status == "refunded", "every ticket is back: the order is refunded though two fees were kept"
    stats = shop["organiser"]("GET", f"/api/events/{event['id']}/stats/", claims=ADMIN)[1]["money"]
    assert stats == {"currency": "usd", "gross_cents": 6750, "fees_cents": 500, "refunded_cents": 6250, "net_cents": 0}


def test_absorbed_fees_show_the_buyer_zero_and_come_out_of_the_organisers_net(shop, stripe_standin):
    event = _event(shop, fees={"percent_bps": 500, "passed_on": False})
    ticket_type = _type(shop, event["id"], 3000)
    status, answer, _ = _buy(shop, event["id"], [(ticket_type["id"], 2)], _buyer())
    assert status == 201 and (answer["subtotal_cents"], answer["fees_cents"], answer["total_cents"]) == (6000, 0, 6000)
    assert {t["fees_cents"] for t in answer["tickets"]} == {0}
    _pay(answer)
    stats = shop["organiser"]("GET", f"/api/events/{event['id']}/stats/", claims=ADMIN)[1]["money"]
    assert stats == {"currency": "usd", "gross_cents": 6000, "fees_cents": 300, "refunded_cents": 0, "net_cents": 5700}


# ------------------------------------------------------------------ free orders
@pytest.fixture
def stripe_unreachable(monkeypatch):
    monkeypatch.setenv("STRIPE_API_BASE", f"http://127.0.0.1:{free_port()}")
    payments._client.cache_clear()
    yield
    payments._client.cache_clear()


def test_a_free_order_is_paid_at_once_with_no_payment_intent(shop, stripe_unreachable):
    event = _event(shop, fees={"percent_bps": 500, "fixed_cents": 100, "per": "order"})  # fees never make a free ticket paid
    free = _type(shop, event["id"], 0, capacity=5)
    who = _buyer()
    status, answer, _ = _buy(shop, event["id"], [(free["id"], 2)], who)
    assert status == 201, answer
    assert (answer["status"], answer["order_status"], answer["client_secret"], answer["payment_intent_id"]) == (
        "succeeded", "paid", None, None)
    assert (answer["subtotal_cents"], answer["fees_cents"], answer["total_cents"]) == (0, 0, 0)
    assert {t["status"] for t in answer["tickets"]} == {"valid"}
    assert _seats(free["id"]) == (3, 0, 2)
    tickets = list(TicketItem.batch_get([TicketItem.key(t["id"]) for t in answer["tickets"]]))
    assert all(t.status == "valid" and t.qr_payload for t in tickets)
    order = shop["checkout"]("GET", f"/api/orders/{answer['order_id']}/", claims=who)[1]
    assert order["status"] == "paid" and order["receipt"] == {"status": "pending", "sent_at": None, "problem": None}
    queued = boto3.client("sqs").receive_message(QueueUrl=boto3.client("sqs").get_queue_url(QueueName=QUEUE)["QueueUrl"])
    assert [json.loads(m["Body"]) for m in queued.get("Messages", [])] == [{"order_id": answer["order_id"]}]
    assert OrderItem.get(*OrderItem.key(answer["order_id"])).GSI2PK is None, "off the expiry index: nothing to expire"

    # canceled by its buyer: tickets void, seats back, no Stripe call (Stripe is unreachable)
    status, canceled, _ = shop["checkout"]("POST", f"/api/orders/{answer['order_id']}/cancel/", claims=who)
    assert status == 200 and canceled["status"] == "refunded", canceled
    assert {t["status"] for t in canceled["tickets"]} == {"void"}
    assert _seats(free["id"]) == (5, 0, 0)


def test_a_free_ticket_is_refunded_alone_with_its_seat_back(shop, stripe_unreachable):
    event = _event(shop)
    free = _type(shop, event["id"], 0, capacity=5)
    who = _buyer()
    answer = _buy(shop, event["id"], [(free["id"], 2)], who)[1]
    first = answer["tickets"][0]["id"]
    status, refund, _ = shop["refund"]("POST", f"/api/orders/{answer['order_id']}/refund/", {"ticket_ids": [first]}, claims=who)
    assert status == 201 and (refund["amount_cents"], refund["status"], refund["stripe_refund_id"]) == (0, "succeeded", None), refund
    order = shop["checkout"]("GET", f"/api/orders/{answer['order_id']}/", claims=who)[1]
    assert order["status"] == "partially_refunded"
    assert {t["id"]: t["status"] for t in order["tickets"]} == {first: "void", answer["tickets"][1]["id"]: "valid"}
    assert _seats(free["id"]) == (4, 0, 1)
    status, again, _ = shop["refund"]("POST", f"/api/orders/{answer['order_id']}/refund/", {"ticket_ids": [first]}, claims=who)
    assert status == 409


def test_the_per_customer_limit_counts_paid_orders_and_holds(shop, stripe_standin):
    event = _event(shop, max_per_customer=3)
    assert event["max_per_customer"] == 3
    free, paid = _type(shop, event["id"], 0), _type(shop, event["id"], 1000)
    who = _buyer()
    assert _buy(shop, event["id"], [(free["id"], 2)], who)[0] == 201  # paid at once
    status, answer, _ = _buy(shop, event["id"], [(paid["id"], 2)], who)
    assert status == 409 and answer["code"] == "customer_limit" and answer["limit"] == 3, answer
    status, held, _ = _buy(shop, event["id"], [(paid["id"], 1)], who)  # held, not paid: counts too
    assert status == 201
    assert _buy(shop, event["id"], [(free["id"], 1)], who)[0] == 409
    assert _buy(shop, event["id"], [(free["id"], 1)], _buyer())[0] == 201, "the limit is per customer"
    shop["checkout"]("POST", f"/api/orders/{held['order_id']}/cancel/", claims=who)  # released: it stops counting
    assert _buy(shop, event["id"], [(free["id"], 1)], who)[0] == 201
    status, answer, _ = _buy(shop, event["id"], [(free["id"], 4)], _buyer())
    assert status == 409 and answer["code"] == "customer_limit"
