"""The one mailer: receipts, refund notices and event-changed notices, sent through SES v2
as raw MIME.

The domain hands over plain values (`Receipt`, `RefundNotice`, `EventChangedNotice`); this module knows nothing
of DynamoDB or Stripe. Building and sending are separate steps, so a message can be built
(and tested) without AWS and a failed send can be retried without rebuilding it.

Raw MIME rather than SES's "Simple" content because a receipt carries one inline QR image
per ticket, referenced from the HTML by Content-ID, and only a raw message can hold that.
Every part is 7-bit (quoted-printable text, base64 images, RFC 2047 headers), as SES
recommends, and lines end in CRLF.

Whatever a customer or organiser typed (names, event, venue, ticket types) is escaped in
the HTML and encoded by the `email` package in headers, so it cannot inject markup or
headers. Message bodies are never logged; addresses are masked in error messages.

boto3 is imported only when a message is sent: building one needs the standard library
alone.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, parseaddr
from functools import lru_cache
from typing import Any

from ticketing.config import settings
from ticketing.errors import ConfigurationError
from ticketing.money import ZERO_DECIMAL

QR_SIZE = 200  # pixels; the <img> width and height, and what render_png is asked for

# SMTP = the default (modern) policy with CRLF line ends: what goes on the wire.
_POLICY = policy.SMTP

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]+\Z")  # fits a Content-ID's left part unquoted

# Symbols written before the amount; any other currency is "25.00 CHF". Dollars other
# than the US one are qualified, so "$" is never ambiguous.
_SYMBOLS = {
    "usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cny": "CN¥", "inr": "₹", "krw": "₩",
    "cad": "CA$", "aud": "A$", "nzd": "NZ$", "hkd": "HK$", "sgd": "S$", "mxn": "MX$", "brl": "R$",
}
# Stripe counts these in thousandths (ticketing.money does not need to know that; the
# display does: 5120 KWD minor units is "5.120 KWD", not "51.20 KWD").
_THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})

# SES v2 error codes a retry can fix; every other client error is permanent, except 5xx.
_RETRYABLE_CODES = frozenset(
    {
        "SendingPausedException", "TooManyRequestsException", "LimitExceededException",
        "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
        "RequestThrottled", "RequestTimeout", "RequestTimeoutException", "ServiceUnavailable",
        "ServiceUnavailableException", "InternalFailure", "InternalServerError",
    }
)
INVALID_ADDRESS = "InvalidAddress"  # MailError.code when the recipient's address is refused before SES
_ADDRESS_IN_TEXT = re.compile(r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+")


@dataclass(frozen=True)
class ReceiptTicket:
    ticket_id: str
    serial: str
    type_name: str
    price_cents: int
    qr_payload: str  # the signed payload; rendered as the inline QR image


@dataclass(frozen=True)
class ReceiptLine:
    name: str
    qty: int
    price_cents: int  # unit price


@dataclass(frozen=True)
class Receipt:
    order_id: str
    to_email: str
    to_name: str | None
    event_name: str
    venue: str
    starts_at: str  # ISO 8601 UTC with Z
    currency: str  # lower-case ISO 4217
    total_cents: int
    lines: tuple[ReceiptLine, ...]
    tickets: tuple[ReceiptTicket, ...]
    order_url: str | None = None  # link to the order in the front end
    subtotal_cents: int | None = None  # the tickets' prices; with fees_cents, sums to total_cents
    fees_cents: int = 0  # service fees the buyer paid (0 when absorbed or none)


@dataclass(frozen=True)
class RefundNotice:
    order_id: str
    to_email: str
    to_name: str | None
    event_name: str
    currency: str
    amount_cents: int
    reason: str  # a human sentence, e.g. "The event was canceled."
    ticket_serials: tuple[str, ...] = ()
    kind: str = "refund"  # what the inbox files it as: "refund", or "event_canceled" (ticketing.inbox)


@dataclass(frozen=True)
class EventChangedNotice:
    """An event's times or venue changed: one message per ticket holder (ticketing.event_changes)."""

    event_id: str
    order_id: str  # one of the holder's orders (bounces of this mail are recorded on it)
    to_email: str
    to_name: str | None
    event_name: str
    starts_at: str  # now
    ends_at: str
    venue: str
    was_starts_at: str  # before the change
    was_ends_at: str
    was_venue: str
    dedupe: str  # what the inbox files it under, so telling twice is one entry
    event_url: str | None = None


