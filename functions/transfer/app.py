"""Transfer function: the holder of a valid ticket gives it to someone else (new code, new holder)."""

from __future__ import annotations

from ticketing import idempotency, transfers
from ticketing.config import settings
from ticketing.http import create_app, handler, require_caller

settings()  # fail the cold start, not a request, if configuration is missing
app = create_app()

ERROR = {"application/json": {"schema": {
    "type": "object", "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}, "code": {"type": "string"}, "field": {"type": "string"}},
}}}


@app.post(
    "/api/tickets/<ticket_id>/transfer",
    summary="Give a valid ticket to someone else (holder): a new code and holder, the old code void at once",
    description="The new holder is emailed and finds the ticket in their tickets when they sign in with to_email "
    "(verified). Allowed while the event's `transfers` policy allows it.",
    tags=["tickets"],
    responses={
        200: {"description": "The ticket with its new holder and transferred_at"},
        403: {"description": "The organiser does not allow transfers (code transfers_disabled) or no longer (transfer_closed)", "content": ERROR},
        404: {"description": "No such ticket, or one the caller does not hold", "content": ERROR},
        409: {"description": "The ticket is pending, used, void or being refunded (code says which)", "content": ERROR},
        422: {"description": "to_email is invalid or the holder's own (code own_address); to_name missing", "content": ERROR},
    },
)
def transfer(ticket_id: str, body: transfers.TransferIn, idempotency_key: idempotency.KeyHeader = None) -> transfers.TransferOut:
    who = require_caller(app)
    answer = idempotency.once(
        f"transfer:{ticket_id}", who.sub, idempotency_key, body.model_dump(mode="json"),
        lambda: transfers.transfer(ticket_id, body, who).model_dump(mode="json"), app.lambda_context,
    )
    return transfers.TransferOut(**answer)


lambda_handler = handler(app)
