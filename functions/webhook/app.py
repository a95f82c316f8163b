"""Webhook function: Stripe events in, paid orders with valid tickets and one receipt out;
the webhook's health; resending a receipt on request."""

from __future__ import annotations

from ticketing import receipts, webhooks
from ticketing.config import settings
from ticketing.http import create_app, handler, require_caller

settings()
app = create_app()


@app.post(
    "/api/tickets/webhook",
    summary="Stripe webhook (seed: Webhook Handler); authenticated by Stripe-Signature",
    tags=["webhooks"],
    responses={
        200: {"description": "Processed, a duplicate, or an event type we ignore"},
        400: {"description": "Missing, forged or stale signature, or not an event"},
        503: {"description": "A dependency is down, or another delivery holds this event: retry"},
    },
)
def stripe_webhook() -> dict[str, object]:
    raw = app.current_event.body or ""  # the exact text Stripe signed (ticketing.http.read_body decoded it)
    stripe_event = webhooks.verify(raw, app.current_event.headers.get("stripe-signature"))
    outcome = webhooks.handle(stripe_event)
    return {"received": True, "event_id": outcome.event_id, "outcome": outcome.outcome, "duplicate": outcome.duplicate}


@app.get("/api/webhooks/health", summary="Webhook health (seed 002)", tags=["webhooks"])
def webhook_health() -> dict[str, object]:
    return webhooks.health()


@app.post("/api/orders/<order_id>/resend-receipt", summary="Send the receipt again (owner or admin)", tags=["orders"])
def resend_receipt(order_id: str) -> dict[str, str]:
    return receipts.resend(order_id, require_caller(app))


lambda_handler = handler(app)
