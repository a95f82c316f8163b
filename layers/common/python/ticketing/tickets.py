"""A customer's tickets and orders, and ticket QR codes as data and as images.

Listings (`/api/me/tickets/`, `/api/me/orders/`) read the customer's own partition of
GSI1 (`CUSTOMER#<sub>`, newest first): a page is ONE Query, plus one BatchGetItem for
what the page's items do not carry themselves (a ticket's order status; an order's event
name). Never a call per item, so a page costs the same at 1 item or 100.

Images are rendered once per (ticket, signing key, size, format) and kept in the private
QR bucket under `qr/<ticket_id>/<kid>/<size>.<ext>`; every later request reads them back
with one GetObject. The kid is in the key because a ticket's payload is determined by
its ids and the key that signed it (Ed25519 signatures are deterministic): a ticket
re-signed under another key gets new images, never a stale one.

Who sees what: a customer sees only their own tickets and orders; anyone else's is a
404, never a 403, so nobody learns it exists. Admins see any ticket by id.

A ticket shows its QR payload and images only while it can be presented at the gate
(`valid`, or `used`, which the gate answers `already_used`): `pending` has no payload
yet and `void` will never admit anyone, so both answer null and the image route 409.
Hiding a void ticket's code revokes nothing (the receipt email has it); the gate's status
check and the scanners' voided list do that. It just stops the app presenting it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field

from ticketing import clock, qr
from ticketing.auth import Caller
from ticketing.config import settings
from ticketing.errors import ConfigurationError, Conflict, InvalidInput, NotFound
from ticketing.orders import PaymentOut
from ticketing.pages import ID, STAMP, decode_key, encode_cursor
from ticketing.table import EventItem, OrderItem, TicketItem, customer_partition

TicketStatus = Literal["pending", "valid", "used", "void"]
OrderStatus = Literal["pending", "paid", "canceled", "expired", "partially_refunded", "refunded", "disputed"]
ImageFormat = Literal["png", "svg"]

DEFAULT_PAGE = 50
MAX_ID_LENGTH = 64  # ids are 23 characters; anything much longer is not one of ours
FILTERED_READ_FACTOR = 4  # a filtered page reads up to this many items per item it answers
URL_SECONDS = 15 * 60  # lifetime of a presigned image URL
DATA_IMAGE_SIZE = 200  # the size qr/data's URLs show, as the receipt's images
IMAGE_CACHE = "private, max-age=3600"  # an image never changes; a ticket may be voided, hence an hour
SHOWABLE = ("valid", "used")
CONTENT_TYPES: dict[str, str] = {"png": "image/png", "svg": "image/svg+xml"}


# ----------------------------------------------------------------- output
class FixtureInfo(BaseModel):
    id: str
    starts_at: str | None = None
    ends_at: str | None = None


class TicketOut(BaseModel):
    """A ticket as "Get User Tickets" (seed 000) shows it, plus ids, price and currency."""

    id: str
    serial: str
    ticket_type_id: str
    ticket_type_name: str
    event_id: str
    event_name: str | None
    order_id: str
    order_status: str | None  # null only if the order could not be read (never expected)
    status: str
    price_cents: int
    currency: str
    issued_at: str | None
    used_at: str | None
    fixture_info: FixtureInfo | None
    code_version: int = Field(0, description="The QR code's version: a transfer gives the ticket a new code, "
                                            "and a code kept on a device under an older version is void")


class TicketPage(BaseModel):
    tickets: list[TicketOut]
    count: int
    next_cursor: str | None = None


class OrderLineOut(BaseModel):
    ticket_type_id: str
    ticket_type_name: str
    qty: int
    price_cents: int


class MyOrderOut(BaseModel):
    """An order in a listing: `orders.OrderOut` without its per-ticket list and refunds
    (each would cost a read per order), with the lines and ticket ids the order item
    itself carries instead. `GET /api/orders/{order_id}/` has the rest."""

    order_id: str
    event_id: str
    event_name: str | None
    fixture_id: str | None = None
    status: str
    total_cents: int
    currency: str
    created_at: str
    expires_at: str
    paid_at: str | None = None
    payment: PaymentOut
    lines: list[OrderLineOut]
    ticket_ids: list[str]
    refunded_cents: int


class OrderPage(BaseModel):
    orders: list[MyOrderOut]
    count: int
    next_cursor: str | None = None


class QrDataOut(BaseModel):
    """seed 000 "Get QR Code Data". The URLs are presigned S3 GETs that work in an <img>
    without a token until `qr_urls_expire_at`; all three are null unless the ticket is
    valid or used."""

    ticket_id: str
    serial: str
    qr_payload: str | None
    qr_png_url: str | None
    qr_svg_url: str | None
    qr_urls_expire_at: str | None
    status: str
    event_id: str
    event_name: str | None
    ticket_type_name: str
    issued_at: str | None
    used_at: str | None


@dataclass(frozen=True)
class Image:
    body: bytes
    content_type: str
    rendered: bool  # False when it came from the bucket


# ---------------------------------------------------------------- listings
def _page(model: type, who: Caller, prefix: str, event_id: str | None, status: str | None,
          limit: int, cursor: str | None) -> tuple[list[Any], str | None]:
    """One Query of the caller's GSI1 partition under `prefix`, newest first, optionally
    only one event's and/or one status's items.

    With filters DynamoDB applies them after reading `Limit` items, so a page of 50 could
    come back nearly empty; a filtered page therefore reads up to FILTERED_READ_FACTOR
    times `limit`, answers the first `limit` matches, and resumes after the last one."""
    limit = max(1, min(limit, settings().page_size_max))
    filters = None
    for attribute, wanted in ((model.event_id, event_id), (model.status, status)):
        if wanted is not None:
            filters = (attribute == wanted) if filters is None else filters & (attribute == wanted)
    partition = customer_partition(who.sub)
    start = _start_key(cursor, partition, prefix)
    read = limit if filters is None else min(limit * FILTERED_READ_FACTOR, 1000)
    answer = model._get_connection().query(
        partition,
        range_key_condition=model.GSI1SK.startswith(prefix),
        filter_condition=filters,
        index_name="GSI1",
        scan_index_forward=False,
        limit=read,
        exclusive_start_key=start,
    )
    raw_items = answer.get("Items", [])
    last = answer.get("LastEvaluatedKey")
    if len(raw_items) > limit:
        raw_items = raw_items[:limit]
        last = {name: raw_items[-1][name] for name in ("PK", "SK", "GSI1PK", "GSI1SK")}
    return [model.from_raw_data(raw) for raw in raw_items], encode_cursor(last)


def _start_key(cursor: str | None, partition: str, prefix: str) -> dict[str, Any] | None:
    """The cursor's key, if it is one this listing handed this caller: a cursor from
    another customer's listing (or a forged one) is refused, not followed."""
    return decode_key(cursor, {"PK": re.escape(prefix) + ID, "SK": "META", "GSI1PK": re.escape(partition),
                               "GSI1SK": re.escape(prefix) + STAMP + "#" + ID})