@dataclass(frozen=True)
class TransferNotice:
    """Told to a ticket's new holder: who gave it, for what, and how to find it."""

    order_id: str
    to_email: str
    to_name: str
    from_name: str | None
    event_name: str
    starts_at: str  # ISO 8601 UTC with Z
    serial: str
    type_name: str
    tickets_url: str | None = None  # "my tickets" in the front end


class MailError(Exception):
    """SES refused the message or could not be reached. `retryable` says whether sending
    the same message again later can succeed; `code` is SES's error code (or botocore's
    exception name)."""

    def __init__(self, message: str, *, retryable: bool, code: str = "") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


# ---------------------------------------------------------------------------- money


def format_money(cents: int, currency: str) -> str:
    """`2500, "usd"` -> "$25.00"; `2500, "jpy"` -> "¥2500"; `2500, "chf"` -> "25.00 CHF".

    Minor units as Stripe counts them: none for zero-decimal currencies, thousandths for
    the three-decimal ones, hundredths for the rest. No thousands separators."""
    code = currency.strip().lower()
    decimals = 0 if code in ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2
    units, minor = divmod(abs(int(cents)), 10**decimals)
    number = f"{units}.{minor:0{decimals}d}" if decimals else str(units)
    sign = "-" if cents < 0 else ""
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code.upper()}"


# ---------------------------------------------------------------------------- building


def build_receipt(receipt: Receipt, render_png: Callable[[str, int], bytes]) -> EmailMessage:
    """The receipt: multipart/alternative of plain text and multipart/related HTML, the
    latter with one inline PNG QR code per ticket (`render_png(payload, 200)`)."""
    tickets = receipt.tickets
    ids = [t.ticket_id for t in tickets]
    for ticket_id in ids:
        if not _SAFE_ID.match(ticket_id):
            raise ValueError(f"ticket id {ticket_id!r} cannot be used in a Content-ID")
    if len(set(ids)) != len(ids):
        raise ValueError("a receipt lists each ticket once")

    message = _skeleton(
        f"Your tickets for {receipt.event_name} (order {receipt.order_id})",
        receipt.to_email, receipt.to_name, receipt.order_id, kind="receipt",
    )
    message.set_content(_receipt_text(receipt), subtype="plain", cte="quoted-printable")
    message.add_alternative(_receipt_html(receipt), subtype="html", cte="quoted-printable")
    html_part = message.get_payload()[1]
    for ticket in tickets:
        png = render_png(ticket.qr_payload, QR_SIZE)
        if not isinstance(png, (bytes, bytearray)) or not bytes(png).startswith(_PNG_SIGNATURE):
            raise ValueError("render_png must return PNG bytes")
        html_part.add_related(
            bytes(png), maintype="image", subtype="png", cid=f"<{_cid(ticket)}>",
            disposition="inline", filename=f"{ticket.serial}.png",
        )
    if tickets:
        html_part.set_param("type", "text/html")  # RFC 2387: the root part's type
        del html_part["MIME-Version"]  # add_related copies it; it belongs on the top part only
    return message


def build_refund_notice(notice: RefundNotice) -> EmailMessage:
    """The refund notice: plain text and HTML, no images."""
    message = _skeleton(f"Refund for order {notice.order_id}", notice.to_email, notice.to_name, notice.order_id, kind=notice.kind)
    message.set_content(_refund_text(notice), subtype="plain", cte="quoted-printable")
    message.add_alternative(_refund_html(notice), subtype="html", cte="quoted-printable")
    return message


def build_event_changed(notice: EventChangedNotice) -> EmailMessage:
    """The event-changed notice: plain text and HTML, no images."""
    message = _skeleton(f"{notice.event_name}: new date, time or venue", notice.to_email, notice.to_name,
                        notice.order_id, kind="event_changed")
    message["X-Ticketing-Notice"] = notice.dedupe
    message.set_content(_changed_text(notice), subtype="plain", cte="quoted-printable")
    message.add_alternative(_changed_html(notice), subtype="html", cte="quoted-printable")
    return message


