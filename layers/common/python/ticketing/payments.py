"""The one Stripe adapter. Nothing else imports `stripe`.

Stripe's errors become domain errors here: throttling -> DependencyUnavailable (503 with
Retry-After), anything else that failed or timed out -> PaymentProviderError (502).
Every write carries an idempotency key derived from our own ids, so a retried request
never creates a second PaymentIntent or refund.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import stripe

from ticketing.errors import DependencyUnavailable, PaymentProviderError, Unprocessable
from ticketing.secrets import stripe_keys

TIMEOUT_SECONDS = 5  # x2 with the one retry: well inside the functions' 25 s timeout
FINAL_STATUSES = frozenset({"succeeded", "canceled"})


@dataclass(frozen=True)
class Intent:
    """A PaymentIntent, read the same way from today's shape (`latest_charge`) and
    localstripe's 2017 shape (`charges.data[]`)."""

    id: str
    status: str
    amount: int
    currency: str
    client_secret: str | None
    metadata: dict[str, str]
    charge_id: str | None
    payment_method_type: str | None
    error_message: str | None
    card_brand: str | None = None  # of the card paid with, where the answer shows it
    card_last4: str | None = None


@lru_cache(maxsize=4)
def _client(secret_key: str) -> stripe.StripeClient:
    base = os.environ.get("STRIPE_API_BASE")
    return stripe.StripeClient(
        secret_key,
        base_addresses={"api": base} if base else None,
        max_network_retries=1,
        http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS),  # the default waits 80 s
    )


def client() -> stripe.StripeClient:
    return _client(stripe_keys().secret_key)


def _translate(exc: stripe.StripeError, doing: str) -> Exception:
    if isinstance(exc, stripe.RateLimitError):
        return DependencyUnavailable(
            f"The payment provider is busy while {doing}; try again in a few seconds.", retry_after=2, code="stripe_rate_limited"
        )
    if getattr(exc, "code", None) == "amount_too_small":  # a currency whose minimum only Stripe knows (ticketing.money)
        return Unprocessable(f"The amount is under Stripe's minimum charge for this currency ({doing}).",
                             error="Below the minimum charge", code="below_minimum_charge")
    message = getattr(exc, "user_message", None) or "The payment provider could not be reached; try again."
    return PaymentProviderError(f"{message} ({doing})", code="stripe_error")


def as_intent(obj: Any) -> Intent:
    """Normalise a PaymentIntent (StripeObject or plain dict, either API shape)."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    charge_id = None
    latest = data.get("latest_charge")
    if isinstance(latest, str):
        charge_id = latest
    elif isinstance(latest, dict):
        charge_id = latest.get("id")
    if charge_id is None:
        charges = (data.get("charges") or {}).get("data") or []
        succeeded = [c for c in charges if c.get("status") == "succeeded"] or charges
        if succeeded:
            charge_id = succeeded[-1].get("id")
    error = data.get("last_payment_error") or {}
    method_types = data.get("payment_method_types") or []
    method = data.get("payment_method")
    method_type = (method.get("type") if isinstance(method, dict) else None) or (method_types[0] if method_types else None)
    card = _card_details(data)
    return Intent(
        id=data["id"],
        status=data["status"],
        amount=int(data["amount"]),
        currency=str(data["currency"]).lower(),
        client_secret=data.get("client_secret"),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        charge_id=charge_id,
        payment_method_type=method_type,
        error_message=error.get("message") if isinstance(error, dict) else None,
        card_brand=card.get("brand"),
        card_last4=card.get("last4"),
    )


def _card_details(data: dict[str, Any]) -> dict[str, Any]:
    """The card's brand and last4 from an expanded `payment_method`, an expanded
    `latest_charge` or the 2017 shape's `charges.data[]` (`payment_method_details.card`)."""
    method = data.get("payment_method")
    if isinstance(method, dict) and isinstance(method.get("card"), dict):
        return method["card"]
    latest = data.get("latest_charge")
    charges = [latest] if isinstance(latest, dict) else list((data.get("charges") or {}).get("data") or [])
    for charge in reversed(charges):
        details = (charge.get("payment_method_details") or {}).get("card") if isinstance(charge, dict) else None
        if isinstance(details, dict):
            return details
    return {}


