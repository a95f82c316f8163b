"""The Stripe webhook: authenticity, the event inbox (each event processed once) and
routing by event type. A Stripe event is `stripe_event` here wherever a ticketed event
could be meant.

Stripe delivers events more than once, concurrently and out of order. So:
- each event id is recorded with a conditional write and processed once (a lease lets a
  crashed attempt be retried; a finished one is answered as a duplicate);
- every handler acts on the object's *current* state, fetched from Stripe (payments:
  `fulfilment.settle`; refunds: `refunds.mirror`; disputes: `disputes.converge`), so late
  and reordered events converge on the same state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pynamodb.exceptions import PutError, UpdateError

from ticketing import clock, payments, stripe_budget
from ticketing.errors import DependencyUnavailable, MalformedRequest
from ticketing.lifecycle.writes import condition_failed
from ticketing.observability import logger
from ticketing.secrets import stripe_keys
from ticketing.table import StripeEventItem, stripe_events_partition, stripe_events_partitions

TOLERANCE_SECONDS = 300
LEASE_SECONDS = 60
EVENT_LOG_DAYS = 400
PAYMENT_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.requires_action",
        "payment_intent.processing",
    }
)



# ----------------------------------------------------------- authenticity
def verify(raw_body: str, signature: str | None) -> dict[str, Any]:
    """The Stripe event, if `Stripe-Signature` is Stripe's for this body within 5 minutes."""
    import stripe

    if not signature:
        raise MalformedRequest("The Stripe-Signature header is missing.", code="missing_signature")
    try:
        stripe.WebhookSignature.verify_header(raw_body, signature, stripe_keys().webhook_secret, TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError:
        raise MalformedRequest("The Stripe-Signature header does not match this body, or is too old.", code="bad_signature") from None
    try:
        stripe_event = json.loads(raw_body)
    except ValueError:
        raise MalformedRequest("The webhook body is not valid JSON.", code="malformed_json") from None
    if not isinstance(stripe_event, dict) or not stripe_event.get("id") or not stripe_event.get("type"):
        raise MalformedRequest("The webhook body is not a Stripe event.", code="not_an_event")
    return stripe_event


# ------------------------------------------------------------ exactly once
@dataclass(frozen=True)
class Outcome:
    event_id: str
    outcome: str
    duplicate: bool = False


def handle(stripe_event: dict[str, Any]) -> Outcome:
    """Process a verified event once. Raises DependencyUnavailable when another attempt
    holds it (Stripe retries later) or when Stripe or AWS is down."""
    event_id, kind = str(stripe_event["id"]), str(stripe_event["type"])
    obj = (stripe_event.get("data") or {}).get("object") or {}
    if not _claim(event_id, kind, obj.get("id")):
        return Outcome(event_id, "duplicate", duplicate=True)
    try:
        outcome, order_id = _dispatch(kind, obj)
    except Exception:
        try:
            _finish(event_id, "failed", "error", None)  # lets the next delivery take it over at once
        except Exception:  # noqa: BLE001 - the lease expires anyway; keep the original error
            logger.exception("could not mark the event failed")
        raise
    _finish(event_id, "processed", outcome, order_id)
    logger.info("stripe event processed", extra={"stripe_event": event_id, "type": kind, "outcome": outcome})
    return Outcome(event_id, outcome)


def _claim(event_id: str, kind: str, object_id: str | None) -> bool:
    now = clock.now()
    record = StripeEventItem(
        *StripeEventItem.key(event_id), GSI1PK=stripe_events_partition(event_id), GSI1SK=f"{clock.iso(now)}#{event_id}", event_id=event_id, type=kind,
        object_id=object_id, received_at=clock.iso(now), state="processing",
        lease_until=clock.iso(now + timedelta(seconds=LEASE_SECONDS)), attempts=1,
        ttl=int((now + timedelta(days=EVENT_LOG_DAYS)).timestamp()),
    )
    try:
        record.save(condition=StripeEventItem.PK.does_not_exist())
        return True
    except PutError as exc:
        if not condition_failed(exc):
            raise
    # Seen before: take it over only if the last attempt failed or its lease ran out.
    try:
        StripeEventItem(*StripeEventItem.key(event_id)).update(
            actions=[
                StripeEventItem.state.set("processing"),
                StripeEventItem.lease_until.set(clock.iso(now + timedelta(seconds=LEASE_SECONDS))),
                StripeEventItem.attempts.add(1),
            ],
            condition=(StripeEventItem.state == "failed")
            | ((StripeEventItem.state == "processing") & (StripeEventItem.lease_until < clock.iso(now))),
        )
        return True
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
    current = StripeEventItem.get(*StripeEventItem.key(event_id), consistent_read=True)
    if current.state == "processed":
        return False
    raise DependencyUnavailable("This event is being processed by another delivery; retry later.", retry_after=LEASE_SECONDS)


def _finish(event_id: str, state: str, outcome: str, order_id: str | None) -> None:
    StripeEventItem(*StripeEventItem.key(event_id)).update(
        actions=[
            StripeEventItem.state.set(state),
            StripeEventItem.outcome.set(outcome),
            StripeEventItem.processed_at.set(clock.iso(clock.now())),
            StripeEventItem.lease_until.remove(),
            *([StripeEventItem.order_id.set(order_id)] if order_id else []),
        ]
    )


REFUND_EVENTS = frozenset({"charge.refunded", "refund.created", "refund.updated", "charge.refund.updated"})
DISPUTE_EVENTS = frozenset({
    "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed", "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
})


def _dispatch(kind: str, obj: dict[str, Any]) -> tuple[str, str | None]:
    from ticketing import refunds

    if kind in PAYMENT_EVENTS:
        from ticketing import fulfilment

        stripe_budget.take("payment_intents.retrieve", stripe_budget.BACKGROUND)  # over it: 503, Stripe retries
        # the current state, not the event's; with the card paid with (the payment history's brand and last4)
        intent = payments.retrieve_intent(str(obj.get("id")), with_card=True)
        return fulfilment.settle(intent)
    if kind in REFUND_EVENTS:
        charge = obj.get("id") if obj.get("object") == "charge" else obj.get("charge")
        intent = obj.get("payment_intent")
        return refunds.mirror(charge if isinstance(charge, str) else None, intent if isinstance(intent, str) else None)
    if kind in DISPUTE_EVENTS:
        from ticketing import disputes

        return disputes.converge(obj)
    return "ignored", None


# ------------------------------------------------------------------ health
def health() -> dict[str, Any]:
    """Whether the webhook can verify Stripe's events and how long ago the last one arrived
    (seed 002's health check); public, so nothing about the events themselves."""
    latest = [item for partition in stripe_events_partitions()
              for item in StripeEventItem.gsi1.query(partition, scan_index_forward=False, limit=1)]
    last = max(latest, key=lambda item: item.GSI1SK) if latest else None
    configured = True
    try:
        configured = stripe_keys().webhook_secret.startswith("whsec_")
    except Exception:  # noqa: BLE001 - health must answer even when the secret cannot be read
        configured = False
    ago = None
    if last is not None:
        ago = max(0, int((clock.now() - clock.parse_iso(last.received_at)).total_seconds()))
    return {
        "status": "ok" if configured else "degraded",
        "webhook_secret_configured": configured,
        "seconds_since_last_event": ago,  # no id, type or outcome: this route is public
    }