def my_tickets(who: Caller, *, event_id: str | None = None, status: str | None = None,
               limit: int = DEFAULT_PAGE, cursor: str | None = None) -> TicketPage:
    """The caller's tickets, newest first; one Query and one BatchGetItem (order statuses).
    On a first page, tickets given to the caller's verified address join their account
    first (`claim_transferred`: one more Query, empty unless someone gave them a ticket),
    as their newest; one the index does not show yet (GSIs are eventually consistent) is
    put at the head of the page from the claim's own answer."""
    claimed = claim_transferred(who) if cursor is None else []
    found, next_cursor = _page(TicketItem, who, "TICKET#", event_id, status, limit, cursor)
    shown = {t.ticket_id for t in found}
    late = [t for t in claimed if t.ticket_id not in shown and (event_id is None or t.event_id == event_id)
            and (status is None or t.status == status)]
    found = late + found
    statuses = _order_statuses({t.order_id for t in found})
    tickets = [_ticket_out(t, statuses.get(t.order_id)) for t in found]
    return TicketPage(tickets=tickets, count=len(tickets), next_cursor=next_cursor)


def my_orders(who: Caller, *, event_id: str | None = None, status: str | None = None,
              limit: int = DEFAULT_PAGE, cursor: str | None = None) -> OrderPage:
    """The caller's orders, newest first; one Query and one BatchGetItem (event names)."""
    found, next_cursor = _page(OrderItem, who, "ORDER#", event_id, status, limit, cursor)
    names = _event_names({o.event_id for o in found})
    listed = [_order_out(o, names.get(o.event_id)) for o in found]
    return OrderPage(orders=listed, count=len(listed), next_cursor=next_cursor)


def _order_statuses(order_ids: set[str]) -> dict[str, str]:
    """order id -> status: one BatchGetItem for a page (at most 100 distinct orders, the
    most one BatchGetItem takes); PynamoDB re-asks only for keys DynamoDB left unprocessed."""
    if not order_ids:
        return {}
    keys = [OrderItem.key(order_id) for order_id in sorted(order_ids)]
    return {o.order_id: o.status for o in OrderItem.batch_get(keys, attributes_to_get=["order_id", "status"])}


