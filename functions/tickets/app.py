"""Tickets function: a customer's tickets and orders, and ticket QR codes as data and images."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from ticketing import qr, tickets
from ticketing.config import settings
from ticketing.http import create_app, handler, require_caller

settings()  # fail the cold start, not a request, if configuration is missing
tickets.require_bucket()
app = create_app()

Limit = Annotated[int, Query(ge=1, le=100, description="page size (1-100)")]
Cursor = Annotated[str | None, Query(max_length=2000, description="next_cursor of the previous page")]
EventId = Annotated[str | None, Query(min_length=1, max_length=64)]

# The error format, so the OpenAPI document does not show a success model on error
# statuses (Powertools' default for a route's other `responses`). A candidate for http.py.
ERROR = {"application/json": {"schema": {
    "type": "object", "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}, "code": {"type": "string"}, "field": {"type": "string"}},
}}}


@app.get("/api/me/tickets", summary="My tickets, newest first (seed: Get User Tickets)", tags=["tickets"])
def my_tickets(
    event_id: EventId = None,
    status: Annotated[tickets.TicketStatus | None, Query()] = None,
    limit: Limit = tickets.DEFAULT_PAGE,
    cursor: Cursor = None,
) -> tickets.TicketPage:
    return tickets.my_tickets(require_caller(app), event_id=event_id, status=status, limit=limit, cursor=cursor)


@app.get("/api/me/orders", summary="My orders, newest first (payment history)", tags=["orders"])
def my_orders(
    event_id: EventId = None,
    status: Annotated[tickets.OrderStatus | None, Query()] = None,
    limit: Limit = tickets.DEFAULT_PAGE,
    cursor: Cursor = None,
) -> tickets.OrderPage:
    return tickets.my_orders(require_caller(app), event_id=event_id, status=status, limit=limit, cursor=cursor)


@app.get(
    "/api/tickets/<ticket_id>/qr/data",
    summary="A ticket's QR payload and image URLs (owner or admin; seed: Get QR Code Data)",
    description="qr_png_url and qr_svg_url are presigned S3 URLs of the 200 px images: they work in an "
    "<img> tag without a token until qr_urls_expire_at (15 minutes). All three are null unless the ticket "
    "is valid or used.",
    tags=["tickets"],
    responses={
        200: {"description": "The ticket's QR data; URLs null while pending or void"},
        404: {"description": "No such ticket, or another customer's", "content": ERROR},
    },
)
def qr_data(ticket_id: str) -> tickets.QrDataOut:
    return tickets.qr_data(ticket_id, require_caller(app))


@app.get(
    "/api/tickets/<ticket_id>/qr/image",
    summary="A ticket's QR code as PNG or SVG (owner or admin; seed: Get QR Code Image)",
    description="Answers the image bytes themselves with Content-Type image/png or image/svg+xml (to "
    "API Gateway: a base64 body with isBase64Encoded, which it decodes). Rendered once per ticket, "
    f"format and size, then served from storage. At most {qr.MAX_SIZE} px: a few kilobytes, far inside "
    "Lambda's 6 MB response limit.",
    tags=["tickets"],
    responses={
        200: {
            "description": "The image; Cache-Control: private",
            "content": {
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/svg+xml": {"schema": {"type": "string"}},
            },
        },
        404: {"description": "No such ticket, or another customer's", "content": ERROR},
        409: {"description": "The ticket is pending (no payload yet) or void", "content": ERROR},
        422: {"description": "format is not png or svg, or size is out of range (field names which)", "content": ERROR},
    },
)
def qr_image(
    ticket_id: str,
    image_format: Annotated[tickets.ImageFormat, Query(alias="format")] = "png",
    size: Annotated[int, Query(ge=qr.MIN_SIZE, le=qr.MAX_SIZE, description="pixels")] = tickets.DATA_IMAGE_SIZE,
):  # no return annotation: Powertools would serialise the bytes as text
    image = tickets.qr_image(ticket_id, require_caller(app), image_format, size)
    return Response(200, image.content_type, image.body, headers={"Cache-Control": tickets.IMAGE_CACHE})


lambda_handler = handler(app)
