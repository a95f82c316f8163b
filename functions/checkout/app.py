"""Checkout function: create an order holding seats with its PaymentIntent, read it, abandon it."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Header

from ticketing import checkout, idempotency, orders
from ticketing.config import settings
from ticketing.http import create_app, handler, require_caller

settings()  # fail the cold start, not a request, if configuration is missing
app = create_app()


@app.post(
    "/api/tickets/stripe/checkout",
    summary="Hold seats and create the PaymentIntent (seed: Create Checkout Session)",
    tags=["checkout"],
    responses={
        201: {"description": "Order created; pay with client_secret before expires_at"},
        403: {"description": "A waiting room's admission is missing, another account's, spent, expired or forged"},
        409: {"description": "Not enough tickets available"},
        429: {"description": "Too many seats held by this customer"},
        502: {"description": "Stripe failed; nothing is held"},
        503: {"description": "Stripe throttled or the table is busy; Retry-After"},
    },
)
def create_checkout(
    basket: checkout.CheckoutIn, idempotency_key: idempotency.KeyHeader = None,
    admission_token: Annotated[str | None, Header(alias="Admission-Token", max_length=512)] = None,
) -> tuple[checkout.CheckoutOut, int]:
    who = require_caller(app)
    body = basket.model_dump(mode="json")
    answer = idempotency.once(
        "checkout", who.sub, idempotency_key, body,
        lambda: checkout.checkout(basket, who, admission_token).model_dump(mode="json"),
        app.lambda_context,
    )
    return checkout.CheckoutOut(**answer), 201


@app.get("/api/orders/<order_id>", summary="One order (owner or admin)", tags=["orders"])
def get_order(order_id: str) -> orders.OrderOut:
    return checkout.get_order(order_id, require_caller(app))


@app.post("/api/orders/<order_id>/cancel", summary="Abandon a pending order: cancel the payment, release the seats", tags=["orders"])
def cancel_order(order_id: str, idempotency_key: idempotency.KeyHeader = None) -> orders.OrderOut:
    who = require_caller(app)
    answer = idempotency.once(
        f"cancel:{order_id}", who.sub, idempotency_key, {}, lambda: checkout.cancel(order_id, who).model_dump(mode="json"),
        app.lambda_context,
    )
    return orders.OrderOut(**answer)


lambda_handler = handler(app)
