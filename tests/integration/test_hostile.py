"""A hostile corpus through the local gateway, for every route and every role: bodies in
unsupported and missing content types, undecodable bytes, deep nesting, numbers of
thousands of digits, oversized bodies (ours and API Gateway's limit), very long and
unicode ids in paths, queries and bodies, forged and foreign cursors.

Not one answer may be a 5xx; every other answer is in the API's error format (or API
Gateway's own `{"message"}` where the gateway answers), and nothing changes: the table
(but for the gate's audit records, written for every scan by design), the QR images and the
mail sent are the same after the corpus as before it.

On a stack of its own, its schedules held back: on the worker's shared stack the expiry
runs and late webhooks of the tests before this one change their own orders while the
corpus runs, and "nothing changed" could not tell those from a hostile request's doing.
"""

from __future__ import annotations

import base64
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from local import stack as stack_module
from local.template import load_template
from ticketing.pages import encode_cursor
from tests.conftest import ROOT
from tests.integration.test_checkout import buy
from tests.integration.support import Api, StackUnderTest
from tests.integration.test_webhook import pay, table_item, wait_for

TEMPLATE = load_template(ROOT / "template.yaml")
ROUTES = sorted({(r.method, r.path) for r in TEMPLATE.routes if r.path.endswith("/")})
ROLES = {"anonymous": None, "customer": [], "scanner": ["scanner"], "admin": ["admin"]}

# Refused before any route runs, whatever the route and the ids: sent with real ids.
MALFORMED = {
    "invalid-utf8": b'{"name": "\xff\xfe\xfd"}',
    "deep-nesting": b"[" * 10_000,
    "huge-number": b'{"amount_cents": ' + b"9" * 5_000 + b"}",
    "not-json": b"name=Gig&venue=Hall",
    "oversized": json.dumps({"description": "x" * 70_000}).encode(),
}
CONTENT_TYPES = [
    "application/json", "text/plain;charset=UTF-8", "application/octet-stream",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None,
]
# Parseable, valid for no route (every body is an object, or a list of objects with
# required fields): sent with plausible ids nothing has, so no route can act.
SCHEMA_BREAKING = b'[{"x": 1}]'
LONG_IDS = {"event_id": "e" * 3_000, "ticket_ids": ["t" * 3_000], "code": "c" * 3_000,
            "items": [{"ticket_type_id": "y" * 3_000, "qty": 1}], "fixture_id": "f" * 3_000}
PATH_IDS = {"long": "e" * 3_000, "unicode": "évènement-ñ", "emoji": "🎫" * 30, "percent": "%FF%FE", "65-chars": "a" * 65}
UNKNOWN_ID = "zz_" + "0" * 20
# Cursors no listing handed out: objects of the wrong shape, another listing's or another
# customer's key, positions in partitions that do not exist, deep nesting, not UTF-8.
FORGED_CURSORS = {name: encode_cursor(value) for name, value in {
    "any-object": {"a": 1},
    "events-key-elsewhere": {"PK": {"S": "EVENT#ev_1"}, "SK": {"S": "META"}, "GSI1PK": {"S": "EVENTS"}, "GSI1SK": {"S": "2031-01-01#ev_1"}},
    "another-customer": {"PK": {"S": "TICKET#t_1"}, "SK": {"S": "META"}, "GSI1PK": {"S": "CUSTOMER#someone-else"}, "GSI1SK": {"S": "TICKET#2031-01-01#t_1"}},
    "long-key": {"PK": {"S": "EVENT#" + "e" * 3_000}, "SK": {"S": "META"}, "GSI1PK": {"S": "EVENTS"}, "GSI1SK": {"S": "x#e"}},
    "number-key": {"PK": {"N": "1"}, "SK": {"S": "META"}, "GSI1PK": {"S": "EVENTS"}, "GSI1SK": {"S": "x#e"}},
    "scatter-partitions": {"p": {"99": "2031-01-01#or_1"}, "x": [-1]},
}.items()} | {"deep": base64.urlsafe_b64encode(b"[" * 1_400).decode(), "not-utf8": "_w", "not-base64": "%%%"}