def create_intent(*, order_id: str, amount: int, currency: str, metadata: dict[str, str], customer_id: str | None = None,
                  payment_method_id: str | None = None, save_card: bool = False, return_url: str | None = None) -> Intent:
    """One PaymentIntent per order: the idempotency key is derived from the order id.

    With `payment_method_id` (a saved card of `customer_id`) it is confirmed here, on the
    server, on-session (the buyer is present: a card that needs authentication answers
    `requires_action`, finished in the browser with the client_secret); automatic payment
    methods need a `return_url` for that. A decline is not an error here: the PaymentIntent
    comes back `requires_payment_method` with its error message. `save_card` keeps the card
    for later on-session payments once the payment succeeds."""
    params: dict[str, Any] = {
        "amount": amount,
        "currency": currency,
        "metadata": metadata,
        "automatic_payment_methods": {"enabled": True},
    }
    if customer_id:
        params["customer"] = customer_id
    if save_card and customer_id:
        params["setup_future_usage"] = "on_session"
    if payment_method_id:
        params.update(payment_method=payment_method_id, confirm=True, return_url=return_url)
    try:
        intent = client().v1.payment_intents.create(params=params, options={"idempotency_key": f"order-{order_id}-intent"})
    except stripe.CardError as exc:
        declined = getattr(exc.error, "payment_intent", None) if exc.error is not None else None
        if declined is not None:
            return as_intent(declined)
        raise _translate(exc, "creating the payment") from exc
    except stripe.StripeError as exc:
        raise _translate(exc, "creating the payment") from exc
    return as_intent(intent)


def retrieve_intent(intent_id: str, *, with_card: bool = False) -> Intent:
    """The PaymentIntent's current state. `with_card` expands its `payment_method` in the
    same call, so the card's brand and last4 are read from today's API shape too (where
    `latest_charge` is only an id): what fulfilment records for the payment history."""
    params = {"expand": ["payment_method"]} if with_card else None
    try:
        return as_intent(client().v1.payment_intents.retrieve(intent_id, params=params))
    except stripe.StripeError as exc:
        raise _translate(exc, "reading the payment") from exc


def cancel_intent(intent_id: str) -> Intent:
    """Cancel a PaymentIntent; returns its state. A PaymentIntent that already succeeded
    (or is otherwise final) is returned as it is, not cancelled."""
    try:
        return as_intent(
            client().v1.payment_intents.cancel(
                intent_id, params={"cancellation_reason": "abandoned"}, options={"idempotency_key": f"cancel-{intent_id}"}
            )
        )
    except stripe.InvalidRequestError as exc:
        if getattr(exc, "code", None) == "payment_intent_unexpected_state":
            return retrieve_intent(intent_id)
        raise _translate(exc, "cancelling the payment") from exc
    except stripe.StripeError as exc:
        raise _translate(exc, "cancelling the payment") from exc


@dataclass(frozen=True)
class RefundResult:
    id: str
    status: str
    amount: int
    metadata: dict[str, str] = field(default_factory=dict)


def _as_refund(obj: Any) -> RefundResult:
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return RefundResult(
        id=data["id"], status=str(data.get("status") or "succeeded"), amount=int(data["amount"]),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
    )


def refunds_of(payment_intent_id: str) -> list[RefundResult]:
    """Every refund Stripe holds for a PaymentIntent, whoever made it."""
    try:
        listed = client().v1.refunds.list(params={"payment_intent": payment_intent_id, "limit": 100})
    except stripe.StripeError as exc:
        raise _translate(exc, "reading the refunds") from exc
    return [_as_refund(item) for item in listed.data]


STRIPE_REASONS = {"requested_by_customer", "duplicate", "fraudulent"}


def refund(*, payment_intent_id: str, amount: int, reason: str, metadata: dict[str, str], idempotency_key: str) -> RefundResult:
    """Refund `amount` of a PaymentIntent. Stripe accepts only its own three reasons; ours
    (kept in metadata) map onto `requested_by_customer` otherwise."""
    params: dict[str, Any] = {
        "payment_intent": payment_intent_id,
        "amount": amount,
        "metadata": {**metadata, "reason": reason},
    }
    if reason in STRIPE_REASONS:
        params["reason"] = reason
    else:
        params["reason"] = "requested_by_customer"
    try:
        made = client().v1.refunds.create(params=params, options={"idempotency_key": idempotency_key})
    except stripe.StripeError as exc:
        raise _translate(exc, "refunding the payment") from exc
    return _as_refund(made)


def intents(since_epoch: int | None = None) -> list[Intent]:
    """Every PaymentIntent of ours (metadata names an order), newest first, optionally
    only those created at or after `since_epoch` (for reconciliation)."""
    found: list[Intent] = []
    try:
        for item in client().v1.payment_intents.list(params={"limit": 100}).auto_paging_iter():
            if since_epoch is not None and int(item["created"] or 0) < since_epoch:
                continue
            intent = as_intent(item)
            if intent.metadata.get("order_id"):
                found.append(intent)
    except stripe.StripeError as exc:
        raise _translate(exc, "listing payments") from exc
    return found


