"""Faults injected in process, for the capacity model's fault scenarios and the unit tests:
DynamoDB answering an error code to the calls that touch a key (`dynamodb_fault`), the way
the local stack's `POST /_local/faults` does it over HTTP. Installed around the recorder's
hook is fine either way: a failed call is still counted by `bench.recorder`."""

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
    from botocore.exceptions import ClientError

    original = BaseClient._make_api_call
    failed = {"calls": 0}

    def faulty(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        if (self.meta.service_model.service_name == "dynamodb" and operation_name in operations
                and key in json.dumps(api_params, default=str)):
            failed["calls"] += 1
            if code == CONFLICT:
                reasons = [{"Code": CONFLICT if key in json.dumps(item, default=str) else "None"}
                           for item in api_params.get("TransactItems") or [{}]]
                raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                                   "CancellationReasons": reasons}, operation_name)
            raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation_name)
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = faulty
    try:
        yield failed
    finally:
        BaseClient._make_api_call = original
