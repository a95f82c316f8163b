"""The call recorder every benchmark counts with: each AWS call any botocore client makes,
and for DynamoDB each partition key it touches in the table and in each index, with the
read and write units it costs.

Units follow DynamoDB's published rules, applied to the item sizes the store (moto, in
process or as a server) holds:
- a write costs ceil(size / 1 KB) units of the larger of the item before and after (a
  failed conditional write costs the same; at least 1); twice that inside a transaction
  (on the table: an index is maintained by ordinary writes);
- a global secondary index (all projected here) is written once where the item is in it
  before and after under the same key; a changed index key costs a delete under the old key
  and a put under the new one; an item entering or leaving the index costs one write;
- a read costs ceil(size / 4 KB) units per item (GetItem, BatchGetItem) or per response
  (Query, Scan; at least 1), half that when eventually consistent, twice that in a
  transaction. A Query with a filter is charged for what it returned (DynamoDB charges what
  it read before filtering; our filters drop little).

Usage:

    with recording() as rec:
        with rec.phase("checkout"):
            ...  # any code making boto3/PynamoDB calls
    rec.calls("checkout")        # Counter of "dynamodb.PutItem" -> n
    rec.units("checkout")        # {(target, partition key): Units(wcu, rcu)}; target "table" or "table/GSI1"

`rec.calls()` counts every service (SES, SQS, ...); the units are DynamoDB's only. Reading the
item images before and after a write makes extra GetItem calls (or, with `read_item`, reads
the store directly); they are not recorded.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

WRITE_UNIT = 1024
READ_UNIT = 4096
PARTITION_WCU = 1000  # DynamoDB's per-partition limits, units a second
PARTITION_RCU = 3000


@dataclass
class Units:
    wcu: float = 0.0
    rcu: float = 0.0
    requests: int = 0

    def add(self, other: Units) -> None:
        self.wcu += other.wcu
        self.rcu += other.rcu
        self.requests += other.requests


@dataclass(frozen=True)
class Access:
    """One partition key touched by one request."""

    phase: str
    operation: str
    target: str  # "<table>" or "<table>/<index>"
    key: str  # the partition key's value
    wcu: float = 0.0
    rcu: float = 0.0


def _value_size(value: dict[str, Any]) -> int:
    (kind, data), = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        digits = len(data.lstrip("-").replace(".", "").strip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind == "B":
        return len(data) if isinstance(data, bytes | bytearray) else math.ceil(len(data) * 3 / 4)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in data.items())
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in data)
    if kind == "SS":
        return sum(len(s.encode()) for s in data)
    if kind == "NS":
        return sum(_value_size({"N": n}) for n in data)
    if kind == "BS":
        return sum(len(b) for b in data)
    return 0


def item_size(item: dict[str, Any] | None) -> int:
    """An item's size as DynamoDB counts it (attribute names plus values), in bytes."""
    if not item:
        return 0
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT))


def read_units(size: int) -> int:
    return max(1, math.ceil(size / READ_UNIT))


@dataclass
class _Schema:
    hash_key: str
    range_key: str | None
    indexes: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # name -> (hash, range)

    def key_of(self, item: dict[str, Any]) -> dict[str, Any]:
        names = [self.hash_key] + ([self.range_key] if self.range_key else [])
        return {name: item[name] for name in names if name in item}


def _scalar(value: dict[str, Any] | None) -> str | None:
    if value is None:
        return None
    (_, data), = value.items()
    return str(data)


