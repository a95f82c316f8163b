"""The one place a request body is read, and ids in paths: no input reaches a 500.

`ticketing.http.read_body` accepts UTF-8 JSON whatever its Content-Type says and answers
everything else itself (400 `Malformed JSON`, 413); ids in paths are bounded before any read.
"""

from __future__ import annotations

import base64
import json

import pytest

from ticketing.http import MAX_JSON_DEPTH, MAX_NUMBER_DIGITS, parse_json
from tests.conftest import load_function
from tests.unit.conftest import ADMIN, Invoker, _Context

EVENT = {"name": "Gig", "venue": "Hall", "starts_at": "2031-01-01T19:00:00Z", "ends_at": "2031-01-01T23:00:00Z", "currency": "eur"}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_json_within_the_bounds_parses():
    assert parse_json(nested(MAX_JSON_DEPTH)) is not None
    assert parse_json('{"a": ' + "9" * MAX_NUMBER_DIGITS + "}") == {"a": int("9" * MAX_NUMBER_DIGITS)}
    assert parse_json('{"a": -1.5e3, "b": "\\u00fc"}') == {"a": -1500.0, "b": "ü"}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (nested(MAX_JSON_DEPTH + 1), "nested deeper"),
        ("[" * 100_000, "nested deeper"),  # Python's parser would raise RecursionError
        ('{"a": ' + "9" * 5000 + "}", "numbers are limited"),  # past Python's int string limit
        ("[" + "9" * (MAX_NUMBER_DIGITS + 1) + "]", "numbers are limited"),
        ("[0." + "1" * 200 + "]", "numbers are limited"),
        ('{"a": NaN}', "NaN is not JSON"),
        ("[Infinity]", "Infinity is not JSON"),
        ("{'a': 1}", "Expecting property name"),
        ("", "Expecting value"),
    ],
)
def test_json_beyond_the_bounds_is_refused_with_the_reason(text, why):
    with pytest.raises(ValueError, match=why):
        parse_json(text)


@pytest.fixture(scope="module")
def catalogue_module():
    return load_function("catalogue")


@pytest.fixture
def call(aws, catalogue_module):
    return Invoker(catalogue_module)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain;charset=UTF-8", "application/octet-stream", "application/x-www-form-urlencoded", "", "multipart/form-data; boundary=x"],
)
def test_json_is_accepted_whatever_the_content_type_says(call, content_type):
    status, body, _ = call("POST", "/api/events/", raw_body=json.dumps(EVENT), claims=ADMIN, headers={"content-type": content_type})
    assert status == 201, body
    assert body["name"] == "Gig"


def test_json_sent_as_base64_bytes_is_read_too(call, catalogue_module):
    event = _event("POST", "/api/events/", base64.b64encode(json.dumps(EVENT).encode()).decode(), encoded=True)
    response = catalogue_module.lambda_handler(event, _Context())
    assert response["statusCode"] == 201, response["body"]


def _event(method: str, path: str, body: str, *, encoded: bool, content_type: str = "application/octet-stream") -> dict:
    return {
        "version": "2.0", "routeKey": f"{method} /api/events/", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": content_type},
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"},
            "requestId": "r", "routeKey": f"{method} /api/events/", "stage": "$default",
            "authorizer": {"jwt": {"claims": ADMIN, "scopes": None}},
        },
        "body": body, "isBase64Encoded": encoded,
    }


@pytest.mark.parametrize(
    ("body", "encoded", "why"),
    [
        (base64.b64encode(b'{"name": "\xff\xfe"}').decode(), True, "not valid UTF-8"),
        ("not base64 at all!", True, "could not be decoded"),
        ('{"name": "\udcff"}', False, "could not be decoded"),  # a str no UTF-8 can carry
        ("[" * 10_000, False, "nested deeper"),
        ('{"name": ' + "1" * 5000 + "}", False, "numbers are limited"),
        ("name=Gig&venue=Hall", False, "Expecting value"),
    ],
    ids=["invalid-utf8", "bad-base64", "lone-surrogate", "deep", "huge-number", "form"],
)
def test_anything_else_is_400_malformed_json_in_the_error_format(aws, catalogue_module, body, encoded, why):
    response = catalogue_module.lambda_handler(_event("POST", "/api/events/", body, encoded=encoded), _Context())
    answer = json.loads(response["body"])
    assert response["statusCode"] == 400, answer
    assert answer["error"] == "Malformed JSON" and answer["code"] == "malformed_json"
    assert why in answer["detail"]


@pytest.mark.parametrize("encoded", [False, True])
def test_a_body_over_the_limit_is_413_counted_in_decoded_bytes(aws, catalogue_module, encoded):
    raw = json.dumps({**EVENT, "description": "x" * 70_000}).encode()
    body = base64.b64encode(raw).decode() if encoded else raw.decode()
    response = catalogue_module.lambda_handler(_event("POST", "/api/events/", body, encoded=encoded), _Context())
    assert response["statusCode"] == 413
    assert json.loads(response["body"])["error"] == "Request too large"


def test_a_route_with_an_optional_body_takes_no_body_under_any_content_type(aws):
    verify = Invoker(load_function("verify"))
    scanner = {"sub": "scanner-1", "cognito:groups": "[scanner]"}
    status, body, _ = verify("POST", "/api/tickets/tk_00000000000000000000/checkin/", claims=scanner,
                             headers={"content-type": "text/plain"})
    assert status == 404, body  # no such ticket: the empty body was read as no body, not refused


@pytest.mark.parametrize(
    "path",
    ["/api/events/" + "e" * 3000 + "/", "/api/events/" + "e" * 65 + "/", "/api/events/évènement/", "/api/events/%C3%A9/",
     "/api/events/a.b/"],
    ids=["3000-chars", "65-chars", "unicode", "percent-encoded", "dot"],
)
def test_ids_in_paths_are_bounded_before_any_read(call, path):
    status, body, _ = call("GET", path)
    assert status == 404
    assert body["code"] == "unknown_id"


def test_a_plausible_unknown_id_is_still_looked_up(call):
    status, body, _ = call("GET", "/api/events/ev_" + "0" * 61 + "/")
    assert status == 404
    assert "code" not in body  # the catalogue's own answer: it looked


def test_webhook_body_that_is_not_utf8_is_400_before_the_signature_is_checked(aws):
    webhook = load_function("webhook")
    event = _event("POST", "/api/tickets/webhook/", base64.b64encode(b"\xff\xfe{}").decode(), encoded=True)
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /api/tickets/webhook/"
    event["headers"]["stripe-signature"] = "t=1,v1=00"
    del event["requestContext"]["authorizer"]
    response = webhook.lambda_handler(event, _Context())
    answer = json.loads(response["body"])
    assert response["statusCode"] == 400, answer
    assert answer["code"] == "malformed_json"  # not bad_signature: the secret was never read


def test_ids_in_bodies_are_bounded_too(call):
    _, event, _ = call("POST", "/api/events/", EVENT, claims=ADMIN)
    status, body, _ = call("POST", f"/api/events/{event['id']}/ticket-types/",
                           {"name": "GA", "price_cents": 100, "capacity": 5, "fixture_id": "f" * 3000}, claims=ADMIN)
    assert status == 422 and body["field"].startswith("fixture_id")