def _changes(n: EventChangedNotice) -> list[tuple[str, str, str]]:
    """(what, now, before) for each part that changed."""
    parts = [("Starts", _when(n.starts_at), _when(n.was_starts_at)), ("Ends", _when(n.ends_at), _when(n.was_ends_at)),
             ("Venue", n.venue, n.was_venue)]
    return [part for part in parts if part[1] != part[2]]


def _changed_text(n: EventChangedNotice) -> str:
    out = [_greeting(n.to_name), "", f"{n.event_name} has changed:"]
    out += [f"  {what}: {now} (was {before})" for what, now, before in _changes(n)]
    out += ["", f"Starts: {_when(n.starts_at)}", f"Ends:   {_when(n.ends_at)}", f"Venue:  {n.venue}", "",
            "Your tickets stay valid for the new date and place; you need do nothing to keep them."]
    if n.event_url:
        out += ["", f"The event: {n.event_url}"]
    return "\n".join(out) + "\n"


def _changed_html(n: EventChangedNotice) -> str:
    e = html.escape
    rows = "".join(f"<li>{e(what)}: <strong>{e(now)}</strong> (was {e(before)})</li>" for what, now, before in _changes(n))
    link = f'<p><a href="{e(n.event_url)}">The event</a></p>\n' if n.event_url else ""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{e(n.event_name)}</title></head>\n"
        '<body style="font-family:sans-serif;color:#222">\n'
        f"<p>{e(_greeting(n.to_name))}</p>\n"
        f"<p><strong>{e(n.event_name)}</strong> has changed:</p>\n<ul>{rows}</ul>\n"
        f"<p>{e(_when(n.starts_at))} to {e(_when(n.ends_at))}<br>{e(n.venue)}</p>\n"
        "<p>Your tickets stay valid for the new date and place; you need do nothing to keep them.</p>\n"
        f"{link}"
        "</body></html>\n"
    )


def build_transfer_notice(notice: TransferNotice) -> EmailMessage:
    """The new holder's notice: plain text and HTML, no QR image (the code is in their
    tickets once they sign in with this address; an email is not where it should travel)."""
    message = _skeleton(f"A ticket for {notice.event_name} was given to you", notice.to_email, notice.to_name, notice.order_id)
    message.set_content(_transfer_text(notice), subtype="plain", cte="quoted-printable")
    message.add_alternative(_transfer_html(notice), subtype="html", cte="quoted-printable")
    return message


def _transfer_lines(n: TransferNotice) -> tuple[str, str]:
    giver = _one_line(n.from_name or "") or "Its holder"
    return (f"{giver} gave you a ticket: {n.type_name} ({n.serial}) for {n.event_name}, {_when(n.starts_at)}.",
            "Sign in with this email address to see it and its QR code in your tickets. "
            "The code sent to the previous holder no longer admits anyone.")


def _transfer_text(n: TransferNotice) -> str:
    gave, how = _transfer_lines(n)
    out = [_greeting(n.to_name), "", gave, how]
    if n.tickets_url:
        out += ["", f"Your tickets: {n.tickets_url}"]
    return "\n".join(out) + "\n"


def _transfer_html(n: TransferNotice) -> str:
    e = html.escape
    gave, how = _transfer_lines(n)
    link = f'<p><a href="{e(n.tickets_url)}">Your tickets</a></p>\n' if n.tickets_url else ""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{e(n.event_name)}</title></head>\n"
        '<body style="font-family:sans-serif;color:#222">\n'
        f"<p>{e(_greeting(n.to_name))}</p>\n<p>{e(gave)}</p>\n<p>{e(how)}</p>\n{link}"
        "</body></html>\n"
    )


