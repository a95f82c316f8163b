"""Mail events function: SES's bounce, complaint and rejection notifications, from the mail
events topic (SNS), each handed to ticketing.bounces (a permanent bounce of a receipt is
recorded on its order). A notification that is not one is logged and skipped, never
raised: only a failure to record (DynamoDB away) fails the invocation, which Lambda retries
and then leaves on the dead-letter queue."""

from __future__ import annotations

from typing import Any

from ticketing import bounces
from ticketing.config import settings
from ticketing.observability import logger, metrics

settings()


def _messages(event: Any) -> list[Any]:
    """The SNS messages of an SNS event (`Records[].Sns.Message`); nothing for anything else."""
    records = event.get("Records") if isinstance(event, dict) else None
    messages = []
    for record in records if isinstance(records, list) else []:
        sns = record.get("Sns") if isinstance(record, dict) else None
        messages.append(sns.get("Message") if isinstance(sns, dict) else None)
    return messages


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, list[str]]:
    messages = _messages(event)
    if not messages:
        logger.warning("not an SNS event; skipped")
    return {"outcomes": [bounces.handle(message) for message in messages]}
