"""Expire lapsed holds on a schedule: release the seats first (DynamoDB only, fanned out over
the hold partitions); then the waiting lists' offer run (lapse offers whose time is up, offer
free seats to the first in line); then cancel the released orders' PaymentIntents with the
time left, paced by the Stripe budget's background share.

Overlapping runs are safe: each order is claimed once, and each release is conditional on
the order still being pending. A run stops taking orders 5 s before its timeout."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from ticketing import checkout, waitlist
from ticketing.config import settings
from ticketing.observability import logger, metrics

settings()

BATCH = 20_000  # lapsed orders a run releases at most; the time left bounds it first
CANCEL_BATCH = 5_000  # PaymentIntents a run cancels at most; the Stripe budget paces them
WORKERS = 16  # one per hold partition: DynamoDB's latency, not its limits, bounds one at a time


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    time_left = lambda: context.get_remaining_time_in_millis() / 1000  # noqa: E731
    began = time.monotonic()
    expired = checkout.expire_lapsed(limit=BATCH, workers=WORKERS, time_left=time_left)
    release_seconds = round(time.monotonic() - began, 2)
    metrics.add_metric(name="HoldsExpired", unit=MetricUnit.Count, value=expired)
    offers = waitlist.run()  # after the expiry: the seats it freed are offered in this run
    if any(offers.values()):
        logger.info("waiting-list offers", extra=offers)
    canceled = checkout.cancel_released(limit=CANCEL_BATCH, workers=WORKERS, time_left=time_left)
    metrics.add_metric(name="PaymentIntentsCanceled", unit=MetricUnit.Count, value=canceled)
    if expired or canceled:
        logger.info("expired lapsed holds", extra={"expired": expired, "canceled": canceled, "release_seconds": release_seconds})
    return {"expired": expired, "canceled": canceled, "release_seconds": release_seconds, **offers}
