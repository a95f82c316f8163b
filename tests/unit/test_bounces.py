"""SES mail events in process (moto): which notifications change an order, and that junk,
duplicates, unknown orders and superseded receipts change nothing (notifications shaped as
AWS documents them: tests/ses_events.py)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.ses_events import ADDRESS, notification, sns_event
from tests.unit.conftest import _Context, load_function
from ticketing import bounces, inbox, orders, receipts
from ticketing.observability import metrics
from ticketing.table import OrderItem

RECEIPT_SENT = "2026-12-01T10:00:00Z"


@pytest.fixture
def order(aws):
    """A paid order whose receipt went out as message 0100018c-receipt-000000."""
    order_id = f"ord_{uuid.uuid4().hex[:12]}"
    pk, sk = OrderItem.key(order_id)
    OrderItem(pk, sk, GSI1PK="CUSTOMER#c-1", GSI1SK=f"2026-12-01T09:00:00Z#{order_id}", order_id=order_id,
              event_id="evt_1", customer_sub="c-1", customer_email=ADDRESS, status="paid", total_cents=2500,
              currency="usd", lines=[], ticket_ids=[], created_at="2026-12-01T09:00:00Z",
              expires_at="2026-12-01T09:15:00Z", updated_at=RECEIPT_SENT, paid_at=RECEIPT_SENT,
              receipt_sent_at=RECEIPT_SENT, receipt_message_id="0100018c-receipt-000000").save()
    return order_id


@pytest.fixture
def counted():
    metrics.clear_metrics()
    yield lambda name: len(metrics.metric_set.get(name, {}).get("Value", []))
    metrics.clear_metrics()


def receipt(order_id):
    return orders.receipt_of(orders.get(order_id))


# ------------------------------------------------------------------ parsing
def test_an_event_publishing_bounce_reads_as_what_it_says():
    event = bounces.parse(notification(order_id="ord_1", sub_type="NoEmail"))
    assert event == bounces.MailEvent(kind="Bounce", message_id="0100018c-receipt-000000", order_id="ord_1",
                                      sent_at="2026-12-01T09:59:59Z", bounce_type="Permanent", detail="NoEmail")


def test_the_order_is_read_from_the_tag_else_the_header_in_both_formats():
    assert bounces.parse(notification(order_id="ord_tag", header=False)).order_id == "ord_tag"
    assert bounces.parse(notification(order_id="ord_head", tag=False)).order_id == "ord_head"
    classic = bounces.parse(notification(order_id="ord_classic", classic=True))  # no tags in the classic format
    assert (classic.kind, classic.order_id, classic.bounce_type) == ("Bounce", "ord_classic", "Permanent")
    assert bounces.parse(notification(order_id=None)).order_id is None  # mail about no order


@pytest.mark.parametrize("junk", [
    None, "", "not json", "[]", "42", '"Bounce"', "[" * 10_000, b"\xff\xfe", {"eventType": "Bounce"},
    {"eventType": 7, "mail": {}}, {"notificationType": "Bounce", "mail": "no"},
    {"Type": "SubscriptionConfirmation", "Message": "You have chosen to subscribe"},
])
def test_junk_is_not_a_notification(junk):
    assert bounces.parse(junk) is None
    assert bounces.handle(junk) == "ignored"


@pytest.mark.parametrize("mail", [
    {"messageId": 5, "headers": "X-Ticketing-Order: ord_1", "tags": ["order_id"], "timestamp": "yesterday"},
    {"messageId": "m", "headers": [None, {"name": "X-Ticketing-Order", "value": "x" * 2000}], "tags": {"order_id": "ord_1"}},
    {"messageId": "m", "headers": [{"name": "X-Ticketing-Order", "value": "ord 1; DROP"}], "tags": {"order_id": []}},
])
def test_odd_fields_are_read_as_absent_never_raised(aws, mail):
    message = json.dumps({"eventType": "Bounce", "bounce": {"bounceType": "Permanent"}, "mail": mail})
    event = bounces.parse(message)
    assert event.kind == "Bounce" and event.order_id is None
    assert bounces.handle(message) == "ignored"


# ------------------------------------------------------------------ acting
def test_a_permanent_bounce_of_the_receipt_is_recorded_once_however_often_it_arrives(order, counted):
    message = notification(order_id=order)
    assert bounces.handle(message) == "recorded"
    shown = receipt(order)
    assert shown.status == "undeliverable" and "bounced" in shown.problem
    first = orders.get(order).receipt_undeliverable_at
    assert bounces.handle(message) == "already_recorded"  # SNS delivered it twice
    assert orders.get(order).receipt_undeliverable_at == first and counted("ReceiptsUndeliverable") == 1
    assert inbox.unread_count("c-1") == 1  # the customer's inbox says so, once


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_a_bounce_that_is_not_permanent_changes_nothing(order, counted, bounce_type):
    assert bounces.handle(notification(order_id=order, bounce_type=bounce_type, sub_type="MailboxFull")) == "ignored"
    assert receipt(order).status == "sent" and counted("ReceiptsUndeliverable") == 0
    assert inbox.unread_count("c-1") == 0


def test_a_complaint_is_counted_and_logged_without_the_address(order, counted, caplog):
    with caplog.at_level("INFO"):
        assert bounces.handle(notification("Complaint", order_id=order)) == "complaint"
    assert receipt(order).status == "sent" and counted("MailComplaints") == 1 and counted("ReceiptsUndeliverable") == 0
    logged = " ".join(str(record.__dict__) for record in caplog.records)  # message and extra fields
    assert "complained" in logged and order in logged and ADDRESS not in logged


def test_a_rejection_counts_the_alarmed_message_rejected_metric(order, counted):
    assert bounces.handle(notification("Reject", order_id=order)) == "rejected"
    assert receipt(order).status == "sent" and counted("MessageRejected") == 1


def test_a_bounce_for_an_unknown_order_creates_nothing(aws, counted):
    assert bounces.handle(notification(order_id="ord_nobodyknows")) == "already_recorded"
    assert orders.get("ord_nobodyknows") is None and counted("ReceiptsUndeliverable") == 0


def test_a_later_send_clears_it_and_the_old_receipts_bounce_cannot_bring_it_back(order):
    old = notification(order_id=order)
    assert bounces.handle(old) == "recorded"
    receipts._record_receipt(order, "0100018c-resent-000001")  # the customer resent it, and it went
    assert receipt(order).status == "sent"
    assert bounces.handle(old) == "already_recorded"  # SNS redelivers the first bounce late
    assert receipt(order).status == "sent"


def test_a_bounce_of_later_mail_about_the_order_is_recorded(order):
    """A refund notice (or a resend) sent after the receipt bounces: the address is gone."""
    later = notification(order_id=order, message_id="0100018c-refund-000002", timestamp="2026-12-05T08:00:00.000Z")
    assert bounces.handle(later) == "recorded" and receipt(order).status == "undeliverable"


def test_a_send_time_refusal_and_a_bounce_share_the_writer(order, counted):
    from ticketing import mail

    receipts._record_undeliverable(order, mail.MailError("no", retryable=False, code=mail.INVALID_ADDRESS))
    assert "cannot receive" in receipt(order).problem
    assert bounces.handle(notification(order_id=order)) == "already_recorded"  # the first word stays
    assert counted("ReceiptsUndeliverable") == 1


# ------------------------------------------------------------------ the function
def test_the_function_acts_on_each_record_and_skips_what_is_not_an_sns_event(order, counted):
    function = load_function("mail_events")
    event = sns_event(notification(order_id=order), notification("Complaint", order_id=order), "junk")
    assert function.lambda_handler(event, _Context()) == {"outcomes": ["recorded", "complaint", "ignored"]}
    assert function.lambda_handler(event, _Context())["outcomes"][0] == "already_recorded"
    for junk in ({}, {"Records": "x"}, {"Records": [None, {"Sns": None}]}, []):
        assert function.lambda_handler(junk, _Context())["outcomes"] in ([], ["ignored", "ignored"])
    assert receipt(order).status == "undeliverable"
