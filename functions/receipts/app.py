"""Receipts function: retries receipts SES could not send at payment time, from the queue.

A message that still fails stays on the queue (reported as a batch item failure) and is
tried again after the visibility timeout; after several attempts it goes to the DLQ."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ticketing import receipts
from ticketing.config import settings
from ticketing.observability import logger, metrics

settings()
processor = BatchProcessor(event_type=EventType.SQS)


def send_one(record: SQSRecord) -> None:
    receipts.retry_receipt(json.loads(record.body)["order_id"])


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=send_one, processor=processor, context=context)
