"""ticketing.mail: receipts and refund notices built as MIME, sent through SES v2 (moto in
process), read back from moto's SES backend and parsed as a mail client would."""

from __future__ import annotations

import email
import email.policy
import io
import re
import socket
import time

import boto3
import pytest
import qrcode
from botocore.stub import ANY, Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends
from PIL import Image

from ticketing import mail
from ticketing.config import settings
from ticketing.errors import ConfigurationError
from ticketing.mail import (
    MailError,
    Receipt,
    ReceiptLine,
    ReceiptTicket,
    RefundNotice,
    build_receipt,
    build_refund_notice,
    format_money,
    send,
)

SENDER = "tickets@example.com"
TRICKY_NAME = 'O\'Brien, "Jo" Ünïcode'
NASTY_EVENT = "<script>alert(1)</script> & Co"


def render_png(payload: str, size: int) -> bytes:
    """What ticketing.qr.render_png answers: a real QR code, size x size, as PNG."""
    image = qrcode.make(payload).get_image().convert("L").resize((size, size), Image.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def sender(monkeypatch):
    """SENDER_EMAIL set for this test only, and a fresh SES client either side."""
    monkeypatch.setenv("SENDER_EMAIL", f"Ticketing <{SENDER}>")
    settings.cache_clear()
    mail.reset_client()
    yield monkeypatch
    monkeypatch.undo()
    settings.cache_clear()
    mail.reset_client()


@pytest.fixture
def ses(sender):
    """SES in process with the sender verified; yields moto's SES backend (SES v2 shares it)."""
    with mock_aws():
        boto3.client("ses", region_name="us-east-1").verify_email_identity(EmailAddress=SENDER)
        yield ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]


def sent(backend) -> list[tuple[object, email.message.EmailMessage]]:
    """Every raw message moto accepted, parsed back."""
    return [
        (raw, email.message_from_bytes(raw.raw_data.encode("utf-8"), policy=email.policy.default))
        for raw in backend.sent_messages
    ]


def a_receipt(**changes) -> Receipt:
    values = dict(
        order_id="ord_0001abcd",
        to_email="jo@example.com",
        to_name=TRICKY_NAME,
        event_name=NASTY_EVENT,
        venue="Hall <B> & Annex",
        starts_at="2026-07-01T19:00:00Z",
        currency="usd",
        total_cents=6500,
        lines=(ReceiptLine("General admission", 2, 2500), ReceiptLine("Student", 1, 1500)),
        tickets=(
            ReceiptTicket("tkt_a1", "GA-0001", "General admission", 2500, "v1.tkt_a1.sig-a"),
            ReceiptTicket("tkt_b2", "GA-0002", "General admission", 2500, "v1.tkt_b2.sig-b"),
            ReceiptTicket("tkt_c3", "ST-0001", "Student", 1500, "v1.tkt_c3.sig-c"),
        ),
        order_url="https://tickets.example.com/orders/ord_0001abcd",
    )
    values.update(changes)
    return Receipt(**values)


# ------------------------------------------------------------------ receipts