# ------------------------------------------------------------------ saved cards
@dataclass(frozen=True)
class Card:
    """A card PaymentMethod as the API shows it, plus the customer it is attached to."""

    id: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    customer: str | None


def _as_card(obj: Any) -> Card:
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    card = data.get("card") or {}
    customer = data.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    return Card(
        id=str(data["id"]), brand=card.get("brand"), last4=card.get("last4"),
        exp_month=int(card["exp_month"]) if card.get("exp_month") is not None else None,
        exp_year=int(card["exp_year"]) if card.get("exp_year") is not None else None,
        customer=customer,
    )


def create_customer(*, idempotency_key: str, email: str | None, name: str | None, metadata: dict[str, str]) -> str:
    """A Stripe Customer; the caller derives `idempotency_key` from the account, so a
    retried or concurrent first request gets the same Customer back (within Stripe's 24 h)."""
    params: dict[str, Any] = {"metadata": metadata}
    if email:
        params["email"] = email
    if name:
        params["name"] = name
    try:
        return str(client().v1.customers.create(params=params, options={"idempotency_key": idempotency_key}).id)
    except stripe.StripeError as exc:
        raise _translate(exc, "creating the customer") from exc


def create_setup_intent(*, customer_id: str, idempotency_key: str, metadata: dict[str, str]) -> tuple[str, str]:
    """A SetupIntent that saves a card to `customer_id` for on-session use: (id, client_secret)."""
    params: dict[str, Any] = {
        "customer": customer_id, "usage": "on_session", "payment_method_types": ["card"], "metadata": metadata,
    }
    try:
        made = client().v1.setup_intents.create(params=params, options={"idempotency_key": idempotency_key})
    except stripe.StripeError as exc:
        raise _translate(exc, "preparing to save a card") from exc
    return str(made.id), str(made.client_secret)


def cards_of(customer_id: str) -> tuple[list[Card], str | None]:
    """The customer's saved cards (Stripe's newest first) and its default card's id."""
    try:
        listed = client().v1.payment_methods.list(params={"customer": customer_id, "type": "card", "limit": 100})
        customer = client().v1.customers.retrieve(customer_id)
    except stripe.StripeError as exc:
        raise _translate(exc, "reading the saved cards") from exc
    default = ((customer.to_dict().get("invoice_settings") or {}).get("default_payment_method"))
    if isinstance(default, dict):
        default = default.get("id")
    return [_as_card(item) for item in listed.data], default


def card(payment_method_id: str) -> Card | None:
    """One PaymentMethod, or None if Stripe has no such id."""
    try:
        return _as_card(client().v1.payment_methods.retrieve(payment_method_id))
    except stripe.InvalidRequestError as exc:
        if getattr(exc, "http_status", None) == 404 or getattr(exc, "code", None) == "resource_missing":
            return None
        raise _translate(exc, "reading the card") from exc
    except stripe.StripeError as exc:
        raise _translate(exc, "reading the card") from exc


def detach_card(payment_method_id: str) -> Card:
    try:
        return _as_card(client().v1.payment_methods.detach(payment_method_id))
    except stripe.StripeError as exc:
        raise _translate(exc, "removing the card") from exc


def set_default_card(customer_id: str, payment_method_id: str) -> None:
    try:
        client().v1.customers.update(
            customer_id, params={"invoice_settings": {"default_payment_method": payment_method_id}},
            options={"idempotency_key": f"default-{customer_id}-{payment_method_id}"},
        )
    except stripe.StripeError as exc:
        raise _translate(exc, "choosing the default card") from exc


@dataclass(frozen=True)
class Dispute:
    id: str
    status: str
    charge_id: str | None
    payment_intent_id: str | None
    reason: str | None


def as_dispute(obj: Any) -> Dispute:
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    charge, intent = data.get("charge"), data.get("payment_intent")
    return Dispute(
        id=str(data["id"]), status=str(data.get("status") or ""),
        charge_id=charge.get("id") if isinstance(charge, dict) else charge,
        payment_intent_id=intent.get("id") if isinstance(intent, dict) else intent,
        reason=data.get("reason"),
    )


def retrieve_dispute(dispute_id: str) -> Dispute:
    """A dispute as Stripe holds it now (its events may arrive in any order)."""
    try:
        return as_dispute(client().v1.disputes.retrieve(dispute_id))
    except stripe.StripeError as exc:
        raise _translate(exc, "reading the dispute") from exc
