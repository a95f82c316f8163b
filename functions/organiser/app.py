"""Organiser function: an event's orders, attendees (JSON or CSV), figures, vouchers, and
canceling the event (the refunds run in the background: functions/event_cancel)."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from ticketing import event_cancel, exports, reports, vouchers
from ticketing.auth import ADMIN
from ticketing.config import settings
from ticketing.http import create_app, handler, require_caller, route

settings()
app = create_app()

ORGANISERS = "Only organisers may see or change an event's sales."
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=4000)]
CSV = "text/csv; charset=utf-8"


@route(app, "GET", "/api/events/<event_id>/orders", roles=(ADMIN,), denied=ORGANISERS,
       summary="The event's orders, newest first (admin)", tags=["organiser"])
def list_orders(event_id: str, status: Annotated[reports.OrderStatus | None, Query()] = None,
                limit: Limit = 50, cursor: Cursor = None) -> reports.OrderPage:
    return reports.list_orders(event_id, status, limit, cursor)


@route(app, "GET", "/api/events/<event_id>/attendees", roles=(ADMIN,), denied=ORGANISERS,
       summary="The event's tickets with holder and check-in (admin); ?format=csv for a spreadsheet", tags=["organiser"],
       description=f"format=csv answers the whole list as text/csv up to {exports.INLINE_MAX_BYTES:,} bytes; past that "
       "(or with delivery=link) it is written to storage and answered as JSON {export_url, expires_at}: a presigned "
       f"GET URL that needs no token, valid {exports.URL_SECONDS // 60} minutes.",
       responses={200: {"description": "AttendeePage as JSON; text/csv with a header row; or, for a large CSV, ExportOut",
                        "content": {"application/json": {"schema": {"oneOf": [
                                        {"$ref": "#/components/schemas/AttendeePage"}, {"$ref": "#/components/schemas/ExportOut"}]}},
                                    "text/csv": {"schema": {"type": "string"}}}}})
def attendees(event_id: str, status: Annotated[reports.TicketStatus | None, Query()] = None,
              format: Annotated[Literal["json", "csv"], Query()] = "json",  # noqa: A002 - the API's name
              delivery: Annotated[Literal["auto", "link"], Query(description="csv only: link always answers ExportOut")] = "auto",
              limit: Limit = 100, cursor: Cursor = None):
    if format == "csv":
        filename = f"attendees-{event_id}.csv"
        body = reports.attendees_csv(event_id, status).encode()
        if delivery == "link" or not exports.fits_inline(body):
            return exports.store(body, filename, CSV).model_dump(mode="json")
        return Response(200, CSV, body, headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    return reports.attendees(event_id, status, limit, cursor).model_dump(mode="json")


@route(app, "GET", "/api/events/<event_id>/stats", roles=(ADMIN,), denied=ORGANISERS,
       summary="Per type: capacity, sold, held, available, checked in; money (admin)", tags=["organiser"])
def stats(event_id: str) -> reports.StatsOut:
    return reports.stats(event_id)


@route(app, "POST", "/api/events/<event_id>/cancel", roles=(ADMIN,), denied=ORGANISERS,
       summary="Cancel the event: refund every paid order, void every ticket, in the background (admin)", tags=["organiser"],
       responses={202: {"description": "Canceled; the job started"}, 200: {"description": "Already canceled: the same job"}})
def cancel_event(event_id: str, request: Annotated[event_cancel.CancelIn | None, Body()] = None) -> tuple[event_cancel.CancelJobOut, int]:
    job, started = event_cancel.start_cancel(event_id, request or event_cancel.CancelIn(), require_caller(app))
    return job, 202 if started else 200


@route(app, "GET", "/api/events/<event_id>/cancel", roles=(ADMIN,), denied=ORGANISERS,
       summary="The cancellation's progress: orders done, left, failed (admin)", tags=["organiser"])
def cancel_progress(event_id: str) -> event_cancel.CancelJobOut:
    return event_cancel.cancel_progress(event_id)


VOUCHER_REFUSED = {422: {"description": "A field breaks a voucher rule (value over 100% or below 0, max_uses below the "
                                         "uses taken, a window ending before it starts): `field` names it"},
                   404: {"description": "No such event or voucher"}}


@route(app, "POST", "/api/events/<event_id>/vouchers", roles=(ADMIN,), denied=ORGANISERS,
       summary="Create a voucher: a code (given, or 10 characters generated) taking a percentage or an amount off, "
       "or revealing hidden ticket types (admin)", tags=["vouchers"],
       responses={201: {"description": "Created"}, 409: {"description": "The code is taken"}, **VOUCHER_REFUSED})
def create_voucher(event_id: str, voucher: vouchers.VoucherIn) -> tuple[vouchers.VoucherOut, int]:
    return vouchers.create(event_id, voucher), 201


@route(app, "GET", "/api/events/<event_id>/vouchers", roles=(ADMIN,), denied=ORGANISERS,
       summary="The event's vouchers with their uses (admin)", tags=["vouchers"])
def list_vouchers(event_id: str, limit: Limit = 50, cursor: Cursor = None) -> vouchers.VoucherPage:
    return vouchers.list_vouchers(event_id, limit, cursor)


@route(app, "PATCH", "/api/events/<event_id>/vouchers/<voucher_id>", roles=(ADMIN,), denied=ORGANISERS,
       summary="Change a voucher (orders already made keep their discount) (admin)", tags=["vouchers"],
       responses=VOUCHER_REFUSED)
def update_voucher(event_id: str, voucher_id: str, changes: vouchers.VoucherPatch) -> vouchers.VoucherOut:
    return vouchers.update(event_id, voucher_id, changes)


@route(app, "DELETE", "/api/events/<event_id>/vouchers/<voucher_id>", roles=(ADMIN,), denied=ORGANISERS,
       summary="Retire a voucher: no new orders with it; orders made keep their discount (admin)", tags=["vouchers"],
       responses={404: {"description": "No such voucher"}})
def retire_voucher(event_id: str, voucher_id: str) -> vouchers.VoucherOut:
    return vouchers.retire(event_id, voucher_id)


lambda_handler = handler(app)
