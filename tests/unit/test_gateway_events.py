"""Pure parts of the local API Gateway: route matching, payload 2.0 events and
responses, claim flattening, and loading the real template.yaml."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import jwt
import pytest

from local.gateway.cors import CorsPolicy
from local.gateway import (
    build_event,
    build_response,
    flatten_claims,
    is_text_content_type,
    load_env_file,
    load_or_create_key,
    make_token,
    match_route,
    verify_token,
)
from local.template import (
    Route,
    Unresolved,
    build_context,
    load_template,
    load_yaml,
    resolve,
    resolve_environment,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


def route(method: str, path: str, function: str = "Fn", authorizer: str | None = None) -> Route:
    return Route(method, path, function, authorizer, "Api", f"{method}{path}")


ROUTES = [
    route("GET", "/api/events"),
    route("GET", "/api/events/"),
    route("GET", "/api/events/{event_id}"),
    route("GET", "/api/events/{event_id}/"),
    route("GET", "/api/events/special"),
    route("POST", "/api/events/{event_id}/ticket-types"),
    route("ANY", "/api/events/{event_id}/ticket-types"),
    route("GET", "/files/{proxy+}"),
    route("GET", "/files/fixed/{proxy+}"),
]


def key_of(method, path, routes=ROUTES):
    found = match_route(routes, method, path)
    return None if found is None else (found[0].route_key, found[1])


# ------------------------------------------------------------ route matching


def test_exact_routes_and_slash_forms_are_distinct():
    assert key_of("GET", "/api/events") == ("GET /api/events", {})
    assert key_of("GET", "/api/events/") == ("GET /api/events/", {})
    assert key_of("GET", "/api/events/e1") == ("GET /api/events/{event_id}", {"event_id": "e1"})
    assert key_of("GET", "/api/events/e1/") == ("GET /api/events/{event_id}/", {"event_id": "e1"})
    only_plain = [route("GET", "/x")]
    assert key_of("GET", "/x/", only_plain) is None
    assert key_of("GET", "/x", [route("GET", "/x/")]) is None


def test_most_specific_route_wins():
    assert key_of("GET", "/api/events/special") == ("GET /api/events/special", {})
    assert key_of("POST", "/api/events/e1/ticket-types")[0] == "POST /api/events/{event_id}/ticket-types"
    assert key_of("DELETE", "/api/events/e1/ticket-types")[0] == "ANY /api/events/{event_id}/ticket-types"
    assert key_of("GET", "/files/fixed/a/b") == ("GET /files/fixed/{proxy+}", {"proxy": "a/b"})
    assert key_of("GET", "/files/other/a") == ("GET /files/{proxy+}", {"proxy": "other/a"})
    # a {param} route beats a greedy one
    routes = [route("GET", "/{proxy+}"), route("GET", "/a/{x}")]
    assert key_of("GET", "/a/b", routes)[0] == "GET /a/{x}"
    assert key_of("GET", "/a/b/c", routes)[0] == "GET /{proxy+}"


def test_param_needs_one_non_empty_segment():
    assert key_of("GET", "/api/events//") is None
    assert key_of("GET", "/api/events/a/b") is None
    assert key_of("GET", "/files/") is None
    assert key_of("GET", "/files") is None


def test_method_must_match():
    assert key_of("POST", "/api/events") is None
    assert key_of("put", "/api/events/e1/ticket-types")[0] == "ANY /api/events/{event_id}/ticket-types"


def test_path_parameters_are_url_decoded():
    assert key_of("GET", "/api/events/a%20b")[1] == {"event_id": "a b"}
    assert key_of("GET", "/files/a%2Fb/c")[1] == {"proxy": "a/b/c"}


def test_default_route_only_when_nothing_else_matches():
    routes = [route("GET", "/a"), route("ANY", "$default")]
    assert key_of("GET", "/a", routes)[0] == "GET /a"
    assert key_of("POST", "/a", routes) == ("$default", {})
    assert key_of("GET", "/anything/else", routes) == ("$default", {})


# -------------------------------------------------------------- event building


def make_event(**overrides):
    args = dict(
        method="GET",
        raw_path="/api/events/e%201",
        raw_query="a=1&a=2&q=x+y&flag=",
        headers=[
            ("Host", "127.0.0.1:3000"),
            ("User-Agent", "ua/1"),
            ("X-Multi", "1"),
            ("x-multi", "2"),
            ("Cookie", "s=abc; t=xyz"),
        ],
        body=b"",
        route_key="GET /api/events/{event_id}",
        path_parameters={"event_id": "e 1"},
        source_ip="10.0.0.1",
        domain_name="127.0.0.1:3000",
        request_id="11111111-2222-3333-4444-555555555555",
        now=1584039838.123,
    )
    args.update(overrides)
    return build_event(**args)


def test_event_fields():
    event = make_event()
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /api/events/{event_id}"
    assert event["rawPath"] == "/api/events/e%201"
    assert event["rawQueryString"] == "a=1&a=2&q=x+y&flag="
    assert event["cookies"] == ["s=abc", "t=xyz"]
    assert event["headers"] == {"host": "127.0.0.1:3000", "user-agent": "ua/1", "x-multi": "1,2"}
    assert event["queryStringParameters"] == {"a": "1,2", "q": "x y", "flag": ""}
    assert event["pathParameters"] == {"event_id": "e 1"}
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx == {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": "127.0.0.1:3000",
        "domainPrefix": "127",
        "http": {
            "method": "GET",
            "path": "/api/events/e%201",
            "protocol": "HTTP/1.1",
            "sourceIp": "10.0.0.1",
            "userAgent": "ua/1",
        },
        "requestId": "11111111-2222-3333-4444-555555555555",
        "routeKey": "GET /api/events/{event_id}",
        "stage": "$default",
        "time": "12/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1584039838123,
    }


def test_optional_fields_are_omitted():
    event = make_event(raw_query="", headers=[("Host", "h")], path_parameters={})
    for key in ("cookies", "queryStringParameters", "pathParameters", "body"):
        assert key not in event
    assert event["rawQueryString"] == ""
    assert "authorizer" not in event["requestContext"]


def test_request_id_defaults_to_a_fresh_uuid():
    a = make_event(request_id=None)["requestContext"]["requestId"]
    b = make_event(request_id=None)["requestContext"]["requestId"]
    assert a != b
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", a)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "text/plain", "text/html", "application/vnd.api+json",
     "application/xml", "application/x-www-form-urlencoded", "application/javascript"],
)
def test_textual_bodies_pass_as_text(content_type):
    event = make_event(method="POST", headers=[("Content-Type", content_type)], body='{"é": 1}'.encode())
    assert event["body"] == '{"é": 1}'
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "image/png", "multipart/form-data; boundary=x"])
def test_other_bodies_are_base64(content_type):
    blob = bytes(range(256))
    headers = [("Content-Type", content_type)] if content_type else []
    event = make_event(method="POST", headers=headers, body=blob)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == blob


def test_undecodable_text_body_falls_back_to_base64():
    event = make_event(method="POST", headers=[("Content-Type", "text/plain")], body=b"\xff\xfe")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe"


def test_is_text_content_type():
    assert is_text_content_type("TEXT/CSV")
    assert not is_text_content_type("")
    assert not is_text_content_type("application/pdf")


def test_authorizer_claims_in_event():
    claims = {"sub": "u1", "cognito:groups": ["admin", "scanner"], "exp": 1700000000, "email_verified": True}
    event = make_event(claims=claims)
    assert event["requestContext"]["authorizer"] == {
        "jwt": {
            "claims": {"sub": "u1", "cognito:groups": "[admin scanner]", "exp": "1700000000", "email_verified": "true"},
            "scopes": None,
        }
    }
    scoped = make_event(claims={"sub": "u1", "scope": "read write"})
    assert scoped["requestContext"]["authorizer"]["jwt"]["scopes"] == ["read", "write"]


# ------------------------------------------------------------- claims


def test_flatten_claims():
    assert flatten_claims(
        {
            "cognito:groups": ["admin", "scanner"],
            "single": ["one"],
            "empty": [],
            "exp": 1700000000,
            "float": 1.5,
            "whole_float": 2.0,
            "email_verified": True,
            "disabled": False,
            "sub": "abc",
        }
    ) == {
        "cognito:groups": "[admin scanner]",
        "single": "[one]",
        "empty": "[]",
        "exp": "1700000000",
        "float": "1.5",
        "whole_float": "2",
        "email_verified": "true",
        "disabled": "false",
        "sub": "abc",
    }


def test_tokens_round_trip_and_reject(tmp_path):
    key_path = tmp_path / "sub" / "key.pem"
    key = load_or_create_key(key_path)
    assert key_path.exists()
    again = load_or_create_key(key_path)
    issuer = "http://127.0.0.1:3000/_local"
    token = make_token(key, issuer=issuer, sub="u1", email="a@b.c", groups=["admin"], ttl_seconds=60)
    claims = verify_token(token, again.public_key(), issuer=issuer)
    assert claims["sub"] == "u1"
    assert claims["cognito:groups"] == ["admin"]
    assert claims["cognito:username"] == "u1"
    assert claims["token_use"] == "id"
    assert claims["email_verified"] is True
    assert claims["aud"] == "local-client"
    assert {"auth_time", "iat", "exp", "jti", "iss"} <= set(claims)
    assert "cognito:groups" not in verify_token(make_token(key, issuer=issuer, sub="u2"), key.public_key(), issuer=issuer)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify_token(make_token(key, issuer=issuer, sub="u1", ttl_seconds=-5), key.public_key(), issuer=issuer)
    with pytest.raises(jwt.InvalidAudienceError):
        verify_token(make_token(key, issuer=issuer, sub="u1", audience="other"), key.public_key(), issuer=issuer)
    with pytest.raises(jwt.InvalidIssuerError):
        verify_token(make_token(key, issuer="https://elsewhere", sub="u1"), key.public_key(), issuer=issuer)


# ------------------------------------------------------------- responses


def test_structured_response():
    status, headers, body = build_response(
        {"statusCode": 201, "headers": {"content-type": "text/plain", "x-n": 5}, "cookies": ["a=1", "b=2; Path=/"], "body": "hi"}
    )
    assert status == 201
    assert headers == [("content-type", "text/plain"), ("x-n", "5"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2; Path=/")]
    assert body == b"hi"


def test_base64_response_is_decoded():
    blob = bytes(range(256))
    status, _, body = build_response({"statusCode": 200, "body": base64.b64encode(blob).decode(), "isBase64Encoded": True})
    assert (status, body) == (200, blob)


def test_inferred_responses_are_json():
    for value, expected in [({"a": 1}, b'{"a": 1}'), ([1, 2], b"[1, 2]"), ("hi", b'"hi"'), (None, b"null")]:
        status, headers, body = build_response(value)
        assert status == 200
        assert headers == [("Content-Type", "application/json")]
        assert body == expected


def test_malformed_response_raises():
    with pytest.raises(ValueError):
        build_response({"statusCode": "abc"})
    with pytest.raises(ValueError):
        build_response({"statusCode": 200, "headers": ["x"]})


def test_load_env_file(tmp_path):
    assert load_env_file(tmp_path / "missing.json") == {}
    path = tmp_path / "env.json"
    path.write_text('{"Parameters": {"A": "1"}, "Fn": {"B": "2"}}')
    assert load_env_file(path) == {"Parameters": {"A": "1"}, "Fn": {"B": "2"}}


# ----------------------------------------------------------- template


def test_short_form_tags_become_long_form():
    data = load_yaml(
        "a: !Ref X\nb: !Sub 'x-${Y}'\nc: !GetAtt Q.Arn\nd: !If [C, 1, 2]\ne: !Equals [!Ref S, prod]\n"
        "f: !Join [',', [!Ref X, b]]\ng: !Sub ['${A}', {A: !Ref X}]\n"
    )
    assert data == {
        "a": {"Ref": "X"},
        "b": {"Fn::Sub": "x-${Y}"},
        "c": {"Fn::GetAtt": ["Q", "Arn"]},
        "d": {"Fn::If": ["C", 1, 2]},
        "e": {"Fn::Equals": [{"Ref": "S"}, "prod"]},
        "f": {"Fn::Join": [",", [{"Ref": "X"}, "b"]]},
        "g": {"Fn::Sub": ["${A}", {"A": {"Ref": "X"}}]},
    }


def test_resolve():
    ctx = {"X": "x", "AWS::Region": "eu-west-1", "Q.Arn": "arn:q", "Conditions": {"C": True}}
    assert resolve({"Ref": "X"}, ctx) == "x"
    assert resolve({"Fn::Sub": "a-${X}-${AWS::Region}-${Q.Arn}-${!Literal}"}, ctx) == "a-x-eu-west-1-arn:q-${Literal}"
    assert resolve({"Fn::Sub": ["${A}/${X}", {"A": "b"}]}, ctx) == "b/x"
    assert resolve({"Fn::GetAtt": ["Q", "Arn"]}, ctx) == "arn:q"
    assert resolve({"Fn::GetAtt": ["Other", "Arn"]}, ctx).startswith("arn:aws:")
    assert resolve({"Fn::If": ["C", "yes", "no"]}, ctx) == "yes"
    assert resolve({"Fn::Join": ["-", ["a", {"Ref": "X"}]]}, ctx) == "a-x"
    assert resolve([{"Ref": "X"}, {"Ref": "AWS::NoValue"}], ctx) == ["x"]
    assert resolve({"k": {"Ref": "X"}, "n": [1]}, ctx) == {"k": "x", "n": [1]}
    with pytest.raises(Unresolved):
        resolve({"Ref": "Missing"}, ctx)
    with pytest.raises(Unresolved):
        resolve({"Fn::ImportValue": "x"}, ctx)


def test_resolve_environment_overrides_and_drops():
    env = resolve_environment(
        {"A": {"Ref": "X"}, "B": "literal", "C": {"Ref": "Missing"}, "D": True, "E": 5},
        {"X": "x"},
        overrides={"B": "over", "Z": "ignored"},
    )
    assert env == {"A": "x", "B": "over", "D": "true", "E": "5"}


@pytest.fixture(scope="module")
def template():
    return load_template(TEMPLATE)


def _http_api_events(data):
    for fid, res in (data.get("Resources") or {}).items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        for name, event in ((res.get("Properties") or {}).get("Events") or {}).items():
            if event.get("Type") == "HttpApi":
                yield fid, name, event.get("Properties") or {}


def test_every_http_api_event_becomes_a_route(template):
    events = list(_http_api_events(template.data))
    assert events, "template.yaml declares no HttpApi events"
    routes = {(r.function, r.event_name): r for r in template.routes}
    assert len(template.routes) == len(events)
    for fid, name, props in events:
        r = routes[(fid, name)]
        assert r.method == str(props.get("Method", "ANY")).upper()
        assert r.path == props.get("Path", "$default")
        if (props.get("Auth") or {}).get("Authorizer") == "NONE":
            assert r.authorizer is None, r.route_key
        else:
            api = template.apis[r.api_id]
            expected = (props.get("Auth") or {}).get("Authorizer", api.default_authorizer)
            assert r.authorizer == expected, r.route_key
            assert expected in api.authorizers
    keys = [r.route_key for r in template.routes]
    assert len(keys) == len(set(keys)), "duplicate route keys"


def test_real_template_routes(template):
    by_key = {r.route_key: r for r in template.routes}
    assert by_key["GET /api/events"].authorizer is None
    assert by_key["GET /api/events/"].authorizer is None
    assert by_key["POST /api/events"].authorizer == "CognitoJwt"
    assert by_key["GET /api/events/{event_id}"].function == "CatalogueFunction"
    assert key_of("GET", "/api/events/e1/", template.routes)[0] == "GET /api/events/{event_id}/"


def test_real_template_functions(template):
    for fn in template.functions.values():
        assert Path(fn.code_uri).is_absolute()
        assert fn.module and fn.function
        assert fn.timeout > 0 and fn.memory > 0
        for layer in fn.layers:
            assert layer.endswith("/python")
    catalogue = template.functions["CatalogueFunction"]
    assert catalogue.code_uri == str(ROOT / "functions" / "catalogue")
    assert (catalogue.module, catalogue.function) == ("app", "lambda_handler")
    assert catalogue.timeout == 10
    assert catalogue.memory == 512
    assert catalogue.layers == [str(ROOT / "layers" / "common" / "python")]
    ctx = build_context(template, {"Stage": "dev"})
    env = resolve_environment(catalogue.environment, ctx)
    assert env["STAGE"] == "dev"
    assert env["FRONTEND_URL"] == "http://localhost:5173"
    assert env["POWERTOOLS_SERVICE_NAME"] == "ticketing"
    assert env["TABLE_NAME"]


def test_real_template_api(template):
    api = template.api
    authorizer = api.authorizers["CognitoJwt"]
    assert authorizer.header == "authorization"
    ctx = build_context(template, {"FrontendUrl": "http://localhost:9999"}, region="eu-west-1")
    assert resolve(authorizer.issuer, ctx).startswith("https://cognito-idp.eu-west-1.amazonaws.com/")
    cors = template.cors
    # The pages' CloudFront origin has no local value: the gateway serves /app/ itself,
    # from the API's own origin, and leaves an origin it cannot resolve out.
    assert CorsPolicy(cors, ctx).origins == ["http://localhost:9999"]
    assert "POST" in cors.allow_methods
    assert cors.max_age == 600


def test_real_template_conditions(template):
    if "IsProd" not in (template.data.get("Conditions") or {}):
        pytest.skip("no IsProd condition")
    assert build_context(template, {"Stage": "prod"})["Conditions"]["IsProd"] is True
    assert build_context(template, {"Stage": "dev"})["Conditions"]["IsProd"] is False


def test_schedule_and_sqs_events_are_collected(tmp_path):
    (tmp_path / "template.yaml").write_text(
        """
