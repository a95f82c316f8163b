"""Receipts function: the receipt queue's worker. It retries receipts SES could not send at
payment time, and tells ticket holders that an event's times or venue changed, a batch
of tickets per message (ticketing.event_changes).

A message that still fails stays on the queue (reported as a batch item failure) and is
tried again after the visibility timeout; after several attempts it goes to the DLQ."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ticketing import event_changes, receipts
from ticketing.config import settings
from ticketing.observability import logger, metrics

settings()
processor = BatchProcessor(event_type=EventType.SQS)
_context: Any = None


def send_one(record: SQSRecord) -> None:
    body = json.loads(record.body)
    if "event_changed" in body:
        left = getattr(_context, "get_remaining_time_in_millis", None)
        event_changes.run_batch(str(body["event_changed"]), int(body["version"]), left or (lambda: 10**9))
        return
    receipts.retry_receipt(body["order_id"])


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _context
    _context = context
    return process_partial_response(event=event, record_handler=send_one, processor=processor, context=context)