def test_receipt_is_sent_and_reads_back_as_a_mail_client_sees_it(ses):
    receipt = a_receipt()
    message_id = send(build_receipt(receipt, render_png))

    [(raw, parsed)] = sent(ses)
    assert message_id == raw.id
    assert "jo@example.com" in raw.destinations[0]
    assert parsed["Subject"] == f"Your tickets for {NASTY_EVENT} (order ord_0001abcd)"
    assert parsed["X-Ticketing-Order"] == "ord_0001abcd"
    assert parsed["From"].addresses[0].addr_spec == SENDER
    [to] = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == (TRICKY_NAME, "jo@example.com")
    assert parsed.get_content_type() == "multipart/alternative"

    text = parsed.get_body(("plain",)).get_content()
    assert "$65.00" in text
    assert "2 × General admission @ $25.00 = $50.00" in text
    assert "1 × Student @ $15.00 = $15.00" in text
    for ticket in receipt.tickets:
        assert ticket.serial in text
    assert NASTY_EVENT in text and "Hall <B> & Annex" in text  # raw in plain text
    assert "Wednesday 1 July 2026, 19:00 UTC" in text
    assert "HTML version" in text
    assert receipt.order_url in text

    html_part = parsed.get_body(("html",))
    html = html_part.get_content()
    assert "<script>" not in html and "<B>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html
    assert "Hall &lt;B&gt; &amp; Annex" in html
    assert "O&#x27;Brien, &quot;Jo&quot; Ünïcode" in html
    assert "$65.00" in html

    # The HTML's parent is multipart/related: one inline PNG per ticket, each cid once.
    [related] = [p for p in parsed.walk() if p.get_content_type() == "multipart/related"]
    images = [p for p in related.iter_parts() if p.get_content_type() == "image/png"]
    assert len(images) == 3
    cids = re.findall(r'<img src="cid:([^"]+)" width="200" height="200" alt="QR code for ([^"]+)">', html)
    assert [serial for _, serial in cids] == [t.serial for t in receipt.tickets]
    for ticket, (cid, _) in zip(receipt.tickets, cids):
        assert cid == f"qr-{ticket.ticket_id}@ticketing"
        [image] = [p for p in images if p["Content-ID"] == f"<{cid}>"]
        assert image.get_content_disposition() == "inline"
        assert image.get_filename() == f"{ticket.serial}.png"
        data = image.get_content()
        assert data == render_png(ticket.qr_payload, 200)
        with Image.open(io.BytesIO(data)) as png:
            assert (png.format, png.size) == ("PNG", (200, 200))


