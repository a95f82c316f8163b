"""Account function: the caller's saved cards, payment history and notification inbox
(`/api/me/...`, issue 17), and their places on waiting lists (issue 19).

Only the card routes talk to Stripe: `ticketing.cards` imports the Stripe SDK (through
`ticketing.payments`) on their first call, not at cold start, so the history and the inbox
never load it.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import BaseModel, ConfigDict

from ticketing import cards, history, idempotency, inbox, waitlist
from ticketing.config import settings
from ticketing.http import create_app, handler, require_caller

settings()  # fail the cold start, not a request, if configuration is missing
app = create_app()

Limit = Annotated[int, Query(ge=1, le=100, description="page size (1-100)")]
Cursor = Annotated[str | None, Query(max_length=2000, description="next_cursor of the previous page")]

ERROR = {"application/json": {"schema": {
    "type": "object", "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}, "code": {"type": "string"}, "field": {"type": "string"}},
}}}
STRIPE_DOWN = {
    502: {"description": "Stripe failed; nothing was changed", "content": ERROR},
    503: {"description": "Stripe is busy, or the account is being set up by a concurrent request; see Retry-After", "content": ERROR},
}


class NoBody(BaseModel):
    """These POSTs take no body: none, or `{}`. Anything else is refused (422) rather than
    ignored, so a client that meant another route learns it before anything changes."""

    model_config = ConfigDict(extra="forbid")


Empty = Annotated[NoBody | None, Body(description="none, or {}")]
NOT_YOURS = {404: {"description": "No saved card of yours has this id (another customer's, detached or unknown)", "content": ERROR}}


@app.post(
    "/api/me/payment-methods/setup",
    summary="Start saving a card: a SetupIntent's client_secret to confirm with the publishable key",
    description="Creates the caller's Stripe Customer on first need (once, concurrent first requests included). "
    "Limited per account (card testing): over the limit 429 with Retry-After.",
    tags=["saved cards"],
    responses={201: {"description": "The SetupIntent"},
               429: {"description": "Too many cards set up lately; see Retry-After", "content": ERROR}, **STRIPE_DOWN},
)
def setup_card(body: Empty = None, idempotency_key: idempotency.KeyHeader = None) -> tuple[cards.SetupOut, int]:
    who = require_caller(app)
    answer = idempotency.once("card-setup", who.sub, idempotency_key, {},
                              lambda: cards.setup(who).model_dump(mode="json"), app.lambda_context)
    return cards.SetupOut(**answer), 201


@app.get("/api/me/payment-methods", summary="My saved cards", tags=["saved cards"],
         responses={200: {"description": "The caller's cards; empty before any is saved"}, **STRIPE_DOWN})
def list_cards() -> cards.CardList:
    return cards.list_cards(require_caller(app))


@app.delete("/api/me/payment-methods/<pm_id>", summary="Remove a saved card (detached at Stripe)",
            tags=["saved cards"], responses={200: {"description": "The card, detached"}, **NOT_YOURS, **STRIPE_DOWN})
def remove_card(pm_id: str) -> cards.CardOut:
    return cards.remove(require_caller(app), pm_id)


@app.post("/api/me/payment-methods/<pm_id>/default", summary="Make a saved card the default",
          tags=["saved cards"], responses={200: {"description": "The card, is_default true"}, **NOT_YOURS, **STRIPE_DOWN})
def default_card(pm_id: str, body: Empty = None) -> cards.CardOut:
    return cards.make_default(require_caller(app), pm_id)


@app.get("/api/me/payments", summary="My payments, newest first, with their refunds and the card paid with",
         tags=["payment history"])
def my_payments(limit: Limit = history.DEFAULT_PAGE, cursor: Cursor = None) -> history.PaymentPage:
    return history.my_payments(require_caller(app), limit=limit, cursor=cursor)


@app.get("/api/me/notifications", summary="My notifications, newest first, and how many are unread",
         description="Every email sent to the caller (receipt, refund, ...) is also a notification here.",
         tags=["notifications"])
def my_notifications(
    unread: Annotated[bool, Query(description="only the unread ones")] = False,
    limit: Limit = inbox.DEFAULT_PAGE,
    cursor: Cursor = None,
) -> inbox.NotificationPage:
    return inbox.my_notifications(require_caller(app), unread=unread, limit=limit, cursor=cursor)


@app.post("/api/me/notifications/read-all", summary="Mark all my notifications read", tags=["notifications"])
def read_all(body: Empty = None) -> inbox.UnreadOut:
    return inbox.mark_all_read(require_caller(app))


@app.post("/api/me/notifications/<notification_id>/read", summary="Mark one of my notifications read",
          tags=["notifications"],
          responses={200: {"description": "The notification, read_at set"},
                     404: {"description": "No notification of yours has this id", "content": ERROR}})
def read_one(notification_id: str, body: Empty = None) -> inbox.NotificationOut:
    return inbox.mark_read(require_caller(app), notification_id)


@app.post("/api/events/<event_id>/ticket-types/<type_id>/waitlist",
          summary="Join a sold-out ticket type's waiting list with a quantity; joining again answers the same place",
          tags=["waiting list"],
          responses={201: {"description": "On the list: the place and its position (1 = first in line)"},
                     200: {"description": "Already on the list: the same place"},
                     404: {"description": "No such event or ticket type", "content": ERROR},
                     409: {"description": "On sale (`code: not_sold_out`) or the event has no waiting list", "content": ERROR}})
def join_waitlist(event_id: str, type_id: str, body: waitlist.JoinIn) -> tuple[waitlist.EntryOut, int]:
    entry, created = waitlist.join(event_id, type_id, body, require_caller(app))
    return entry, 201 if created else 200


@app.delete("/api/events/<event_id>/ticket-types/<type_id>/waitlist", summary="Leave the waiting list (an open offer's seats pass on)",
            tags=["waiting list"], responses={404: {"description": "You are not on this list", "content": ERROR}})
def leave_waitlist(event_id: str, type_id: str) -> waitlist.EntryOut:
    return waitlist.leave(event_id, type_id, require_caller(app))


@app.get("/api/me/waitlist", summary="My places on waiting lists, with any open offer", tags=["waiting list"])
def my_waitlist() -> waitlist.WaitlistPage:
    return waitlist.mine(require_caller(app))


lambda_handler = handler(app)
