"""Refund function: full, partial and per-ticket refunds of an order."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body

from ticketing import idempotency, refunds
from ticketing.config import settings
from ticketing.http import create_app, handler, require_caller

settings()
app = create_app()

@app.post(
    "/api/orders/<order_id>/refund",
    summary="Refund an order: what is left (empty body), an amount (admin), or tickets",
    tags=["refunds"],
    responses={
        201: {"description": "Refunded at Stripe and recorded"},
        403: {"description": "Not allowed: an amount or used tickets (admins only), after the refund cut-off, or a reason "
                           "not the caller's (customers: requested_by_customer only, code reason_for_organisers; "
                           "event_canceled: the event's cancellation only, code reason_event_canceled)"},
        409: {"description": "More than is left to refund, or the order cannot be refunded"},
        502: {"description": "Stripe failed; nothing was refunded or recorded"},
    },
)
def refund_order(
    order_id: str, request: Annotated[refunds.RefundIn | None, Body()] = None, idempotency_key: idempotency.KeyHeader = None
) -> tuple[refunds.RefundOut, int]:
    who = require_caller(app)
    data = request or refunds.RefundIn()
    answer = idempotency.once(
        f"refund:{order_id}", who.sub, idempotency_key, data.model_dump(mode="json"),
        lambda: refunds.refund(order_id, data, who).model_dump(mode="json"), app.lambda_context,
    )
    return refunds.RefundOut(**answer), 201


lambda_handler = handler(app)