def _event_names(event_ids: set[str]) -> dict[str, str]:
    if not event_ids:
        return {}
    keys = [EventItem.key(event_id) for event_id in sorted(event_ids)]
    return {e.event_id: e.name for e in EventItem.batch_get(keys, attributes_to_get=["event_id", "name"])}


def _ticket_out(ticket: TicketItem, order_status: str | None) -> TicketOut:
    fixture = None
    if ticket.fixture_id:
        fixture = FixtureInfo(id=ticket.fixture_id, starts_at=ticket.fixture_starts_at, ends_at=ticket.fixture_ends_at)
    return TicketOut(
        id=ticket.ticket_id, serial=ticket.serial, ticket_type_id=ticket.type_id, ticket_type_name=ticket.type_name,
        event_id=ticket.event_id, event_name=ticket.event_name, order_id=ticket.order_id, order_status=order_status,
        status=ticket.status, price_cents=int(ticket.price_cents), currency=ticket.currency,
        issued_at=ticket.issued_at, used_at=ticket.used_at, fixture_info=fixture, code_version=int(ticket.code_version or 0),
    )


def _order_out(order: OrderItem, event_name: str | None) -> MyOrderOut:
    payment = order.payment.as_dict() if order.payment else {}
    return MyOrderOut(
        order_id=order.order_id, event_id=order.event_id, event_name=event_name, fixture_id=order.fixture_id,
        status=order.status, total_cents=int(order.total_cents), currency=order.currency,
        created_at=order.created_at, expires_at=order.expires_at, paid_at=order.paid_at,
        payment=PaymentOut(**{k: payment.get(k) for k in PaymentOut.model_fields}),
        lines=[
            OrderLineOut(ticket_type_id=line.type_id, ticket_type_name=line.name, qty=int(line.qty), price_cents=int(line.price_cents))
            for line in order.lines
        ],
        ticket_ids=list(order.ticket_ids), refunded_cents=int(order.refunded_cents or 0),
    )


def claim_transferred(who: Caller) -> list[TicketItem]:
    """Tickets transferred to the caller's verified address, not yet claimed by an account,
    become the caller's (`lifecycle.tickets.claim`); answers them as claimed. An unverified
    address claims nothing."""
    from ticketing.lifecycle import tickets as lifecycle

    if not (who.email and who.email_verified):
        return []
    email = who.email.lower()
    found = TicketItem.gsi1.query(lifecycle.holding_partition(email), limit=100)
    return [claimed for ticket in found if (claimed := lifecycle.claim(ticket, sub=who.sub, email=email)) is not None]


# ------------------------------------------------------------ one ticket
def holds(ticket: TicketItem, who: Caller) -> bool:
    """Whether `who` holds the ticket: it is listed under their account, or it was given to
    their verified address and no account has claimed it yet."""
    from ticketing.lifecycle.states import UNCLAIMED

    if ticket.customer_sub == who.sub:
        return True
    return (ticket.customer_sub == UNCLAIMED and bool(who.email and who.email_verified)
            and (ticket.holder_email or "").lower() == who.email.lower())


def get_for(ticket_id: str, who: Caller) -> TicketItem:
    """The ticket if `who` holds it or is an admin; otherwise NotFound, never Forbidden."""
    ticket = None
    if 0 < len(ticket_id) <= MAX_ID_LENGTH:
        try:
            ticket = TicketItem.get(*TicketItem.key(ticket_id))
        except TicketItem.DoesNotExist:
            ticket = None
    if ticket is None or (not holds(ticket, who) and not who.is_admin):
        raise NotFound(f"There is no ticket {ticket_id}.")
    return ticket


def qr_data(ticket_id: str, who: Caller) -> QrDataOut:
    """The ticket's QR payload with presigned URLs of its 200 px PNG and SVG, rendered
    into the bucket now if they are not there yet (so the URLs never point at nothing)."""
    ticket = get_for(ticket_id, who)
    payload = ticket.qr_payload if ticket.status in SHOWABLE else None
    png_url = svg_url = expires = None
    if payload:
        png_url = _presigned(_ensure_stored(ticket, payload, "png", DATA_IMAGE_SIZE))
        svg_url = _presigned(_ensure_stored(ticket, payload, "svg", DATA_IMAGE_SIZE))
        expires = clock.iso(clock.now() + timedelta(seconds=URL_SECONDS))
    return QrDataOut(
        ticket_id=ticket.ticket_id, serial=ticket.serial, qr_payload=payload, qr_png_url=png_url, qr_svg_url=svg_url,
        qr_urls_expire_at=expires, status=ticket.status, event_id=ticket.event_id, event_name=ticket.event_name,
        ticket_type_name=ticket.type_name, issued_at=ticket.issued_at, used_at=ticket.used_at,
    )