def build_waitlist_offer(to_email: str, to_name: str | None, *, event_name: str, type_name: str, qty: int,
                         offer_code: str, expires_at: str, checkout_url: str) -> EmailMessage:
    """A waiting-list offer (issue 19): seats held for the customer until `expires_at`.
    Plain text only; not an order's mail (no order yet), so the inbox entry is filed by
    `ticketing.waitlist` itself."""
    message = EmailMessage(policy=_POLICY)
    message["Subject"] = _one_line(f"{qty} ticket(s) for {event_name} are held for you")
    message["From"] = _sender()
    try:
        message["To"] = _address(to_email, to_name)
    except ValueError:
        raise MailError("the recipient's address cannot receive mail from us", retryable=False, code=INVALID_ADDRESS) from None
    message["Date"] = formatdate(usegmt=True)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content("\n".join([
        _greeting(to_name), "",
        f"Seats came back for {event_name}: {qty} x {type_name} are held for you until {expires_at} (UTC).",
        f"Check out with the offer code {offer_code} before then: {checkout_url}",
        "If you do not, they are offered to the next person on the waiting list.",
    ]) + "\n", subtype="plain", cte="quoted-printable")
    return message


def _skeleton(subject: str, to_email: str, to_name: str | None, order_id: str, kind: str = "") -> EmailMessage:
    message = EmailMessage(policy=_POLICY)
    message["Subject"] = _one_line(subject)
    message["From"] = _sender()
    try:
        message["To"] = _address(to_email, to_name)
    except ValueError:  # the customer's address, not our fault: permanent, recorded on the order
        raise MailError("the recipient's address cannot receive mail from us", retryable=False, code=INVALID_ADDRESS) from None
    message["Date"] = formatdate(usegmt=True)
    message["X-Ticketing-Order"] = order_id
    if kind:  # what the customer's inbox files it as (ticketing.inbox)
        message["X-Ticketing-Kind"] = kind
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
    return message


def _sender() -> Address:
    raw = settings().sender_email
    if not raw:
        raise ConfigurationError("SENDER_EMAIL is not set")
    name, addr = parseaddr(raw)
    try:
        return _address(addr, name)
    except ValueError:
        raise ConfigurationError(f"SENDER_EMAIL is not an email address: {raw!r}") from None


def _address(addr_spec: str, display_name: str | None) -> Address:
    """An Address the `email` package quotes and encodes itself (commas, quotes and
    non-ASCII in the name are safe). The domain goes to punycode; SES cannot deliver to a
    non-ASCII local part, so that is refused here rather than by SES."""
    local, at, domain = addr_spec.strip().rpartition("@")
    if not at or not local or not domain or not local.isascii():
        raise ValueError("not an email address SES can deliver to")
    try:
        domain = domain.encode("idna").decode("ascii")
        return Address(display_name=_one_line(display_name or ""), addr_spec=f"{local}@{domain}")
    except (UnicodeError, HeaderParseError, ValueError, IndexError):
        raise ValueError("not an email address SES can deliver to") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cid(ticket: ReceiptTicket) -> str:
    return f"qr-{ticket.ticket_id}@ticketing"


def _when(starts_at: str) -> str:
    """"2026-07-01T19:00:00Z" -> "Wednesday 1 July 2026, 19:00 UTC"; anything else as is."""
    try:
        moment = datetime.fromisoformat(starts_at.strip().replace("Z", "+00:00"))
    except ValueError:
        return starts_at
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return f"{moment:%A} {moment.day} {moment:%B %Y}, {moment:%H:%M} UTC"


def _greeting(name: str | None) -> str:
    name = _one_line(name or "")
    return f"Hello {name}," if name else "Hello,"


def _subtotal(r: Receipt) -> int:
    return r.subtotal_cents if r.subtotal_cents is not None else r.total_cents - r.fees_cents


def _receipt_text(r: Receipt) -> str:
    money = lambda cents: format_money(cents, r.currency)  # noqa: E731
    out = [
        _greeting(r.to_name), "",
        "Thank you for your order. Your tickets are below.", "",
        f"Event: {r.event_name}",
        f"Venue: {r.venue}",
        f"When:  {_when(r.starts_at)}", "",
        f"Order {r.order_id}",
    ]
    out += [f"  {line.qty} × {line.name} @ {money(line.price_cents)} = {money(line.qty * line.price_cents)}" for line in r.lines]
    if r.fees_cents:
        out += [f"Subtotal: {money(_subtotal(r))}", f"Service fees: {money(r.fees_cents)}"]
    out += [f"Total: {money(r.total_cents)}", "", f"Your tickets ({len(r.tickets)}):"]
    out += [f"  {t.serial}  {t.type_name}  (QR code: {t.serial}.png)" for t in r.tickets]
    out += [
        "",
        "The QR codes are in the HTML version of this email and attached as images,",
        "one per ticket. Show each at the entrance; keep them private, since whoever",
        "holds a code holds the ticket.",
    ]
    if r.order_url:
        out += ["", f"Your order: {r.order_url}"]
    return "\n".join(out) + "\n"


