"""Faults injected in process, for the capacity model's fault scenarios and the unit tests:
DynamoDB answering an error code to the calls that touch a key (`dynamodb_fault`), the way
the local stack's `POST /_local/faults` does it over HTTP. It answers in place of the HTTP
request (botocore's `_make_request`, beneath moto and botocore's retries), so
`bench.recorder` counts a failed call like any other."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

THROTTLED = "ProvisionedThroughputExceededException"
CONFLICT = "TransactionConflict"


@contextmanager
def dynamodb_fault(operations: tuple[str, ...], key: str, code: str = THROTTLED) -> Iterator[dict[str, int]]:
    """Every DynamoDB call of `operations` whose request names `key` (a substring, e.g.
    `"RATE#"` or `"INV#"`) fails with `code`; `TransactionConflict` fails a
    TransactWriteItems as DynamoDB does (TransactionCanceledException, that reason on the
    item). Yields a counter of the calls it failed."""
    from botocore.client import BaseClient

    original = BaseClient._make_request
    failed = {"calls": 0}

    class _Answer:
        status_code = 400
        headers: dict[str, str] = {}
        content = b""

    def faulty(self: Any, operation_model: Any, request_dict: dict[str, Any], request_context: Any) -> Any:
        body = request_dict.get("body") or b""
        body = body.decode() if isinstance(body, bytes | bytearray) else str(body)
        if (self.meta.service_model.service_name == "dynamodb" and operation_model.name in operations and key in body):
            failed["calls"] += 1
            parsed: dict[str, Any] = {"Error": {"Code": code, "Message": "injected"},
                                      "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {}}}
            if code == CONFLICT:
                items = json.loads(body).get("TransactItems") or [{}]
                parsed["Error"]["Code"] = "TransactionCanceledException"
                parsed["CancellationReasons"] = [{"Code": CONFLICT if key in json.dumps(item) else "None"} for item in items]
            return _Answer(), parsed
        return original(self, operation_model, request_dict, request_context)

    BaseClient._make_request = faulty
    try:
        yield failed
    finally:
        BaseClient._make_request = original