# Its stack (a module fixture) starts once: every test of the module on one worker.
pytestmark = pytest.mark.xdist_group("hostile")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A stack only this module uses, its schedules an hour apart (none runs during the corpus)."""
    with StackUnderTest.running(tmp_path_factory.mktemp("hostile"), quiet=True, seed_demo=False, schedule_seconds=3600) as instance:
        yield instance


@pytest.fixture(scope="module")
def api(stack):
    return Api(stack)


@pytest.fixture(scope="module")
def world(api, stack):
    """Real ids (an event, its type, a paid order and its ticket, the owner) and the tokens."""
    admin = api.token(["admin"])
    event = api.post("/api/events/", token=admin, json={
        "name": "Hostile", "venue": "Hall", "currency": "usd",
        "starts_at": "2031-06-01T18:00:00Z", "ends_at": "2031-06-01T22:00:00Z"}).json()
    type_id = api.post(f"/api/events/{event['id']}/ticket-types/", token=admin,
                       json={"name": "GA", "price_cents": 1500, "capacity": 10}).json()["id"]
    owner = f"hostile-{uuid.uuid4().hex[:6]}"
    tokens = {role: None if groups is None else api.token(groups, **({"sub": owner} if role == "customer" else {}))
              for role, groups in ROLES.items()}
    order = buy(api, tokens["customer"], event["id"], [(type_id, 1)]).json()
    pay(stack, order)
    assert wait_for(lambda: table_item(stack, f"ORDER#{order['order_id']}").get("receipt_sent_at"), timeout=60)
    ticket_id = order["tickets"][0]["id"]
    for path in (f"/api/tickets/{ticket_id}/qr/data/", f"/api/tickets/{ticket_id}/qr/image/"):
        assert api.get(path, token=tokens["customer"]).status_code == 200  # images rendered: reads change nothing
    ids = {"event_id": event["id"], "type_id": type_id, "order_id": order["order_id"], "ticket_id": ticket_id}
    return {"ids": ids, "tokens": tokens}


def _room_state(pk: str) -> bool:
    return pk.startswith("QUEUE#") and "#STATE#" in pk


def state(stack) -> dict:
    """What a request could change: the table (the gate's audit trail aside, and the waiting
    rooms' state, which their admission job rewrites every second), the images (the rooms'
    published `queue/` positions aside, for the same reason), the mail."""
    ddb, items = stack.client("dynamodb"), []
    pages = ddb.get_paginator("scan").paginate(TableName=stack_module.TABLE, ConsistentRead=True)
    for page in pages:
        items += [json.dumps(item, sort_keys=True) for item in page["Items"]
                  if not item["PK"]["S"].startswith("SCANS#") and not _room_state(item["PK"]["S"])]
    images = [o for o in stack.client("s3").list_objects_v2(Bucket=stack_module.BUCKET).get("Contents", [])
              if not o["Key"].startswith("queue/")]
    mail = requests.get(f"{stack.aws_url}/_local/mail", timeout=30).json()["messages"]
    return {"items": sorted(items), "images": sorted((o["Key"], o["ETag"]) for o in images), "mail": len(mail)}


def fill(path: str, ids: dict[str, str], value: str | None = None) -> str:
    for name, real in ids.items():
        path = path.replace("{" + name + "}", real if value is None else value)
    return path


def corpus(world) -> list[tuple[str, str, str, str | None, bytes, dict]]:
    """(label, method, path, role, body, headers) for every route and role."""
    ids, cases = world["ids"], []
    for method, template in ROUTES:
        has_ids = "{" in template
        for role in ROLES:
            for name, body in MALFORMED.items():
                for content_type in CONTENT_TYPES if name == "invalid-utf8" else ["application/json", "text/plain"]:
                    cases.append((f"{name} as {content_type}", method, fill(template, ids), role, body, {"Content-Type": content_type}))
            for content_type in CONTENT_TYPES:
                cases.append((f"schema-breaking as {content_type}", method, fill(template, ids, UNKNOWN_ID), role,
                              SCHEMA_BREAKING, {"Content-Type": content_type}))
            cases.append(("long ids in the body", method, fill(template, ids, UNKNOWN_ID), role,
                          json.dumps(LONG_IDS).encode(), {"Content-Type": "application/json"}))
            for name, bad in PATH_IDS.items() if has_ids else ():
                cases.append((f"{name} id in the path", method, fill(template, ids, bad), role, b"", {}))
            if method == "GET":
                query = "&".join(f"{key}={'q' * 3_000}" for key in ("event_id", "code", "cursor", "since", "status", "format"))
                cases.append(("long query values", method, fill(template, ids, UNKNOWN_ID) + "?" + query, role, b"", {}))
                for name, cursor in FORGED_CURSORS.items():
                    cases.append((f"{name} cursor", method, fill(template, ids) + f"?cursor={cursor}", role, b"", {}))
                cases.append(("unicode query values", method, fill(template, ids, UNKNOWN_ID) + "?event_id=%C3%A9%FF&limit=%F0%9F%8E%AB",
                              role, b"", {}))
        cases.append(("over API Gateway's 10 MB", method, fill(template, ids), "anonymous", b"x" * (10 * 1024 * 1024 + 1),
                      {"Content-Type": "application/json"}))
    return cases


def well_formed_error(response: requests.Response) -> str | None:
    """None if the answer is in the API's error format (or API Gateway's own); else why not."""
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.text[:200]!r}"
    if not isinstance(body, dict):
        return f"not an object: {body!r:.200}"
    if isinstance(body.get("error"), str) and isinstance(body.get("detail"), str):
        return None
    if set(body) == {"message"} and isinstance(body["message"], str):
        return None  # API Gateway's own answer (401, 404, 413)
    return f"not the error format: {body!r:.300}"


def test_no_hostile_input_reaches_a_5xx_or_changes_anything(api, stack, world):
    session = requests.Session()
    before = state(stack)

    def send(case):
        label, method, path, role, body, headers = case
        headers = {k: v for k, v in headers.items() if v is not None}
        token = world["tokens"][role]
        if token:
            headers["Authorization"] = f"Bearer {token}"
        prepared = requests.Request(method, stack.api_url + path, data=body or None, headers=headers).prepare()
        if "Content-Type" not in headers:
            prepared.headers.pop("Content-Type", None)  # a body with no content type at all
        try:
            response = session.send(prepared, timeout=60)
        except requests.ConnectionError as exc:  # the gateway may close on a body it refuses
            return f"{method} {path[:80]} [{role}] {label}: connection failed: {exc}"
        where = f"{method} {path[:80]} [{role}] {label}: {response.status_code}"
        if response.status_code >= 500:
            return f"{where} {response.text[:300]}"
        if response.status_code >= 400:
            problem = well_formed_error(response)
            return f"{where} {problem}" if problem else None
        return None

    cases = corpus(world)
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [failure for failure in pool.map(send, cases) if failure]
    assert len(cases) > 2_000
    assert not failures, f"{len(failures)} of {len(cases)} hostile requests failed:\n" + "\n".join(failures[:30])
    after = state(stack)
    assert after["mail"] == before["mail"], "hostile requests sent email"
    assert after["images"] == before["images"], "hostile requests changed the QR images"
    changed = set(after["items"]) ^ set(before["items"])
    assert not changed, f"hostile requests changed {len(changed)} items, e.g. {sorted(changed)[:3]}"


def test_a_long_id_never_reaches_dynamodb_which_would_refuse_it(stack):
    """The local stand-in refuses oversized keys on reads as DynamoDB does, so the corpus
    above would have seen a 500 had any long id reached a read."""
    from botocore.exceptions import ClientError

    ddb = stack.client("dynamodb")
    with pytest.raises(ClientError, match="ValidationException"):
        ddb.get_item(TableName=stack_module.TABLE, Key={"PK": {"S": "EVENT#" + "e" * 3_000}, "SK": {"S": "META"}})
    with pytest.raises(ClientError, match="ValidationException"):
        ddb.query(TableName=stack_module.TABLE, KeyConditionExpression="PK = :p AND begins_with(SK, :s)",
                  ExpressionAttributeValues={":p": {"S": "ORDER#x"}, ":s": {"S": "REFUND#" + "r" * 1_100}})
    with pytest.raises(ClientError, match="ValidationException"):
        ddb.query(TableName=stack_module.TABLE, IndexName="GSI1", KeyConditionExpression="GSI1PK = :p",
                  ExpressionAttributeValues={":p": {"S": "CUSTOMER#" + "c" * 3_000}})
    assert "Item" not in ddb.get_item(TableName=stack_module.TABLE, Key={"PK": {"S": "EVENT#" + "e" * 2_000}, "SK": {"S": "META"}})