def _receipt_html(r: Receipt) -> str:
    e = html.escape
    money = lambda cents: e(format_money(cents, r.currency))  # noqa: E731
    rows = "".join(
        f'<tr><td>{line.qty} &times; {e(line.name)}</td><td style="text-align:right">{money(line.price_cents)}</td>'
        f'<td style="text-align:right">{money(line.qty * line.price_cents)}</td></tr>\n'
        for line in r.lines
    )
    tickets = "".join(
        f'<div style="display:inline-block;margin:0 16px 16px 0;text-align:center">'
        f'<img src="cid:{e(_cid(t))}" width="{QR_SIZE}" height="{QR_SIZE}" alt="QR code for {e(t.serial)}">'
        f"<br><strong>{e(t.serial)}</strong><br>{e(t.type_name)}</div>\n"
        for t in r.tickets
    )
    link = f'<p><a href="{e(r.order_url)}">View your order</a></p>\n' if r.order_url else ""
    fee_rows = (
        f'<tr><td colspan="2">Subtotal</td><td style="text-align:right">{money(_subtotal(r))}</td></tr>\n'
        f'<tr><td colspan="2">Service fees</td><td style="text-align:right">{money(r.fees_cents)}</td></tr>\n'
    ) if r.fees_cents else ""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{e(r.event_name)}</title></head>\n"
        '<body style="font-family:sans-serif;color:#222">\n'
        f"<p>{e(_greeting(r.to_name))}</p>\n"
        "<p>Thank you for your order. Your tickets are below.</p>\n"
        f"<h1 style=\"font-size:20px\">{e(r.event_name)}</h1>\n"
        f"<p>{e(r.venue)}<br>{e(_when(r.starts_at))}</p>\n"
        f"<h2 style=\"font-size:16px\">Order {e(r.order_id)}</h2>\n"
        '<table cellpadding="4" style="border-collapse:collapse">\n'
        "<tr><th align=\"left\">Item</th><th align=\"right\">Each</th><th align=\"right\">Amount</th></tr>\n"
        f"{rows}"
        f"{fee_rows}"
        f'<tr><td colspan="2"><strong>Total</strong></td><td style="text-align:right"><strong>{money(r.total_cents)}</strong></td></tr>\n'
        "</table>\n"
        f"<h2 style=\"font-size:16px\">Your tickets ({len(r.tickets)})</h2>\n"
        f"{tickets}"
        "<p>Show each ticket's QR code at the entrance. Keep it private: whoever holds the code holds the ticket.</p>\n"
        f"{link}"
        "</body></html>\n"
    )


def _refund_text(n: RefundNotice) -> str:
    out = [
        _greeting(n.to_name), "",
        f"We have refunded {format_money(n.amount_cents, n.currency)} for order {n.order_id} ({n.event_name}).",
        n.reason,
    ]
    if n.ticket_serials:
        out += ["", "These tickets are no longer valid:"] + [f"  {serial}" for serial in n.ticket_serials]
    out += ["", "The money goes back to the card you paid with; banks usually show it within 5 to 10 business days."]
    return "\n".join(out) + "\n"


def _refund_html(n: RefundNotice) -> str:
    e = html.escape
    voided = ""
    if n.ticket_serials:
        items = "".join(f"<li>{e(serial)}</li>" for serial in n.ticket_serials)
        voided = f"<p>These tickets are no longer valid:</p>\n<ul>{items}</ul>\n"
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>Refund for order {e(n.order_id)}</title></head>\n"
        '<body style="font-family:sans-serif;color:#222">\n'
        f"<p>{e(_greeting(n.to_name))}</p>\n"
        f"<p>We have refunded <strong>{e(format_money(n.amount_cents, n.currency))}</strong> "
        f"for order {e(n.order_id)} ({e(n.event_name)}).</p>\n"
        f"<p>{e(n.reason)}</p>\n"
        f"{voided}"
        "<p>The money goes back to the card you paid with; banks usually show it within 5 to 10 business days.</p>\n"
        "</body></html>\n"
    )