class Recorder:
    """What `recording` saw. `units=False` counts calls only (no item images are read), for
    benchmarks that time the calls they count."""

    def __init__(self, units: bool = True, read_item: Callable[[str, dict[str, Any]], dict[str, Any] | None] | None = None) -> None:
        self.measure_units = units
        # (table, key) -> the item's image (DynamoDB JSON) or None; without it, a consistent
        # GetItem with the caller's client (`bench.common.moto_item` reads moto in process
        # directly: the same image, without a request through botocore and moto's serializer)
        self.read_item = read_item
        self.accesses: list[Access] = []
        self.counts: Counter = Counter()
        self._by_phase: dict[str, Counter] = defaultdict(Counter)
        self._phase = ""
        self._lock = threading.Lock()
        self._schemas: dict[str, _Schema] = {}

    # ------------------------------------------------------------ queries
    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Label every call in the block (the label before comes back after)."""
        before, self._phase = self._phase, name
        try:
            yield
        finally:
            self._phase = before

    def clear(self) -> None:
        with self._lock:
            self.accesses.clear()
            self.counts.clear()
            self._by_phase.clear()

    def calls(self, phase: str | None = None) -> Counter:
        """Calls per "service.Operation" (of one phase, if given)."""
        return Counter(self.counts if phase is None else self._by_phase.get(phase, Counter()))

    def units(self, phase: str | None = None, normalise: Callable[[str], str] | None = None) -> dict[tuple[str, str], Units]:
        """Units per (target, partition key), summed over the phase's requests. `normalise`
        maps keys that stand for one logical partition (a per-second counter) onto one."""
        found: dict[tuple[str, str], Units] = defaultdict(Units)
        for access in self.accesses:
            if phase is not None and access.phase != phase:
                continue
            key = normalise(access.key) if normalise else access.key
            found[(access.target, key)].add(Units(access.wcu, access.rcu, 1))
        return dict(found)

    # ---------------------------------------------------------- recording
    def _record(self, operation: str, target: str, key: str | None, wcu: float = 0.0, rcu: float = 0.0) -> None:
        if key is None:
            return
        with self._lock:
            self.accesses.append(Access(self._phase, operation, target, key, wcu, rcu))

    def _count(self, service: str, operation: str) -> None:
        with self._lock:
            self.counts[f"{service}.{operation}"] += 1
            self._by_phase[self._phase][f"{service}.{operation}"] += 1

    def _schema(self, raw: Callable[[str, dict], dict], table: str) -> _Schema:
        if table not in self._schemas:
            described = raw("DescribeTable", {"TableName": table})["Table"]

            def keys(schema: list[dict[str, str]]) -> tuple[str, str | None]:
                hash_key = next(k["AttributeName"] for k in schema if k["KeyType"] == "HASH")
                range_key = next((k["AttributeName"] for k in schema if k["KeyType"] == "RANGE"), None)
                return hash_key, range_key

            hash_key, range_key = keys(described["KeySchema"])
            indexes = {i["IndexName"]: keys(i["KeySchema"]) for i in described.get("GlobalSecondaryIndexes") or []}
            self._schemas[table] = _Schema(hash_key, range_key, indexes)
        return self._schemas[table]

    def _get(self, raw: Callable[[str, dict], dict], table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        if self.read_item is not None:
            return self.read_item(table, key)
        return raw("GetItem", {"TableName": table, "Key": key, "ConsistentRead": True}).get("Item")

    def _write(self, operation: str, schema: _Schema, table: str, old: dict | None, new: dict | None,
               factor: int, applied: bool) -> None:
        base = old or new or {}
        self._record(operation, table, _scalar(base.get(schema.hash_key)),
                     wcu=factor * write_units(max(item_size(old), item_size(new))))
        if not applied:
            return
        for index, (hash_key, range_key) in schema.indexes.items():
            target = f"{table}/{index}"

            def index_key(item: dict | None) -> tuple[str | None, str | None] | None:
                if not item or hash_key not in item or (range_key and range_key not in item):
                    return None
                return _scalar(item.get(hash_key)), _scalar(item.get(range_key)) if range_key else None

            before, after = index_key(old), index_key(new)
            if before is not None and before != after:
                self._record(operation, target, before[0], wcu=write_units(item_size(old)))
            if after is not None:
                if before == after and old == new:
                    continue  # nothing changed: no index write
                self._record(operation, target, after[0], wcu=write_units(item_size(new)))

    def _partition_of_query(self, params: dict[str, Any], hash_key: str) -> str | None:
        names = params.get("ExpressionAttributeNames") or {}
        values = params.get("ExpressionAttributeValues") or {}
        for name, placeholder in re.findall(r"(#?[\w.]+)\s*=\s*(:\w+)", params.get("KeyConditionExpression") or ""):
            if names.get(name, name) == hash_key:
                return _scalar(values.get(placeholder))
        for name, condition in (params.get("KeyConditions") or {}).items():
            if name == hash_key:
                return _scalar(condition["AttributeValueList"][0])
        return None

    def observe(self, raw: Callable[[str, dict], dict], operation: str, params: dict[str, Any],
                call: Callable[[], dict]) -> dict:
        """Make one DynamoDB call (`call`) and record what it touched. `raw` makes an
        unrecorded call with the same client (for item images and schemas)."""
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            table = params["TableName"]
            schema = self._schema(raw, table)
            key = params.get("Key") or schema.key_of(params.get("Item") or {})
            old = self._get(raw, table, key)
            try:
                answer = call()
            except Exception:
                self._write(operation, schema, table, old, old, 1, applied=False)
                raise
            new = None if operation == "DeleteItem" else self._get(raw, table, key)
            self._write(operation, schema, table, old, new, 1, applied=True)
            return answer
        if operation == "BatchWriteItem":
            images = []
            for table, requests in (params.get("RequestItems") or {}).items():
                schema = self._schema(raw, table)
                for request in requests:
                    if "PutRequest" in request:
                        key = schema.key_of(request["PutRequest"]["Item"])
                    else:
                        key = request["DeleteRequest"]["Key"]
                    images.append((table, schema, key, "DeleteRequest" in request, self._get(raw, table, key)))
            answer = call()
            for table, schema, key, deleted, old in images:
                new = None if deleted else self._get(raw, table, key)
                self._write(operation, schema, table, old, new, 1, applied=True)
            return answer
        if operation == "TransactWriteItems":
            images = []
            for entry in params.get("TransactItems") or []:
                (kind, body), = entry.items()
                table = body["TableName"]
                schema = self._schema(raw, table)
                key = body.get("Key") or schema.key_of(body.get("Item") or {})
                images.append((kind, table, schema, key, self._get(raw, table, key)))
            try:
                answer = call()
            except Exception:
                for _kind, table, schema, _key, old in images:
                    self._write(operation, schema, table, old, old, 2, applied=False)
                raise
            for kind, table, schema, key, old in images:
                if kind == "ConditionCheck":
                    self._write(operation, schema, table, old, old, 2, applied=False)
                    continue
                new = None if kind == "Delete" else self._get(raw, table, key)
                self._write(operation, schema, table, old, new, 2, applied=True)
            return answer
        answer = call()
        if operation == "GetItem":
            table = params["TableName"]
            schema = self._schema(raw, table)
            half = 1 if params.get("ConsistentRead") else 0.5
            self._record(operation, table, _scalar(params["Key"].get(schema.hash_key)),
                         rcu=half * read_units(item_size(answer.get("Item"))))
        elif operation == "BatchGetItem":
            for table, request in (params.get("RequestItems") or {}).items():
                schema = self._schema(raw, table)
                half = 1 if request.get("ConsistentRead") else 0.5
                found = {
                    _scalar(item.get(schema.hash_key)): item for item in (answer.get("Responses") or {}).get(table, [])
                }
                for key in request["Keys"]:
                    pk = _scalar(key.get(schema.hash_key))
                    self._record(operation, table, pk, rcu=half * read_units(item_size(found.get(pk))))
        elif operation == "TransactGetItems":
            for entry, response in zip(params.get("TransactItems") or [], answer.get("Responses") or [], strict=False):
                body = entry["Get"]
                schema = self._schema(raw, body["TableName"])
                self._record(operation, body["TableName"], _scalar(body["Key"].get(schema.hash_key)),
                             rcu=2 * read_units(item_size(response.get("Item"))))
        elif operation in ("Query", "Scan"):
            table = params["TableName"]
            schema = self._schema(raw, table)
            index = params.get("IndexName")
            hash_key = schema.indexes[index][0] if index else schema.hash_key
            target = f"{table}/{index}" if index else table
            half = 1 if params.get("ConsistentRead") else 0.5
            size = sum(item_size(item) for item in answer.get("Items") or [])
            key = self._partition_of_query(params, hash_key) if operation == "Query" else "(scan)"
            self._record(operation, target, key, rcu=half * read_units(size))
        return answer


@contextmanager
def recording(recorder: Recorder | None = None) -> Iterator[Recorder]:
    """Record every AWS call made by any botocore client in the block (boto3, PynamoDB)."""
    from botocore.client import BaseClient

    rec = recorder or Recorder()
    original = BaseClient._make_api_call

    def recorded(self, operation_name, api_params):
        service = self.meta.service_model.service_name
        rec._count(service, operation_name)
        if service != "dynamodb" or not rec.measure_units:
            return original(self, operation_name, api_params)

        def raw(operation: str, params: dict) -> dict:
            return original(self, operation, params)

        return rec.observe(raw, operation_name, api_params, lambda: original(self, operation_name, api_params))

    BaseClient._make_api_call = recorded
    try:
        yield rec
    finally:
        BaseClient._make_api_call = original


def hottest(units: dict[tuple[str, str], Units], per_request: float, rate: float) -> dict[str, tuple[str, float, float]]:
    """Per target: (key, write units/s, read units/s) of its hottest key when the recorded
    requests (`per_request` of them) run at `rate` a second; hottest by its share of the limit."""
    best: dict[str, tuple[str, float, float]] = {}
    for (target, key), used in units.items():
        wcu, rcu = used.wcu * rate / per_request, used.rcu * rate / per_request
        load = max(wcu / PARTITION_WCU, rcu / PARTITION_RCU)
        if target not in best or load > max(best[target][1] / PARTITION_WCU, best[target][2] / PARTITION_RCU):
            best[target] = (key, wcu, rcu)
    return best