Resources:
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: jobs-literal
  Other:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-other"
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: pkg/mod.handle
      Events:
        Tick:
          Type: Schedule
          Properties:
            Schedule: rate(5 minutes)
        Jobs:
          Type: SQS
          Properties:
            Queue: !GetAtt Jobs.Arn
            BatchSize: 3
            FunctionResponseTypes: [ReportBatchItemFailures]
        Other:
          Type: SQS
          Properties:
            Queue: !GetAtt Other.Arn
"""
    )
    t = load_template(tmp_path / "template.yaml")
    fn = t.functions["Worker"]
    assert (fn.module, fn.function, fn.timeout, fn.memory) == ("pkg.mod", "handle", 3, 128)
    assert [(s.function, s.expression) for s in t.schedules] == [("Worker", "rate(5 minutes)")]
    jobs, other = t.sqs_events
    assert (jobs.queue, jobs.batch_size, jobs.report_batch_item_failures) == ("Jobs", 3, True)
    assert (other.queue, other.batch_size, other.report_batch_item_failures) == ("Other", 10, False)
    assert t.queues["Jobs"].local_name == "jobs-literal"
    assert t.queues["Other"].local_name == "Other"
    ctx = build_context(t, endpoint_url="http://localhost:4566")
    assert ctx["Jobs"] == "http://localhost:4566/123456789012/jobs-literal"
    assert ctx["Jobs.Arn"] == "arn:aws:sqs:us-east-1:123456789012:jobs-literal"
    assert ctx["Other.QueueName"] == "Other"  # non-literal QueueName: the logical id
    renamed = build_context(t, physical_names={"Jobs": "renamed"})
    assert renamed["Jobs.Arn"].endswith(":renamed")
