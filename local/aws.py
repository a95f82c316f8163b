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
cleared); `DELETE /_local/faults` clears them; `GET /_local/faults` lists them, each
with `hits`, how many requests it has failed so far.
`service` is the signing name in the request's credential scope (dynamodb, ses,
sqs, s3, secretsmanager); `operation` is matched against X-Amz-Target or the path
(optional).

`GET /_local/mail` lists the email SES has accepted (newest last): id, source,
destinations and, for raw messages, the MIME text. (moto's own /moto-api/data.json
serializes every model, DynamoDB items included, and gets slow as the table grows.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
from typing import Any

from local.lifeline import exit_with_parent
from local.ports import ensure_free

_lock = threading.RLock()
_faults: list[dict[str, Any]] = []
_faults_lock = threading.Lock()
_SCOPE = re.compile(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request")


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


def _matching_fault(environ: dict[str, Any]) -> dict[str, Any] | None:
    scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service = scope.group(1) if scope else ""
    target = environ.get("HTTP_X_AMZ_TARGET", "") + " " + environ.get("PATH_INFO", "")
    with _faults_lock:
        for fault in _faults:
            if fault["count"] == 0 or fault["service"] != service:
                continue
            if fault.get("operation") and fault["operation"] not in target:
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


def with_faults(app):
    """WSGI middleware: the local routes (faults, mail), then injected failures, then moto."""

    def respond(start_response, status: int, body: dict[str, Any], headers: list[tuple[str, str]] | None = None):
        data = json.dumps(body).encode()
        start_response(f"{status} Fault", [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *(headers or [])])
        return [data]

    def middleware(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_local/mail":
            return respond(start_response, 200, {"messages": _sent_mail()})
        if path == "/_local/faults":
            method = environ["REQUEST_METHOD"]
            if method == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = json.loads(environ["wsgi.input"].read(length) or b"{}")
                fault = {
                    "service": str(body["service"]), "operation": body.get("operation") or "",
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
        fault = _matching_fault(environ)
        if fault is not None:
            body = {"__type": fault["code"], "message": f"Injected fault: {fault['code']}", "Message": "Injected fault"}
            return respond(start_response, fault["status"], body, [("x-amzn-ErrorType", fault["code"])])
        return app(environ, start_response)

    return middleware


class Server:
    """moto's WSGI app behind the fault layer, served from a background thread."""

    def __init__(self, host: str, port: int) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        # No access log: a line per request (and its lock) cost a sixth of the stand-in's time
        # in a soak; errors are still logged.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        serialize_dynamodb()
        index_queries()
        transactions_keep_their_items_only()
        app = with_faults(DomainDispatcherApplication(create_backend_app))
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
