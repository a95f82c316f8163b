"""A customer's notification inbox (issue 17).

Every email sent to a customer is also a notification: `ticketing.mail.send` hands each
message it sent to `record_mail`, which reads what the message says about itself (the
`X-Ticketing-Kind` and `X-Ticketing-Order` headers the builders set, the subject, the
plain text) and files it in the inbox of the order's customer. One hook, not one per
caller, so no kind of mail can be forgotten.

Writing twice is harmless: a notification's id is derived from what it reports (a
receipt: its order, so a resent receipt is not a second entry; anything else: the SES
message id of the email), and it is written only if absent.

Items live in the customer's own partition (`INBOX#<sub>`), so another customer's id is
not found (404); GSI1 lists the inbox newest first; GSI2 holds only the unread ones (the
attributes are removed on read), so the unread count and `?unread=true` read only those.
"""

from __future__ import annotations

import hashlib
import re
from email.message import EmailMessage
from typing import Any, Literal

from pydantic import BaseModel
from pynamodb.exceptions import PutError, UpdateError

from ticketing import clock
from ticketing.auth import Caller
from ticketing.errors import NotFound
from ticketing.lifecycle.writes import condition_failed
from ticketing.observability import logger
from ticketing.pages import ID, STAMP, decode_key, encode_cursor
from ticketing.table import NotificationItem, OrderItem

Kind = Literal["receipt", "refund", "event_changed", "event_canceled", "receipt_undeliverable", "waitlist_offer"]
KINDS = frozenset({"receipt", "refund", "event_changed", "event_canceled", "receipt_undeliverable", "waitlist_offer"})
DEFAULT_PAGE = 50
BODY_CHARS = 1000  # an inbox entry's text: the email's plain text, cut here
READ_ALL_MAX = 1000  # notifications marked read per call (a second call does the rest)


class NotificationOut(BaseModel):
    id: str
    kind: str
    title: str
    body: str
    order_id: str | None
    event_id: str | None
    created_at: str
    read_at: str | None


class NotificationPage(BaseModel):
    notifications: list[NotificationOut]
    unread: int
    count: int
    next_cursor: str | None = None


class UnreadOut(BaseModel):
    unread: int


def _id(sub: str, dedupe: str) -> str:
    return "ntf_" + hashlib.sha256(f"{sub}\n{dedupe}".encode()).hexdigest()[:24]


def record(sub: str, kind: str, title: str, body: str, *, dedupe: str, order_id: str | None = None,
           event_id: str | None = None) -> str:
    """File a notification once (by `dedupe`); answers its id."""
    notification_id = _id(sub, dedupe)
    created = clock.iso(clock.now())
    sort = f"{created}#{notification_id}"
    item = NotificationItem(
        *NotificationItem.key(sub, notification_id), GSI1PK=NotificationItem.inbox(sub), GSI1SK=sort,
        GSI2PK=NotificationItem.unread(sub), GSI2SK=sort, notification_id=notification_id, sub=sub, kind=kind,
        title=title[:200], body=body[:BODY_CHARS], order_id=order_id, event_id=event_id, created_at=created,
    )
    try:
        item.save(condition=NotificationItem.PK.does_not_exist())
    except PutError as exc:
        if not condition_failed(exc):
            raise
    return notification_id


def _plain_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    text = part.get_content() if part is not None else ""
    lines = [line.strip() for line in text.splitlines()]
    if lines and lines[0].startswith("Hello"):
        lines = lines[1:]  # the greeting says nothing in an inbox
    return " ".join(" ".join(line for line in lines if line).split())


def record_mail(message: EmailMessage, message_id: str, *, customer_sub: str | None = None,
                event_id: str | None = None) -> str | None:
    """The mail hook: file a sent customer email in its customer's inbox (None if the
    message names no order or kind, or its order is gone). The order is read for its
    customer only when the sender did not say whose it is."""
    kind = str(message.get("X-Ticketing-Kind") or "")
    order_id = str(message.get("X-Ticketing-Order") or "")
    if kind not in KINDS or not order_id:
        return None
    if not customer_sub:
        try:
            order = OrderItem.get(*OrderItem.key(order_id), attributes_to_get=["customer_sub", "event_id"])
        except OrderItem.DoesNotExist:
            return None
        customer_sub, event_id = order.customer_sub, order.event_id
    dedupe = f"receipt\n{order_id}" if kind == "receipt" else f"{kind}\n{message_id}"
    return record(customer_sub, kind, str(message.get("Subject") or kind), _plain_text(message),
                  dedupe=dedupe, order_id=order_id, event_id=event_id)


