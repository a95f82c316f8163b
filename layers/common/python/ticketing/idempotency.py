"""Client retries: the `Idempotency-Key` header, through Powertools idempotency on the
one table, scoped to the caller and the route. Each record has a partition of its own
(`PK` = the hashed key, `SK` = `IDEMPOTENCY`): stock Powertools on a composite-key table puts
every record of a function under one partition key, which a rush would make hot.

The same key with the same body within 24 hours replays the first answer (a failed
request is not remembered, so it may be retried); the same key with another body is
refused; a retry while the first request still runs gets 409.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Header
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from ticketing.config import settings
from ticketing.errors import Conflict, InvalidInput

HEADER = "idempotency-key"
TTL_SECONDS = 24 * 60 * 60
MAX_KEY_LENGTH = 255

# The header as a route parameter: `idempotency_key: idempotency.KeyHeader = None`.
KeyHeader = Annotated[str | None, Header(alias=HEADER, max_length=MAX_KEY_LENGTH)]


@lru_cache(maxsize=1)
def _config() -> IdempotencyConfig:
    return IdempotencyConfig(
        event_key_jmespath="[scope, caller, key]",
        payload_validation_jmespath="body",
        expires_after_seconds=TTL_SECONDS,
        raise_on_no_idempotency_key=True,
    )


RECORD_SK = "IDEMPOTENCY"


class _OwnPartition(DynamoDBPersistenceLayer):
    """Powertools' DynamoDB layer with the idempotency key as the partition key."""

    def _get_key(self, idempotency_key: str) -> dict:
        return {self.key_attr: {"S": idempotency_key}, self.sort_key_attr: {"S": RECORD_SK}}


@lru_cache(maxsize=1)
def _runner() -> Callable[..., dict[str, Any]]:
    persistence = _OwnPartition(
        table_name=settings().table_name, key_attr="PK", sort_key_attr="SK", expiry_attr="ttl",
    )

    @idempotent_function(data_keyword_argument="request", persistence_store=persistence, config=_config())
    def run(request: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return work()

    return run


def once(
    scope: str, caller: str, key: str | None, body: Any, work: Callable[[], dict[str, Any]], context: Any = None
) -> dict[str, Any]:
    """Run `work` (which answers a JSON-ready dict) once per (scope, caller, key).
    `context` (the Lambda context) bounds how long an in-progress record blocks retries."""
    if key is None:
        return work()
    if context is not None:
        _config().register_lambda_context(context)
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput("Idempotency-Key", f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} characters.")
    try:
        return _runner()(request={"scope": scope, "caller": caller, "key": key, "body": body}, work=work)
    except IdempotencyValidationError:
        raise InvalidInput(
            "Idempotency-Key", "This Idempotency-Key was already used with a different request body; use a new key."
        ) from None
    except IdempotencyAlreadyInProgressError:
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; retry in a moment.", code="request_in_progress"
        ) from None
