"""Catalogue function: events, ticket types, payment config and the API documentation."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Query

from ticketing import catalogue, docs
from ticketing.auth import ADMIN
from ticketing.config import settings
from ticketing.http import create_app, handler, require_caller, route

settings()  # fail the cold start, not a request, if configuration is missing
app = create_app()


@app.get("/api/events", summary="Events on sale", tags=["catalogue"])
def list_events(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> catalogue.EventPage:
    return catalogue.list_events(limit, cursor)


@route(app, "GET", "/api/organiser/events", roles=(ADMIN,), denied="Only organisers may list every event.",
       summary="Every event, over and canceled ones included, latest start first (admin)", tags=["catalogue"])
def list_all_events(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> catalogue.EventPage:
    return catalogue.list_all_events(limit, cursor)


@route(app, "POST", "/api/events", roles=(ADMIN,), denied="Only organisers may create events.",
       summary="Create an event (admin)", tags=["catalogue"], responses={201: {"description": "Created"}})
def create_event(event: catalogue.EventIn) -> tuple[catalogue.EventOut, int]:
    return catalogue.create_event(event, require_caller(app)), 201


@app.get("/api/events/<event_id>", summary="One event with its fixtures and ticket types", tags=["catalogue"])
def get_event(event_id: str) -> catalogue.EventOut:
    return catalogue.get_event(event_id)


@route(app, "POST", "/api/events/<event_id>/ticket-types", roles=(ADMIN,), denied="Only organisers may create ticket types.",
       summary="Create a ticket type (admin)", tags=["catalogue"], responses={201: {"description": "Created"}})
def create_ticket_type(event_id: str, ticket_type: catalogue.TicketTypeIn) -> tuple[catalogue.TicketTypeOut, int]:
    return catalogue.create_ticket_type(event_id, ticket_type), 201


@route(app, "PATCH", "/api/events/<event_id>", roles=(ADMIN,), denied="Only organisers may edit events.",
       summary="Edit an event's details (admin)", tags=["catalogue"])
def update_event(event_id: str, changes: catalogue.EventPatch) -> catalogue.EventOut:
    return catalogue.update_event(event_id, changes)


@route(app, "PATCH", "/api/events/<event_id>/ticket-types/<type_id>", roles=(ADMIN,), denied="Only organisers may edit ticket types.",
       summary="Change a ticket type's price (new orders only), capacity, sales window (admin)", tags=["catalogue"],
       responses={409: {"description": "Capacity below the tickets sold and held, or the event is canceled"}})
def update_ticket_type(event_id: str, type_id: str, changes: catalogue.TicketTypePatch) -> catalogue.TicketTypeOut:
    return catalogue.update_ticket_type(event_id, type_id, changes)


@app.get("/api/payment/config", summary="Stripe publishable key for the front end", tags=["payments"])
def payment_config() -> dict[str, str]:
    return {"publishable_key": catalogue.publishable_key()}


@app.get("/api/docs", include_in_schema=False)
def api_docs():
    if (app.current_event.query_string_parameters or {}).get("format") == "json":
        return Response(200, content_types.APPLICATION_JSON, docs.openapi_json())
    return Response(200, "text/html; charset=utf-8", docs.swagger_html())


lambda_handler = handler(app)