def qr_image(ticket_id: str, who: Caller, image_format: str = "png", size: int = DATA_IMAGE_SIZE) -> Image:
    """The ticket's QR image: from the bucket (one GetObject), or rendered once and stored."""
    if image_format not in CONTENT_TYPES:
        raise InvalidInput("format", f"format must be one of {', '.join(CONTENT_TYPES)}.")
    if not qr.MIN_SIZE <= size <= qr.MAX_SIZE:
        raise InvalidInput("size", f"size must be from {qr.MIN_SIZE} to {qr.MAX_SIZE} pixels.")
    ticket = get_for(ticket_id, who)
    payload = _showable_payload(ticket)
    key = image_key(ticket.ticket_id, payload, image_format, size)
    stored = _get_object(key)
    if stored is not None:
        return Image(stored, CONTENT_TYPES[image_format], rendered=False)
    body = _render(payload, image_format, size)
    _put_object(key, body, CONTENT_TYPES[image_format])
    return Image(body, CONTENT_TYPES[image_format], rendered=True)


def _showable_payload(ticket: TicketItem) -> str:
    if ticket.status == "pending" or (ticket.status in SHOWABLE and not ticket.qr_payload):
        raise Conflict(
            f"Ticket {ticket.ticket_id} is not paid for yet, so it has no QR code; try again once the order is paid.",
            code="ticket_pending",
        )
    if ticket.status not in SHOWABLE:
        raise Conflict(f"Ticket {ticket.ticket_id} is {ticket.status} and admits no one, so it has no QR code.", code=f"ticket_{ticket.status}")
    return ticket.qr_payload


# ---------------------------------------------------------------- images
def image_key(ticket_id: str, payload: str, image_format: str, size: int) -> str:
    """`qr/<ticket_id>/<kid>/<size>.<ext>`; the kid is the payload's second field (qr.py).
    A re-issued code (TKT2, after a transfer) is `qr/<ticket_id>/<kid>-v<version>/...`, so
    the new holder never gets the old code's image."""
    fields = payload.split(":")
    kid = fields[1] if len(fields) >= 3 else "unknown"
    if fields[0] == qr.VERSIONED_TAG and len(fields) == 6:
        kid = f"{kid}-v{fields[4]}"
    return f"qr/{ticket_id}/{kid}/{size}.{image_format}"


def _render(payload: str, image_format: str, size: int) -> bytes:
    render = qr.render_png if image_format == "png" else qr.render_svg  # looked up now, so tests can count calls
    return render(payload, size)


def _ensure_stored(ticket: TicketItem, payload: str, image_format: str, size: int) -> str:
    """The image's key, rendering and storing it first if the bucket does not hold it."""
    key = image_key(ticket.ticket_id, payload, image_format, size)
    if not _exists(key):
        _put_object(key, _render(payload, image_format, size), CONTENT_TYPES[image_format])
    return key


def require_bucket() -> str:
    bucket = settings().qr_bucket
    if not bucket:
        raise ConfigurationError("QR_BUCKET is not set")
    return bucket


@lru_cache(maxsize=1)
def _s3() -> Any:
    """One S3 client per container (boto3 reads AWS_ENDPOINT_URL itself), SigV4 so presigned
    URLs work in every region, short timeouts so a request learns S3 is away in seconds."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", region_name=settings().region,
        config=Config(signature_version="s3v4", connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}),
    )


def reset_client() -> None:
    """Forget the cached client, so the next call builds one from the current environment."""
    _s3.cache_clear()


def _missing(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


def _get_object(key: str) -> bytes | None:
    """The object's bytes, or None if there is none. (Telling "none" from "forbidden"
    needs s3:ListBucket on the bucket: without it S3 answers 403 for a missing key.)"""
    try:
        return _s3().get_object(Bucket=require_bucket(), Key=key)["Body"].read()
    except Exception as exc:
        if _missing(exc):
            return None
        raise


def _exists(key: str) -> bool:
    try:
        _s3().head_object(Bucket=require_bucket(), Key=key)
        return True
    except Exception as exc:
        if _missing(exc):
            return False
        raise


def _put_object(key: str, body: bytes, content_type: str) -> None:
    _s3().put_object(
        Bucket=require_bucket(), Key=key, Body=body, ContentType=content_type, CacheControl=IMAGE_CACHE,
    )


def _presigned(key: str) -> str:
    """A GET URL for the object that needs no token until it expires (no AWS call: it is
    signed locally with the function's credentials, so it also ends when they do)."""
    return _s3().generate_presigned_url(
        "get_object", Params={"Bucket": require_bucket(), "Key": key}, ExpiresIn=URL_SECONDS,
    )