def receipt_undeliverable(order: OrderItem) -> None:
    """SES refused the receipt for good: tell the customer in the inbox, once per order
    (the email cannot). A failure here is logged, never raised: the order is paid."""
    try:
        record(order.customer_sub, "receipt_undeliverable", f"We could not email your tickets (order {order.order_id})",
               "The email address on your order refused our receipt. Your order is paid and your tickets are "
               "valid: find them under My tickets, or check the address and ask for the receipt again.",
               dedupe=f"receipt_undeliverable\n{order.order_id}", order_id=order.order_id, event_id=order.event_id)
    except Exception:  # noqa: BLE001 - see above
        logger.warning("undeliverable receipt not filed in the inbox", extra={"order_id": order.order_id})


# ------------------------------------------------------------------ routes
def _out(item: NotificationItem) -> NotificationOut:
    return NotificationOut(id=item.notification_id, kind=item.kind, title=item.title, body=item.body,
                           order_id=item.order_id, event_id=item.event_id, created_at=item.created_at,
                           read_at=item.read_at)


def _start(cursor: str | None, index: str, partition: str, sub: str) -> dict[str, Any] | None:
    """The cursor's key, if this listing handed it to this caller (else 400 bad_cursor)."""
    inbox_key = re.escape(NotificationItem.inbox(sub))
    return decode_key(cursor, {"PK": inbox_key, "SK": "NOTE#" + ID, f"{index}PK": re.escape(partition),
                               f"{index}SK": STAMP + "#" + ID})


def unread_count(sub: str) -> int:
    total, start = 0, None
    while True:
        answer = NotificationItem._get_connection().query(
            NotificationItem.unread(sub), index_name="GSI2", select="COUNT", exclusive_start_key=start,
        )
        total += int(answer.get("Count", 0))
        start = answer.get("LastEvaluatedKey")
        if not start:
            return total


def my_notifications(who: Caller, *, unread: bool = False, limit: int = DEFAULT_PAGE,
                     cursor: str | None = None) -> NotificationPage:
    index = "GSI2" if unread else "GSI1"
    partition = NotificationItem.unread(who.sub) if unread else NotificationItem.inbox(who.sub)
    answer = NotificationItem._get_connection().query(
        partition, index_name=index, scan_index_forward=False, limit=max(1, min(limit, 100)),
        exclusive_start_key=_start(cursor, index, partition, who.sub),
    )
    found = [_out(NotificationItem.from_raw_data(raw)) for raw in answer.get("Items", [])]
    return NotificationPage(notifications=found, unread=unread_count(who.sub), count=len(found),
                            next_cursor=encode_cursor(answer.get("LastEvaluatedKey")))


def mark_read(who: Caller, notification_id: str) -> NotificationOut:
    """Mark one of the caller's notifications read (again: no change); NotFound otherwise."""
    item = NotificationItem(*NotificationItem.key(who.sub, notification_id))
    try:
        item.update(
            actions=[NotificationItem.read_at.set(NotificationItem.read_at | clock.iso(clock.now())),
                     NotificationItem.GSI2PK.remove(), NotificationItem.GSI2SK.remove()],
            condition=NotificationItem.PK.exists(),
        )
    except UpdateError as exc:
        if condition_failed(exc):
            raise NotFound("No notification of yours has this id.", code="unknown_notification") from None
        raise
    return _out(item)


def mark_all_read(who: Caller) -> UnreadOut:
    done, start = 0, None
    while done < READ_ALL_MAX:
        answer = NotificationItem._get_connection().query(
            NotificationItem.unread(who.sub), index_name="GSI2", limit=100, exclusive_start_key=start,
        )
        for raw in answer.get("Items", []):
            found = NotificationItem.from_raw_data(raw)
            try:
                mark_read(who, found.notification_id)
            except NotFound:
                pass
            done += 1
        start = answer.get("LastEvaluatedKey")
        if not start:
            break
    return UnreadOut(unread=unread_count(who.sub))
