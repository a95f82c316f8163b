"""The AWS stand-in: moto in server mode on loopback, DynamoDB requests serialized,
Queries answered from their partition, transactions backing up only their own items,
and faults that tests can switch on.

    python -m local.aws --host 127.0.0.1 --port 5000

moto does not serialize concurrent writes (TOOLCHAIN.md: 20 threads doing a
conditional decrement on one item lost an update in about 3 % of runs), so every
DynamoDB operation here runs under one lock, as DynamoDB itself applies
conditional writes to an item one at a time. Without it a concurrency test would
test moto's race, not ours.

Faults are injected at the network, in front of moto, without touching the
application: `POST /_local/faults` with JSON
    {"service": "ses", "operation": "SendEmail", "status": 503,
     "code": "ServiceUnavailable", "count": 3}
answers the next `count` matching requests with that error (`count` -1: until
cleared); `"item": "TICKET#tk_1"` matches only requests whose body holds that string. A
TransactWriteItems fault whose code is TransactionConflict (or ConditionalCheckFailed,
ThrottlingError) is answered as DynamoDB cancels a transaction: 400
TransactionCanceledException with `CancellationReasons`, that code on the named item; `DELETE /_local/faults` clears them; `GET /_local/faults` lists them, each
with `hits`, how many requests it has failed so far.
`service` is the signing name in the request's credential scope (dynamodb, ses,
sqs, s3, secretsmanager); `operation` is matched against X-Amz-Target or the path
(optional).

`GET /_local/mail` lists the email SES has accepted (newest last): id, source,
destinations and, for raw messages, the MIME text. (moto's own /moto-api/data.json
serializes every model, DynamoDB items included, and gets slow as the table grows.)

**What each caller was allowed to do.** Every signed request is recorded as the IAM
authorizations AWS would check for it: (access key id, IAM action, resource ARN), e.g. a
DynamoDB transaction as PutItem / UpdateItem / DeleteItem / ConditionCheckItem on each
item's table (`dynamodb:TransactWriteItems` is no IAM action), a Query on an index as the
index's ARN, an SES v2 SendEmail as `ses:SendEmail` on the From identity and the
configuration set. The local gateway gives each function its own access key id
(`AKLOCAL<FunctionLogicalId>`), so `GET /_local/calls` answers what each function really
needed: `{"calls": [{"access_key", "action", "resource", "count"}]}`. Tests compare it with
the functions' policies in template.yaml.

**Configuration sets.** SES refuses an email naming a configuration set that does not exist;
moto ignores the name, so this layer refuses it as SES does (404 NotFoundException).

**Key sizes.** DynamoDB refuses a key whose partition part is over 2,048 bytes or whose
sort part is over 1,024 with a ValidationException, on reads as on writes; moto checks
only writes, so this layer checks the keys of every read, update, delete and query too.
"""

from __future__ import annotations

import argparse
import base64
import functools
import io
import json
import logging
import os
import re
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from local.lifeline import exit_with_parent
from local.ports import ensure_free

