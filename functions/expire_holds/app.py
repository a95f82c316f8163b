"""Expire lapsed holds on a schedule: cancel each PaymentIntent, release its seats; then the
waiting lists' offer run: lapse offers whose time is up, offer free seats to the first in line.

Overlapping runs are safe: each order is claimed once, and each release is conditional on
the order still being pending. A run stops taking orders 5 s before its timeout."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from ticketing import checkout, waitlist
from ticketing.config import settings
from ticketing.observability import logger, metrics

settings()

BATCH = 1000  # lapsed orders a run takes on at most; the Stripe budget and the time left pace it
WORKERS = 8  # cancels in flight at once: Stripe's latency, not the budget, would bound one at a time


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    expired = checkout.expire_lapsed(
        limit=BATCH, workers=WORKERS, time_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    metrics.add_metric(name="HoldsExpired", unit=MetricUnit.Count, value=expired)
    if expired:
        logger.info("expired lapsed holds", extra={"expired": expired})
    offers = waitlist.run()  # after the expiry: the seats it freed are offered in this run
    if any(offers.values()):
        logger.info("waiting-list offers", extra=offers)
    return {"expired": expired, **offers}