# ---------------------------------------------------------------------------- sending


@lru_cache(maxsize=1)
def _client() -> Any:
    """One SES v2 client per container. boto3 reads AWS_ENDPOINT_URL itself. Short
    timeouts: a Lambda should learn SES is away in seconds, not after a minute."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sesv2",
        region_name=settings().region,
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}),
    )


def reset_client() -> None:
    """Forget the cached client, so the next send builds one from the current environment."""
    _client.cache_clear()


def send(message: EmailMessage, *, customer_sub: str | None = None, event_id: str | None = None) -> str:
    """Send a built message as raw MIME, with the configuration set that reports bounces
    and complaints (`SES_CONFIGURATION_SET`); answers SES's MessageId. `customer_sub` and
    `event_id` (the order's, which the caller holds) file it in the inbox without reading
    the order again. Raises MailError; a
    refusal no retry can fix (SES's MessageRejected and its kind) also counts a
    `MessageRejected` metric, which is alarmed: receipts must not stop unnoticed."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    senders = _addr_specs(message, "From")
    if not senders:
        raise ValueError("the message has no From address")
    destination: dict[str, list[str]] = {"ToAddresses": _addr_specs(message, "To")}
    if cc := _addr_specs(message, "Cc"):
        destination["CcAddresses"] = cc
    if not destination["ToAddresses"]:
        raise ValueError("the message has no To address")
    request: dict[str, Any] = {"FromEmailAddress": senders[0], "Destination": destination,
                               "Content": {"Raw": {"Data": message.as_bytes()}}}
    if settings().ses_configuration_set:
        request["ConfigurationSetName"] = settings().ses_configuration_set
    order_id = str(message.get("X-Ticketing-Order") or "")
    if _SAFE_ID.match(order_id) and len(order_id) <= 256:  # SES's bounce and complaint events carry it (ticketing.bounces)
        request["EmailTags"] = [{"Name": "order_id", "Value": order_id}]
    try:
        answer = _client().send_email(**request)
    except ClientError as exc:
        error = _refused(exc)
        if not error.retryable:
            from ticketing.observability import metrics

            metrics.add_metric(name="MessageRejected", unit="Count", value=1)
        raise error from exc
    except (BotoConnectionError, HTTPClientError) as exc:  # refused, timed out, reset
        name = type(exc).__name__
        raise MailError(f"SES could not be reached ({name})", retryable=True, code=name) from exc
    _file_in_inbox(message, answer["MessageId"], customer_sub, event_id)
    return answer["MessageId"]


def _file_in_inbox(message: EmailMessage, message_id: str, customer_sub: str | None, event_id: str | None) -> None:
    """The one hook that makes every customer email a notification too (ticketing.inbox).
    The email has gone: a failure here is logged, never raised, so no caller sends twice."""
    if not message.get("X-Ticketing-Kind"):
        return
    try:
        from ticketing import inbox

        inbox.record_mail(message, message_id, customer_sub=customer_sub, event_id=event_id)
    except Exception:  # noqa: BLE001 - see above
        from ticketing.observability import logger

        logger.warning("sent email not filed in the inbox", extra={"order_id": str(message.get("X-Ticketing-Order"))})


def _addr_specs(message: EmailMessage, name: str) -> list[str]:
    specs: list[str] = []
    for header in message.get_all(name, []):
        addresses = getattr(header, "addresses", None)
        if addresses is None:  # a message built with the compat32 policy
            specs += [addr for _, addr in getaddresses([str(header)]) if addr]
        else:
            specs += [address.addr_spec for address in addresses]
    return specs


def _refused(exc: Any) -> MailError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "")) or "Unknown"
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    retryable = code in _RETRYABLE_CODES or status >= 500
    detail = _ADDRESS_IN_TEXT.sub("<address>", str(error.get("Message", "")))
    return MailError(f"SES refused the email ({code}): {detail}".rstrip(": "), retryable=retryable, code=code)