_lock = threading.RLock()
_faults: list[dict[str, Any]] = []
_faults_lock = threading.Lock()
_SCOPE = re.compile(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d+/([^/]+)/([^/]+)/aws4_request")
_calls: Counter[tuple[str, str, str]] = Counter()
_calls_lock = threading.Lock()
ACCOUNT = "123456789012"  # moto's default account, and local.template's
HASH_KEY_MAX_BYTES, RANGE_KEY_MAX_BYTES = 2048, 1024


def serialize_dynamodb() -> None:
    """Run each DynamoDB request to completion before the next one starts."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "_serialized", False):
        return
    original = DynamoHandler.call_action

    def call_action(self):  # type: ignore[no-untyped-def]
        with _lock:
            try:
                return original(self)
            finally:
                if not self.headers.get("X-Amz-Target", "").endswith(_READS):
                    _changes.append(None)  # the table may have changed: index groupings are stale

    call_action._serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


_READS = ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "DescribeTable", "ListTables", "DescribeTimeToLive")
_changes: list[None] = []  # one entry per DynamoDB request that may have written (its length is a version)


def index_queries() -> None:
    """Answer a Query from the partition it names, not from the whole table.

    moto 5.2.5 answers every Query by listing and sorting every item of the table, then
    keeping those of the partition: the cost of a Query grows with the table, and a local
    stack shared by many tests (or a soak of thousands of orders) slows to a crawl. Here
    moto gets only the candidates: the partition's own items for the table's key, the
    items whose index key matches for a GSI (the table's items grouped by that key in one
    pass, kept until the next write, so a run of index queries costs one pass). moto still
    applies the conditions, sorting, paging, filters and projections itself. Safe because
    every DynamoDB request runs alone (`serialize_dynamodb`)."""
    from moto.dynamodb.models.table import Table

    if getattr(Table.query, "_indexed", False):
        return
    original = Table.query
    groupings: dict[tuple[int, str], tuple[int, dict]] = {}  # (table, attribute) -> (version, value -> items)

    def grouped(table, name):  # type: ignore[no-untyped-def]
        version = len(_changes)
        cached = groupings.get((id(table), name))
        if cached is None or cached[0] != version:
            groups: dict = {}
            for part in table.items.values():
                for item in part.values() if table.range_key_attr else [part]:
                    value = item.attrs.get(name)
                    if value is not None:
                        groups.setdefault(value, []).append(item)
            cached = groupings[(id(table), name)] = (version, groups)
        return cached[1]

    def candidates(table, hash_key, index_name, conditions):  # type: ignore[no-untyped-def]
        if index_name is None:
            partition = table.items.get(hash_key) if hash_key is not None else None
            if partition is None:
                return []
            return list(partition.values()) if table.range_key_attr else [partition]
        if not conditions:
            return None
        (name, value), *others = conditions
        found = grouped(table, name).get(value, [])
        return [item for item in found if all(item.attrs.get(n) is not None and item.attrs.get(n) == v for n, v in others)]

    def query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward,  # type: ignore[no-untyped-def]
              projection_expressions, index_name=None, *args, **kwargs):
        found = candidates(self, hash_key, index_name, kwargs.get("hash_key_conditions"))
        if found is not None:
            self.all_items = lambda: found  # moto's query reads its candidates from here
        try:
            return original(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward,
                            projection_expressions, index_name, *args, **kwargs)
        finally:
            self.__dict__.pop("all_items", None)

    query._indexed = True  # type: ignore[attr-defined]
    Table.query = query  # type: ignore[method-assign]


def attribute_values_as_they_are() -> None:
    """Write DynamoDB attribute values to the response as they are.

    moto 5.2.5 writes every response member by member against the botocore model, looking
    each value up under its possible aliases. An item's attribute values are most of a
    DynamoDB response (ten members each, nested for maps and lists), and that walk was about
    60% of moto's time per request (profiled: GetItem, PutItem, UpdateItem, Query). An
    attribute value is already its own wire form, `{type: value}`; only binary values need
    base64. Anything else goes to moto's own serializer, and the two agree
    (tests/unit/test_local_aws.py). Used by the stand-in and by the unit tests' `mock_aws`.
    """
    from moto.core import serialize

    if "json" in serialize.SERVICE_SPECIFIC_SERIALIZERS.get("dynamodb", {}):
        return

    class DynamoDBSerializer(serialize.JSONSerializer):
        def _serialize_type_structure(self, serialized, value, shape, key):  # type: ignore[no-untyped-def]
            if shape.name == "AttributeValue":
                wire = _attribute_value(value)
                if wire is not None:
                    self._default_serialize(serialized, wire, shape, key)
                    return
            super()._serialize_type_structure(serialized, value, shape, key)

    serialize.SERVICE_SPECIFIC_SERIALIZERS.setdefault("dynamodb", {})["json"] = DynamoDBSerializer


def _base64(value: Any) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def _attribute_value(value: Any) -> dict[str, Any] | None:
    """The wire form of one attribute value, or None for anything that is not plainly one."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((kind, inner),) = value.items()
    if kind in ("S", "N"):
        return {kind: str(inner)}
    if kind in ("BOOL", "NULL"):
        return {kind: inner}
    if kind in ("SS", "NS"):
        return {kind: [str(member) for member in inner]}
    if kind == "B":
        return {kind: _base64(inner)}
    if kind == "BS":
        return {kind: [_base64(member) for member in inner]}
    if kind == "M":
        members = {name: _attribute_value(member) for name, member in inner.items()}
        return None if None in members.values() else {kind: members}
    if kind == "L":
        elements = [_attribute_value(member) for member in inner]
        return None if None in elements else {kind: elements}
    return None


def transactions_keep_their_items_only() -> None:
    """Back up only the items a transaction names, not its whole table.

    moto 5.2.5 keeps a copy of every table a TransactWriteItems touches (`copy.deepcopy`
    of the table, all its items) to roll back to if the transaction is cancelled: each
    transaction costs as much as the table is big, and a shared test stack or a soak slows
    down as it fills. Here the copy moto takes is the table itself, and the items the
    transaction names are copied instead and put back if it fails. What moto checks and
    writes is unchanged. Safe because every DynamoDB request runs alone."""
    import copy

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    if getattr(DynamoDBBackend.transact_write_items, "_item_backups", False):
        return
    original = DynamoDBBackend.transact_write_items
    in_transaction = threading.local()

    def table_deepcopy(self, memo):  # type: ignore[no-untyped-def]
        if getattr(in_transaction, "active", False):
            return self  # moto's whole-table backup: the items are backed up below instead
        copied = self.__class__.__new__(self.__class__)
        memo[id(self)] = copied
        for name, value in self.__dict__.items():
            setattr(copied, name, copy.deepcopy(value, memo))
        return copied

    def slot(table, hash_value, range_value):  # type: ignore[no-untyped-def]
        part = table.items.get(hash_value)
        return part.get(range_value) if range_value is not None and part is not None else part

    def put_back(table, hash_value, range_value, before) -> None:  # type: ignore[no-untyped-def]
        if range_value is None:
            table.items.pop(hash_value, None) if before is None else table.items.__setitem__(hash_value, before)
        elif before is None:
            table.items.get(hash_value, {}).pop(range_value, None)
        else:
            table.items[hash_value][range_value] = before

    def transact_write_items(self, transact_items):  # type: ignore[no-untyped-def]
        saved = []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName") or "")
            key = op.get("Key") or op.get("Item") or {}
            if table is None or table.hash_key_attr not in key or (table.range_key_attr and table.range_key_attr not in key):
                continue  # moto refuses it itself
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            saved.append((table, hash_value, range_value, copy.deepcopy(slot(table, hash_value, range_value))))
        in_transaction.active = True
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, before in reversed(saved):
                put_back(table, hash_value, range_value, before)
            raise
        finally:
            in_transaction.active = False

    Table.__deepcopy__ = table_deepcopy  # type: ignore[attr-defined]
    transact_write_items._item_backups = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def handler_methods_listed_once() -> None:
    """moto finds a handler's method by listing the class's members with `inspect` on every
    request; the list, once per class."""
    import moto.core.responses as responses

    if not hasattr(responses.method_names_from_class, "cache_info"):
        responses.method_names_from_class = functools.lru_cache(maxsize=None)(responses.method_names_from_class)


def fix_moto() -> None:
    """The fixes above, for the stand-in's server and `like_the_stand_in` alike."""
    serialize_dynamodb()
    index_queries()
    transactions_keep_their_items_only()
    attribute_values_as_they_are()
    handler_methods_listed_once()


@contextmanager
def like_the_stand_in() -> Iterator[None]:
    """moto in process (`mock_aws`) with the stand-in's own fixes above: each DynamoDB
    request run alone, a Query answered from its partition, a transaction backing up only
    the items it names, attribute values written into answers as they are, a handler's
    method list made once. moto 5.2.5 otherwise copies the whole table for every item of
    every TransactWriteItems and sorts the whole table for every Query, so a test's or a
    model's run grows with the square of its sample. What moto checks, writes and answers is unchanged; the originals come back
    after the block. Used by the unit tests' `aws` fixture and the capacity model."""
    from moto.core import responses, serialize
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    saved = [(DynamoHandler, "call_action"), (Table, "query"), (DynamoDBBackend, "transact_write_items"), (Table, "__deepcopy__"),
             (responses, "method_names_from_class")]
    originals = [(owner, name, owner.__dict__.get(name)) for owner, name in saved]
    serializers = dict(serialize.SERVICE_SPECIFIC_SERIALIZERS.get("dynamodb", {}))
    fix_moto()
    try:
        yield
    finally:
        serialize.SERVICE_SPECIFIC_SERIALIZERS["dynamodb"] = serializers
        for owner, name, original in originals:
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


def _matching_fault(environ: dict[str, Any], body: bytes = b"") -> dict[str, Any] | None:
    scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service = scope.group(1) if scope else ""
    target = environ.get("HTTP_X_AMZ_TARGET", "") + " " + environ.get("PATH_INFO", "")
    with _faults_lock:
        for fault in _faults:
            if fault["count"] == 0 or fault["service"] != service:
                continue
            if fault.get("operation") and fault["operation"] not in target:
                continue
            if fault.get("item") and fault["item"].encode() not in body:
                continue
            if fault["count"] > 0:
                fault["count"] -= 1
            fault["hits"] += 1
            return dict(fault)
    return None


def _sent_mail() -> list[dict[str, Any]]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    found = []
    for region, backend in ses_backends[DEFAULT_ACCOUNT_ID].items():
        for message in backend.sent_messages:
            found.append(
                {
                    "id": message.id, "region": region, "source": getattr(message, "source", None),
                    "destinations": getattr(message, "destinations", None), "raw": getattr(message, "raw_data", None),
                    "subject": getattr(message, "subject", None), "body": getattr(message, "body", None),
                }
            )
    return found


# ------------------------------------------------------------------ IAM record
def _signer(environ: dict[str, Any]) -> tuple[str, str, str] | None:
    """(access key id, region, service) from the Authorization header or a presigned URL."""
    found = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if found is None:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        credential = (query.get("X-Amz-Credential") or [""])[0]
        found = _CREDENTIAL.search("Credential=" + credential)
    return (found.group(1), found.group(2), found.group(3)) if found else None


def _dynamodb(region: str, target: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    def table(name: str) -> str:
        return f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{name}"

    if target in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{target}", table(name)) for name in body.get("RequestItems") or {}]
    if target in ("TransactWriteItems", "TransactGetItems"):
        kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
        return [
            (f"dynamodb:{kinds[kind]}", table(request["TableName"]))
            for item in body.get("TransactItems") or []
            for kind, request in item.items()
            if kind in kinds
        ]
    resource = table(str(body.get("TableName", "")))
    if body.get("IndexName"):
        resource += f"/index/{body['IndexName']}"
    return [(f"dynamodb:{target}", resource)]


def _s3(environ: dict[str, Any]) -> list[tuple[str, str]]:
    bucket, _, key = unquote(environ.get("PATH_INFO", "")).lstrip("/").partition("/")
    method = environ["REQUEST_METHOD"]
    if not key:
        return [("s3:ListBucket" if method in ("GET", "HEAD") else f"s3:{method}Bucket", f"arn:aws:s3:::{bucket}")]
    action = {"GET": "GetObject", "HEAD": "GetObject", "PUT": "PutObject", "DELETE": "DeleteObject"}.get(method, method)
    return [(f"s3:{action}", f"arn:aws:s3:::{bucket}/{key}")]


def authorizations(environ: dict[str, Any], body: bytes) -> tuple[str, list[tuple[str, str]]] | None:
    """(access key id, [(IAM action, resource ARN)]) that AWS would check for this request."""
    signer = _signer(environ)
    if signer is None:
        return None
    key, region, service = signer
    target = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
    data: dict[str, Any] = {}
    if target or service == "ses":
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = {name: values[0] for name, values in parse_qs(body.decode("utf-8", "replace")).items()}
    if service == "dynamodb":
        return key, _dynamodb(region, target, data)
    if service == "s3":
        return key, _s3(environ)
    if service == "secretsmanager":
        secret = str(data.get("SecretId", ""))
        arn = secret if secret.startswith("arn:") else f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{secret}"
        return key, [(f"secretsmanager:{target}", arn)]
    if service == "ssm":
        name = str(data.get("Name", "")).lstrip("/")
        return key, [(f"ssm:{target}", f"arn:aws:ssm:{region}:{ACCOUNT}:parameter/{name}")]
    if service == "sqs":
        action = target or str(data.get("Action", ""))
        queue = urlsplit(str(data.get("QueueUrl", ""))).path.rstrip("/").rpartition("/")[2]
        return key, [(f"sqs:{action}", f"arn:aws:sqs:{region}:{ACCOUNT}:{queue}")]
    if service == "ses":
        if environ.get("PATH_INFO", "") == "/v2/email/outbound-emails":  # SES v2 SendEmail
            sender = str(data.get("FromEmailAddress", "")).rpartition("<")[2].rstrip(">")
            found = [("ses:SendEmail", f"arn:aws:ses:{region}:{ACCOUNT}:identity/{sender}")]
            if data.get("ConfigurationSetName"):
                found.append(("ses:SendEmail", f"arn:aws:ses:{region}:{ACCOUNT}:configuration-set/{data['ConfigurationSetName']}"))
            return key, found
        return key, [(f"ses:{data.get('Action') or environ['REQUEST_METHOD'] + ' ' + environ.get('PATH_INFO', '')}", "*")]
    return key, [(f"{service}:{target or data.get('Action') or environ['REQUEST_METHOD']}", "*")]


def _record(environ: dict[str, Any], body: bytes, start_response):
    """Record the request's authorizations; answers the start_response to hand moto, which
    for an S3 read records s3:ListBucket too when the object is missing (S3 answers such a
    caller 404 only if it may list the bucket, else 403)."""
    found = authorizations(environ, body)
    if found is None:
        return start_response
    key, pairs = found
    with _calls_lock:
        for action, resource in pairs:
            _calls[(key, action, resource)] += 1
    if len(pairs) != 1 or pairs[0][0] != "s3:GetObject":
        return start_response
    bucket = pairs[0][1].split("/", 1)[0]

    def start(status: str, headers, exc_info=None):
        if status.startswith("404"):
            with _calls_lock:
                _calls[(key, "s3:ListBucket", bucket)] += 1
        return start_response(status, headers, exc_info)

    return start


def recorded_calls() -> list[dict[str, Any]]:
    with _calls_lock:
        return [{"access_key": k, "action": a, "resource": r, "count": n} for (k, a, r), n in sorted(_calls.items())]


# ------------------------------------------------------------------- key sizes
def _key_schema(table: str, index: str | None) -> tuple[str, str | None] | None:
    """(partition key, sort key) attribute names of a table or one of its indexes."""
    from moto.dynamodb.models import dynamodb_backends

    for backends in list(dynamodb_backends.values()):
        for backend in list(backends.values()):
            found = backend.tables.get(table)
            if found is None:
                continue
            schema = found.schema
            if index:
                schema = next((i.schema for i in [*found.global_indexes, *found.indexes] if i.name == index), schema)
            names = {k["KeyType"]: k["AttributeName"] for k in schema}
            return names.get("HASH", ""), names.get("RANGE")
    return None


def _value_size(value: Any) -> int:
    if isinstance(value, dict) and value:
        kind, raw = next(iter(value.items()))
        return len(str(raw).encode("utf-8")) if kind == "S" else len(str(raw))
    return 0


def _problem(partition_value: Any, sort_value: Any) -> str | None:
    if _value_size(partition_value) > HASH_KEY_MAX_BYTES:
        return f"Size of hashkey has exceeded the maximum size limit of{HASH_KEY_MAX_BYTES} bytes"
    if _value_size(sort_value) > RANGE_KEY_MAX_BYTES:
        return f"Aggregated size of all range keys has exceeded the size limit of {RANGE_KEY_MAX_BYTES} bytes"
    return None


_COMPARED = re.compile(r"(#?[A-Za-z0-9_]+)\s*=\s*(:[A-Za-z0-9_]+)")
_PLACEHOLDER = re.compile(r":[A-Za-z0-9_]+")


def _key_problem(table: str, key: Any) -> str | None:
    schema = _key_schema(table, None)
    if schema is None or not isinstance(key, dict):
        return None
    partition, sort = schema
    return _problem(key.get(partition), key.get(sort) if sort else None)


def _query_problem(body: dict[str, Any]) -> str | None:
    """A Query's key condition: the partition key's value is the one it is `=` to; every
    other value in the condition is compared with the sort key."""
    schema = _key_schema(str(body.get("TableName", "")), body.get("IndexName"))
    if schema is None:
        return None
    expression = str(body.get("KeyConditionExpression", ""))
    names, values = body.get("ExpressionAttributeNames") or {}, body.get("ExpressionAttributeValues") or {}
    on_partition = {placeholder for name, placeholder in _COMPARED.findall(expression) if names.get(name, name) == schema[0]}
    others = set(_PLACEHOLDER.findall(expression)) - on_partition
    for placeholder in on_partition:
        problem = _problem(values.get(placeholder), None)
        if problem:
            return problem
    for placeholder in others:
        problem = _problem(None, values.get(placeholder))
        if problem:
            return problem
    return None


def key_size_error(target: str, body: dict[str, Any]) -> str | None:
    """DynamoDB's ValidationException message for an oversized key in this request, if any."""
    problems: list[str | None] = []
    if target in ("GetItem", "DeleteItem", "UpdateItem"):
        problems.append(_key_problem(str(body.get("TableName", "")), body.get("Key")))
    elif target == "Query":
        problems.append(_query_problem(body))
    elif target == "BatchGetItem":
        for table, request in (body.get("RequestItems") or {}).items():
            problems += [_key_problem(table, key) for key in request.get("Keys") or []]
    elif target in ("TransactWriteItems", "TransactGetItems"):
        for item in body.get("TransactItems") or []:
            for kind, request in item.items():
                if kind != "Put":  # moto checks the items it writes
                    problems.append(_key_problem(str(request.get("TableName", "")), request.get("Key")))
    problem = next((p for p in problems if p), None)
    return f"One or more parameter values were invalid: {problem}" if problem else None


def _missing_configuration_set(environ: dict[str, Any], signer: tuple[str, str, str] | None, body: bytes) -> str | None:
    """The configuration set an SES v2 SendEmail names, if SES has no such set."""
    if signer is None or signer[2] != "ses" or environ.get("PATH_INFO") != "/v2/email/outbound-emails":
        return None
    from moto.ses.models import ses_backends

    try:
        name = json.loads(body or b"{}").get("ConfigurationSetName")
    except ValueError:
        return None
    return name if name and name not in ses_backends[ACCOUNT][signer[1]].config_sets else None


# A fault with one of these codes on a TransactWriteItems is answered as DynamoDB
# cancels a transaction: 400 TransactionCanceledException with one CancellationReason per
# item, that code on the item named by the fault's `item` (a string the item's request
# contains, e.g. "TICKET#tk_1"; the first item when none is named), "None" on the others.
CANCELLATION_CODES = frozenset({"TransactionConflict", "ConditionalCheckFailed", "ThrottlingError", "ProvisionedThroughputExceeded"})


def _cancelled(body: bytes, fault: dict[str, Any]) -> dict[str, Any]:
    try:
        items = json.loads(body or b"{}").get("TransactItems") or []
    except ValueError:
        items = []
    wanted = fault.get("item") or ""
    hit = next((i for i, item in enumerate(items) if wanted and wanted in json.dumps(item)), 0)
    messages = {"TransactionConflict": "Transaction is ongoing for the item", "ConditionalCheckFailed": "The conditional request failed"}
    reasons = [
        {"Code": fault["code"], "Message": messages.get(fault["code"], "Throughput exceeds the current capacity")} if i == hit
        else {"Code": "None"}
        for i in range(max(1, len(items)))
    ]
    codes = ", ".join(reason["Code"] for reason in reasons)
    return {
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
        "CancellationReasons": reasons,
    }


# -------------------------------------------------------------------- the layer
def with_faults(app):
    """WSGI middleware: the local routes (faults, mail, calls), then the record of what each
    caller needed, injected failures, DynamoDB's key limits, then moto."""

    def respond(start_response, status: int, body: dict[str, Any], headers: list[tuple[str, str]] | None = None):
        data = json.dumps(body).encode()
        start_response(f"{status} Fault", [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *(headers or [])])
        return [data]

    def middleware(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_local/mail":
            return respond(start_response, 200, {"messages": _sent_mail()})
        if path == "/_local/calls":
            return respond(start_response, 200, {"calls": recorded_calls()})
        if path == "/_local/faults":
            method = environ["REQUEST_METHOD"]
            if method == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = json.loads(environ["wsgi.input"].read(length) or b"{}")
                fault = {
                    "service": str(body["service"]), "operation": body.get("operation") or "", "item": body.get("item") or "",
                    "status": int(body.get("status", 503)), "code": str(body.get("code", "ServiceUnavailable")),
                    "count": int(body.get("count", 1)), "hits": 0,
                }
                with _faults_lock:
                    _faults.append(fault)
            elif method == "DELETE":
                with _faults_lock:
                    _faults.clear()
            with _faults_lock:
                return respond(start_response, 200, {"faults": list(_faults)})
        body = b""
        signer = _signer(environ)
        if signer is not None and signer[2] != "s3":  # S3's bodies (images) are not needed, and may stream
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
        start_response = _record(environ, body, start_response)
        fault = _matching_fault(environ, body)
        if fault is not None:
            if fault["code"] in CANCELLATION_CODES and "TransactWriteItems" in environ.get("HTTP_X_AMZ_TARGET", ""):
                answer = _cancelled(body, fault)
                return respond(start_response, 400, answer, [("x-amzn-ErrorType", "TransactionCanceledException")])
            answer = {"__type": fault["code"], "message": f"Injected fault: {fault['code']}", "Message": "Injected fault"}
            return respond(start_response, fault["status"], answer, [("x-amzn-ErrorType", fault["code"])])
        missing_set = _missing_configuration_set(environ, signer, body)
        if missing_set:
            message = f"Configuration set <{missing_set}> does not exist."
            return respond(start_response, 404, {"message": message}, [("x-amzn-ErrorType", "NotFoundException")])
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("DynamoDB_"):
            try:
                problem = key_size_error(target.rpartition(".")[2], json.loads(body or b"{}"))
            except ValueError:
                problem = None
            if problem:
                error = "com.amazonaws.dynamodb.v20120810#ValidationException"
                return respond(start_response, 400, {"__type": error, "message": problem}, [("x-amzn-ErrorType", "ValidationException")])
        return app(environ, start_response)

    return middleware


def _dispatcher() -> Any:
    """moto's dispatcher less two costs of every request: the backend of a Host header is
    looked up once (moto lists and stats its own package directory for it each time, under a
    lock every request shares), and its Flask apps run out of debug mode (moto turns it on;
    it wraps each request's form data in a class made for the request). Errors still answer 500."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    class Dispatcher(DomainDispatcherApplication):
        @functools.lru_cache(maxsize=1024)  # noqa: B019 (one dispatcher, for the server's life)
        def get_backend_for_host(self, host: str | None) -> Any:
            return super().get_backend_for_host(host)

    def create_app(service: str) -> Any:
        app = create_backend_app(service)
        app.debug = False
        return app

    return Dispatcher(create_app)


class Server:
    """moto's WSGI app behind the fault layer, served from a background thread."""

    def __init__(self, host: str, port: int) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import make_server

        # No access log: a line per request (and its lock) cost a sixth of the stand-in's time
        # in a soak; errors are still logged.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        fix_moto()
        app = with_faults(_dispatcher())
        self._server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)


def serve(host: str, port: int) -> Server:
    """Start the stand-in on host:port in this process (background thread)."""
    return Server(host, port).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="moto server for the local stack")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    if not ensure_free(args.host, args.port, "AWS stand-in", "AWS_PORT"):
        return 2
    server = serve(args.host, args.port)
    print(f"AWS stand-in (moto) listening on http://{args.host}:{args.port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    exit_with_parent()
    stop.wait()
    server.stop()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter teardown: freeing a big moto state can take many seconds


if __name__ == "__main__":
    sys.exit(main())
