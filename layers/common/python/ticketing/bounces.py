"""Mail that fails after SES accepted it: bounces, complaints and rejections, and the one
writer that records an undeliverable receipt on an order.

SES reports what happens to every email sent with our configuration set (bounce, complaint,
reject) to the mail events topic (template.yaml); the mail events function hands each
notification here. What each one does:
- a *Permanent* bounce of mail about an order (the order id comes from the email's
  `order_id` tag or its `X-Ticketing-Order` header, both set by ticketing.mail) is the
  customer's data, not our outage: recorded on the order exactly as an address refused at
  send time is (`receipt: {status: undeliverable, problem}` on GET /api/orders/{id}/,
  metric ReceiptsUndeliverable, alarmed);
- a complaint (the recipient marked it as spam) counts `MailComplaints` and is logged,
  nothing else;
- a rejection (SES found a virus after accepting the email) counts `MessageRejected`, as a
  refusal at send time does;
- transient and undetermined bounces, other event types and anything unreadable are logged
  and skipped: this module never raises for a notification's content.

Recording is one conditional update: it never creates an item for an unknown order, a
notification delivered twice records (and counts) once, and a later successful send still
clears it (ticketing.receipts). A bounce of an older receipt that a later send replaced is
not recorded. Addresses never reach the logs.

Both SES formats are read: event publishing (`eventType`, what the configuration set
publishes) and the classic feedback notifications (`notificationType`, what an identity's
own bounce topic would publish).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import UpdateError

from ticketing import clock, ids
from ticketing.lifecycle.writes import condition_failed
from ticketing.observability import logger, metrics
from ticketing.table import OrderItem

ORDER_TAG = "order_id"  # the SES message tag ticketing.mail sets on mail about an order
ORDER_HEADER = "X-Ticketing-Order"  # the header it sets too (read if the tag is missing)
BOUNCED = "Mail to the email address on this order bounced for good; your tickets are in your account."


@dataclass(frozen=True)
class MailEvent:
    """What one SES notification says, addresses left out."""

    kind: str  # "Bounce", "Complaint", "Reject", or another SES event type
    message_id: str | None  # SES's id of the email concerned
    order_id: str | None  # the order the email was about, if it was about one
    sent_at: str | None  # when SES accepted the email (ISO 8601 UTC, to the second)
    bounce_type: str | None = None  # "Permanent", "Transient" or "Undetermined"
    detail: str | None = None  # the bounce's subtype, the complaint's feedback type or the rejection's reason


# --------------------------------------------------------------- writing
def record_undeliverable(order_id: str, problem: str, cause: str, *, message_id: str | None = None,
                         sent_at: str | None = None) -> bool:
    """Record on the order that its receipt cannot be delivered (`problem` is shown to the
    customer), count ReceiptsUndeliverable and file it in the customer's inbox; the one
    place that does. Conditional: the
    order exists and is not recorded already. For a bounce (`message_id`), also: the email
    bounced is the order's receipt, or no receipt was recorded, or it was sent after the
    last recorded one (a refund notice, a resend); an older receipt's bounce is not.
    Returns whether it was recorded now."""
    condition = OrderItem.PK.exists() & OrderItem.receipt_undeliverable_at.does_not_exist()
    if message_id is not None:
        current = (OrderItem.receipt_message_id == message_id) | OrderItem.receipt_sent_at.does_not_exist()
        if sent_at:
            current = current | (OrderItem.receipt_sent_at < sent_at)
        condition = condition & current
    order = OrderItem(*OrderItem.key(order_id))
    try:
        order.update(
            actions=[
                OrderItem.receipt_undeliverable_at.set(clock.iso(clock.now())),
                OrderItem.receipt_problem.set(problem),
                OrderItem.receipt_claimed_until.remove(),
            ],
            condition=condition,
        )
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        logger.info("receipt undeliverable already recorded, or no such order", extra={"order_id": order_id, "cause": cause})
        return False
    metrics.add_metric(name="ReceiptsUndeliverable", unit="Count", value=1)
    logger.warning("receipt undeliverable", extra={"order_id": order_id, "mail_error": cause})
    from ticketing import inbox  # pydantic, needed only now

    inbox.receipt_undeliverable(order)  # `update` read the order back: the customer learns it in the app
    return True


# --------------------------------------------------------------- reading
def parse(message: Any) -> MailEvent | None:
    """One SES notification (the SNS message: a JSON string, or already a dict) -> MailEvent,
    or None if it is not one. Never raises."""
    if isinstance(message, (str, bytes)):
        try:
            message = json.loads(message)
        except (ValueError, RecursionError):
            return None
    if not isinstance(message, dict):
        return None
    kind = message.get("eventType") or message.get("notificationType")
    mail = message.get("mail")
    if not isinstance(kind, str) or not isinstance(mail, dict):
        return None
    message_id = _text(mail.get("messageId"))
    bounce_type = detail = None
    if kind == "Bounce":
        bounce = _dict(message.get("bounce"))
        bounce_type, detail = _text(bounce.get("bounceType")), _text(bounce.get("bounceSubType"))
    elif kind == "Complaint":
        detail = _text(_dict(message.get("complaint")).get("complaintFeedbackType"))
    elif kind == "Reject":
        detail = _text(_dict(message.get("reject")).get("reason"))
    return MailEvent(kind=kind[:64], message_id=message_id, order_id=_order_id(mail), sent_at=_moment(mail.get("timestamp")),
                     bounce_type=bounce_type, detail=detail)


def _order_id(mail: dict[str, Any]) -> str | None:
    """The order the email was about: its tag, else its header; None if neither is a plausible id."""
    tags = _dict(mail.get("tags")).get(ORDER_TAG)
    candidates = [tags[0]] if isinstance(tags, list) and tags else []
    headers = mail.get("headers")
    for header in headers if isinstance(headers, list) else []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == ORDER_HEADER.lower():
            candidates.append(header.get("value"))
    for candidate in candidates:
        if isinstance(candidate, str) and ids.plausible(candidate.strip()):
            return candidate.strip()
    return None


def _moment(value: Any) -> str | None:
    try:
        return clock.iso(clock.parse_iso(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value[:256] if isinstance(value, str) and value else None


# --------------------------------------------------------------- acting
def handle(message: Any) -> str:
    """Act on one SES notification; answers what was done (for the logs and tests):
    "recorded", "already_recorded" (a duplicate, an unknown order or a superseded receipt),
    "complaint", "rejected", or "ignored"."""
    event = parse(message)
    if event is None:
        logger.warning("not an SES notification; skipped")
        return "ignored"
    about = {"ses_event": event.kind, "ses_message_id": event.message_id, "order_id": event.order_id, "detail": event.detail}
    if event.kind == "Complaint":
        metrics.add_metric(name="MailComplaints", unit="Count", value=1)
        logger.warning("a recipient complained about our email", extra=about)
        return "complaint"
    if event.kind == "Reject":
        metrics.add_metric(name="MessageRejected", unit="Count", value=1)
        logger.warning("SES rejected an email it had accepted", extra=about)
        return "rejected"
    if event.kind != "Bounce" or event.bounce_type != "Permanent":
        logger.info("mail event needs nothing", extra={**about, "bounce_type": event.bounce_type})
        return "ignored"
    if event.order_id is None or event.message_id is None:
        logger.info("a permanent bounce of mail about no order", extra=about)
        return "ignored"
    recorded = record_undeliverable(event.order_id, BOUNCED, f"Bounce/{event.detail or 'Permanent'}",
                                    message_id=event.message_id, sent_at=event.sent_at)
    return "recorded" if recorded else "already_recorded"