def test_receipt_is_seven_bit_with_crlf_lines():
    """SES recommends 7-bit MIME; lines stay within SMTP's limit."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SENDER_EMAIL", SENDER)
        settings.cache_clear()
        raw = build_receipt(a_receipt(event_name="Fête «été» 2026"), render_png).as_bytes()
    settings.cache_clear()
    assert raw.isascii()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Your tickets for Fête «été» 2026 (order ord_0001abcd)"


def test_receipt_without_a_name_or_link(sender):
    message = build_receipt(a_receipt(to_name=None, order_url=None), render_png)
    assert str(message["To"]) == "jo@example.com"
    assert "Hello," in message.get_body(("plain",)).get_content()


def test_receipt_refuses_bad_images_and_unsafe_ids(sender):
    with pytest.raises(ValueError):
        build_receipt(a_receipt(), lambda payload, size: b"GIF89a")
    bad = a_receipt(tickets=(ReceiptTicket("tkt>1", "S", "T", 1, "p"),))
    with pytest.raises(ValueError):
        build_receipt(bad, render_png)


def test_no_sender_configured_fails_loudly(monkeypatch):
    monkeypatch.setenv("SENDER_EMAIL", "")
    settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError):
            build_refund_notice(a_refund())
    finally:
        monkeypatch.undo()
        settings.cache_clear()


# ------------------------------------------------------------------ money


@pytest.mark.parametrize(
    ("cents", "currency", "shown"),
    [
        (2500, "usd", "$25.00"),
        (5, "usd", "$0.05"),
        (1250, "eur", "€12.50"),
        (999, "gbp", "£9.99"),
        (2500, "jpy", "¥2500"),
        (2500, "JPY", "¥2500"),
        (300, "krw", "₩300"),
        (2500, "chf", "25.00 CHF"),
        (1000, "xof", "1000 XOF"),  # zero-decimal, no symbol
        (0, "sek", "0.00 SEK"),
    ],
)
def test_format_money(cents, currency, shown):
    assert format_money(cents, currency) == shown


# ------------------------------------------------------------------ refunds


def a_refund(**changes) -> RefundNotice:
    values = dict(
        order_id="ord_0002efgh",
        to_email="jo@example.com",
        to_name=TRICKY_NAME,
        event_name=NASTY_EVENT,
        currency="jpy",
        amount_cents=2500,
        reason="The event was canceled.",
        ticket_serials=("GA-0001", "GA-0002"),
    )
    values.update(changes)
    return RefundNotice(**values)


def test_refund_notice_is_built_and_sent(ses):
    message_id = send(build_refund_notice(a_refund()))

    [(raw, parsed)] = sent(ses)
    assert message_id == raw.id
    assert parsed["Subject"] == "Refund for order ord_0002efgh"
    assert parsed["X-Ticketing-Order"] == "ord_0002efgh"
    assert parsed["To"].addresses[0].display_name == TRICKY_NAME
    text = parsed.get_body(("plain",)).get_content()
    html = parsed.get_body(("html",)).get_content()
    for body in (text, html):
        assert "¥2500" in body
        assert "The event was canceled." in body
        assert "GA-0001" in body and "GA-0002" in body
    assert NASTY_EVENT in text
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert not [p for p in parsed.walk() if p.get_content_maintype() == "image"]


# ------------------------------------------------------------------ failures


def test_unverified_sender_is_a_permanent_failure(ses, sender):
    sender.setenv("SENDER_EMAIL", "nobody@unverified.example")
    settings.cache_clear()
    with pytest.raises(MailError) as caught:
        send(build_refund_notice(a_refund()))
    assert caught.value.retryable is False
    assert caught.value.code == "MessageRejected"
    assert "nobody@unverified.example" not in str(caught.value)  # addresses are masked
    assert ses.sent_messages == []


def test_unreachable_ses_is_retryable_and_quick(sender):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    mail.reset_client()
    message = build_refund_notice(a_refund())

    started = time.monotonic()
    with pytest.raises(MailError) as caught:
        send(message)
    assert caught.value.retryable is True
    assert caught.value.code == "EndpointConnectionError"
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("MessageRejected", 400, False),
        ("MailFromDomainNotVerifiedException", 400, False),
        ("AccountSuspendedException", 400, False),
        ("BadRequestException", 400, False),
        ("SendingPausedException", 400, True),
        ("TooManyRequestsException", 429, True),
        ("LimitExceededException", 400, True),
        ("ThrottlingException", 400, True),
        ("InternalFailure", 500, True),
        ("SomethingNew", 503, True),
        ("SomethingNew", 400, False),
    ],
)
def test_ses_errors_map_to_retryable_or_not(sender, code, status, retryable):
    message = build_refund_notice(a_refund())
    client = mail._client()
    with Stubber(client) as stub:
        stub.add_client_error(
            "send_email", service_error_code=code, service_message="no for jo@example.com", http_status_code=status
        )
        with pytest.raises(MailError) as caught:
            send(message)
    assert (caught.value.code, caught.value.retryable) == (code, retryable)
    assert "jo@example.com" not in str(caught.value)


@pytest.mark.parametrize(("code", "status", "counted"), [("MessageRejected", 400, 1), ("ThrottlingException", 400, 0)])
def test_a_permanent_refusal_counts_the_alarmed_message_rejected_metric(sender, code, status, counted):
    from ticketing.observability import metrics

    metrics.clear_metrics()
    with Stubber(mail._client()) as stub:
        stub.add_client_error("send_email", service_error_code=code, http_status_code=status)
        with pytest.raises(MailError):
            send(build_refund_notice(a_refund()))
    assert len(metrics.metric_set.get("MessageRejected", {}).get("Value", [])) == counted
    metrics.clear_metrics()


def test_mail_goes_out_with_the_configuration_set_that_reports_bounces(sender):
    sender.setenv("SES_CONFIGURATION_SET", "ticketing-test")
    settings.cache_clear()
    with Stubber(mail._client()) as stub:
        stub.add_response("send_email", {"MessageId": "m-1"}, {
            "FromEmailAddress": SENDER, "Destination": {"ToAddresses": ["jo@example.com"]},
            "Content": {"Raw": {"Data": ANY}},
            "ConfigurationSetName": "ticketing-test",
            "EmailTags": [{"Name": "order_id", "Value": "ord_0002efgh"}],  # what bounce events name the order by
        })
        assert send(build_refund_notice(a_refund())) == "m-1"
