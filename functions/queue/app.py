"""Queue function: an event's waiting room: join it, poll one's place (and admission token),
the organiser's view (README, "Waiting room"). Admission itself is functions/queue_tick."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response, content_types

from ticketing import waiting_room
from ticketing.auth import ADMIN
from ticketing.config import settings
from ticketing.http import create_app, handler, require_caller, route

settings()  # fail the cold start, not a request, if configuration is missing
app = create_app()


def _answer(place: waiting_room.PlaceOut, status: int, wait: int | None) -> Response[waiting_room.PlaceOut]:
    headers = {"Retry-After": str(wait)} if wait is not None else {}
    return Response(status, content_types.APPLICATION_JSON, place.model_dump(mode="json"), headers=headers)


@app.post("/api/events/<event_id>/queue", summary="Join the event's waiting room (verified email)", tags=["waiting room"],
          responses={200: {"description": "Already in the queue: the same place"}, 201: {"description": "Joined"},
                     409: {"description": "No waiting room, not open for joining yet, or sold out (`code`)"},
                     422: {"description": "Email not verified"}})
def join(event_id: str) -> Response[waiting_room.PlaceOut]:
    place, status, wait = waiting_room.join(event_id, require_caller(app))
    return _answer(place, status, wait)


@app.get("/api/events/<event_id>/queue/me", summary="One's place, and once admitted the admission token",
         tags=["waiting room"], responses={404: {"description": "No place in this queue"}})
def me(event_id: str) -> Response[waiting_room.PlaceOut]:
    place, wait = waiting_room.me(event_id, require_caller(app))
    return _answer(place, 200, wait)


@route(app, "GET", "/api/events/<event_id>/queue", roles=(ADMIN,), denied="Only organisers may see the queue.",
       summary="The waiting room's figures (admin)", tags=["waiting room"])
def view(event_id: str) -> waiting_room.RoomView:
    return waiting_room.view(event_id)


lambda_handler = handler(app)
