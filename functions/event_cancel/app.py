"""Event-cancel worker: each queue message processes the next batch of a canceled
event's orders (ticketing.event_cancel.run_cancel_batch). A batch that must be retried
(Stripe failing) is reported as a batch item failure, so SQS delivers it again and the
job resumes where it stopped; after several attempts a message goes to the DLQ."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ticketing import event_cancel
from ticketing.config import settings
from ticketing.observability import logger, metrics

settings()
processor = BatchProcessor(event_type=EventType.SQS)
_context: Any = None


def run_one(record: SQSRecord) -> dict[str, Any]:
    left = getattr(_context, "get_remaining_time_in_millis", None)
    return event_cancel.run_cancel_batch(json.loads(record.body)["event_id"], left or (lambda: 10**9))


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _context
    _context = context
    return process_partial_response(event=event, record_handler=run_one, processor=processor, context=context)
