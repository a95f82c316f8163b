"""Wallet function: a ticket as an Apple Wallet pass (.pkpass) or a Google Wallet save link."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel

from ticketing import wallet
from ticketing.config import settings
from ticketing.http import create_app, handler, require_caller

settings()  # fail the cold start, not a request, if configuration is missing
app = create_app()

ERROR = {"application/json": {"schema": {
    "type": "object", "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}, "code": {"type": "string"}, "field": {"type": "string"}},
}}}
REFUSALS = {
    404: {"description": "No such ticket, or one the caller does not hold (given away, another customer's)", "content": ERROR},
    409: {"description": "The ticket is pending (code ticket_pending) or void (ticket_void)", "content": ERROR},
    503: {"description": "The wallet's keys could not be read or are not set up (code wallet_unavailable)", "content": ERROR},
}


class SaveUrlOut(BaseModel):
    save_url: str


@app.get(
    "/api/tickets/<ticket_id>/wallet/apple",
    summary="The ticket as an Apple Wallet pass (holder or admin)",
    description="Answers the .pkpass bytes with Content-Type application/vnd.apple.pkpass (to API Gateway: a "
    "base64 body with isBase64Encoded, which it decodes). The barcode is the ticket's signed QR payload.",
    tags=["tickets"],
    responses={200: {"description": "The signed pass", "content": {wallet.APPLE_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
               **REFUSALS},
)
def apple_pass(ticket_id: str):  # no return annotation: Powertools would serialise the bytes as text
    body, filename = wallet.apple_pass(ticket_id, require_caller(app))
    return Response(200, wallet.APPLE_CONTENT_TYPE, body, headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "private, no-store"})


@app.get(
    "/api/tickets/<ticket_id>/wallet/google",
    summary="A link that saves the ticket to Google Wallet (holder or admin)",
    description="save_url carries a JWT signed (RS256) with the service account's key, holding the event's ticket "
    "class and the ticket's object; its barcode is the ticket's signed QR payload.",
    tags=["tickets"],
    responses={200: {"description": "The save link"}, **REFUSALS},
)
def google_pass(ticket_id: str) -> SaveUrlOut:
    return SaveUrlOut(save_url=wallet.google_save_url(ticket_id, require_caller(app)))


lambda_handler = handler(app)
