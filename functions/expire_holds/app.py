"""Expire lapsed holds on a schedule: cancel each PaymentIntent, release its seats.

Overlapping runs are safe: each release is conditional on the order still being pending."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from ticketing import checkout
from ticketing.config import settings
from ticketing.observability import logger, metrics

settings()

BATCH = 200


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    expired = checkout.expire_lapsed(limit=BATCH)
    metrics.add_metric(name="HoldsExpired", unit=MetricUnit.Count, value=expired)
    if expired:
        logger.info("expired lapsed holds", extra={"expired": expired})
    return {"expired": expired}
