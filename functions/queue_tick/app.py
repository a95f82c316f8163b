"""The waiting rooms' admission job: every minute on a schedule, then a step a second for
each enabled room (`waiting_room.tick`) until 5 s before its timeout. Overlapping runs are
safe: a step writes the state only over the version it read."""

from __future__ import annotations

import time
from typing import Any

from ticketing import clock, waiting_room
from ticketing.config import settings
from ticketing.observability import logger, metrics

settings()

STOP_SECONDS = 5  # left before the timeout when the run stops stepping


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    steps = int(event.get("steps", 0)) if isinstance(event, dict) else 0  # a test may ask for a few
    done = 0
    while True:
        started = time.monotonic()
        waiting_room.tick_all()
        done += 1
        if steps and done >= steps:
            break
        if context.get_remaining_time_in_millis() / 1000 < STOP_SECONDS + 1:
            break
        now = clock.now()
        time.sleep(max(0.0, 1 - now.microsecond / 1_000_000 if time.monotonic() - started < 1 else 0.0))
    return {"steps": done}
