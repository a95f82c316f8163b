"""The local API Gateway end to end: a fixture template with tiny handlers, real HTTP, real worker processes.

SQS events are polled from a moto server started here; nothing touches AWS.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from local.gateway import Gateway, make_token
from tests.integration.support import alive, descendants

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "http://localhost:5173"
MAX_BODY = 64 * 1024
INTEGRATION_TIMEOUT = 3  # API Gateway's is 30 s; shorter here so the test is quick

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: test
  FrontendUrl:
    Type: String
    Default: http://example.invalid
Globals:
  Function:
    Runtime: python3.12
    Timeout: 3
    MemorySize: 256
    Layers:
      - !Ref SharedLayer
    Environment:
      Variables:
        STAGE: !Ref Stage
        TABLE_NAME: !Ref Table
        QUEUE_ARN: !GetAtt JobsQueue.Arn
        GREETING: from-template
        FN_ONLY: global
        UNRESOLVABLE: !ImportValue SomethingElse
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration:
              issuer: !Sub https://cognito-idp.${AWS::Region}.amazonaws.com/${UserPool}
              audience:
                - !Ref UserPoolClient
      CorsConfiguration:
        AllowOrigins:
          - !Ref FrontendUrl
        AllowMethods: [GET, POST]
        AllowHeaders: [authorization, content-type]
        ExposeHeaders: [retry-after]
        MaxAge: 600
  UserPool:
    Type: AWS::Cognito::UserPool
  UserPoolClient:
    Type: AWS::Cognito::UserPoolClient
    Properties:
      UserPoolId: !Ref UserPool
  Table:
    Type: AWS::DynamoDB::Table
  JobsQueue:
    Type: AWS::SQS::Queue
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer/
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.echo
      Environment:
        Variables:
          FN_ONLY: function
          FROM_ENV_FILE: template-value
      Events:
        Public:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /public, Auth: {Authorizer: NONE}}
        PublicSlash:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /public/, Auth: {Authorizer: NONE}}
        Private:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /private}
        Echo:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: POST, Path: /echo, Auth: {Authorizer: NONE}}
        Item:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: "/items/{id}", Auth: {Authorizer: NONE}}
        ItemSpecial:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /items/special, Auth: {Authorizer: NONE}}
        Files:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: ANY, Path: "/files/{proxy+}", Auth: {Authorizer: NONE}}
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.slow
      Timeout: 1
      Events:
        Slow:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /slow, Auth: {Authorizer: NONE}}
  PatientFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.slow
      Timeout: 20
      Events:
        Patient:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /patient, Auth: {Authorizer: NONE}}
  BigFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.big
      Events:
        Big:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /big, Auth: {Authorizer: NONE}}
  BoomFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.boom
      Events:
        Boom:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /boom, Auth: {Authorizer: NONE}}
  DieFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.die
      Events:
        Die:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /die, Auth: {Authorizer: NONE}}
  CountFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.count
      Events:
        Count:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /count, Auth: {Authorizer: NONE}}
  BrokenFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: broken/
      Handler: bad.handler
      Events:
        Broken:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /broken, Auth: {Authorizer: NONE}}
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.tick
      Environment:
        Variables:
          TICK_DIR: set-by-env-file
      Events:
        Every:
          Type: Schedule
          Properties:
            Schedule: rate(1 minute)
  ConsumeFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.consume
      Environment:
        Variables:
          OUT_DIR: set-by-env-file
      Events:
        Jobs:
          Type: SQS
          Properties:
            Queue: !GetAtt JobsQueue.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
"""

APP = '''\
import json
import os
import time
import uuid

import shared

COUNT = 0
ENV_NAMES = [
    "STAGE", "TABLE_NAME", "QUEUE_ARN", "GREETING", "FN_ONLY", "FROM_ENV_FILE", "UNRESOLVABLE",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION", "AWS_ENDPOINT_URL",
    "EXTRA_LOCAL",
]


def echo(event, context):
    mode = (event.get("queryStringParameters") or {}).get("mode")
    if mode == "raw":
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/octet-stream"},
            "body": event.get("body", ""),
            "isBase64Encoded": event["isBase64Encoded"],
        }
    if mode == "cookies":
        return {
            "statusCode": 201,
            "headers": {"x-custom": "yes", "access-control-allow-origin": "http://evil.example"},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": "made",
        }
    if mode == "list":
        return [1, "two", None]
    if mode == "string":
        return "hello"
    return {
        "event": event,
        "pid": os.getpid(),
        "layer": shared.VALUE,
        "env": {name: os.environ.get(name) for name in ENV_NAMES},
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining": context.get_remaining_time_in_millis(),
        },
    }


def slow(event, context):
    time.sleep(float((event.get("queryStringParameters") or {}).get("s", "0")))
    return {"pid": os.getpid()}


def big(event, context):
    size = int(event["queryStringParameters"]["bytes"])
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "x" * size}


def boom(event, context):
    raise RuntimeError("boom")


def die(event, context):
    os._exit(3)


def count(event, context):
    global COUNT
    COUNT += 1
    return {"pid": os.getpid(), "count": COUNT}


def tick(event, context):
    path = os.path.join(os.environ["TICK_DIR"], uuid.uuid4().hex + ".json")
    with open(path, "w") as fh:
        json.dump(event, fh)


def consume(event, context):
    failures = []
    for record in event["Records"]:
        with open(os.path.join(os.environ["OUT_DIR"], record["messageId"] + ".json"), "w") as fh:
            json.dump(record, fh)
        if record["body"] == "fail":
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
'''


def _write_fixture(root: Path) -> Path:
    (root / "fn").mkdir()
    (root / "fn" / "app.py").write_text(APP)
    (root / "layer" / "python").mkdir(parents=True)
    (root / "layer" / "python" / "shared.py").write_text('VALUE = "from-layer"\n')
    (root / "broken").mkdir()
    (root / "broken" / "bad.py").write_text('raise ImportError("this module is broken on purpose")\n')
    (root / "template.yaml").write_text(TEMPLATE)
    return root / "template.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, moto_endpoint):
    root = tmp_path_factory.mktemp("gateway")
    template = _write_fixture(root)
    ticks = root / "ticks"
    out = root / "consumed"
    ticks.mkdir()
    out.mkdir()
    queue_name = f"jobs-{uuid.uuid4().hex[:8]}"
    environ = dict(
        os.environ,
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
    )
    environ.pop("AWS_PROFILE", None)
    sqs = boto3.client(
        "sqs",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    queue_url = sqs.create_queue(QueueName=queue_name, Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
    env_file = root / "env.json"
    env_file.write_text(
        json.dumps(
            {
                "Parameters": {"GREETING": "from-parameters", "EXTRA_LOCAL": "undeclared"},
                "EchoFunction": {"FROM_ENV_FILE": "from-env-file"},
                "TickFunction": {"TICK_DIR": str(ticks)},
                "ConsumeFunction": {"OUT_DIR": str(out)},
                "Queues": {"JobsQueue": queue_name},
            }
        )
    )
    key_file = root / "keys" / "jwt.pem"
    gw = Gateway(
        template,
        "127.0.0.1",
        0,
        env_file=env_file,
        parameters={"FrontendUrl": ORIGIN},
        concurrency=4,
        key_file=key_file,
        schedule_seconds=1,
        max_body_bytes=MAX_BODY,
        integration_timeout=INTEGRATION_TIMEOUT,
        environ=environ,
        access_log=False,
    )
    gw.start()
    try:
        yield {
            "gw": gw,
            "url": gw.url,
            "root": root,
            "template": template,
            "ticks": ticks,
            "out": out,
            "sqs": sqs,
            "queue_url": queue_url,
            "queue_name": queue_name,
            "key_file": key_file,
            "moto": moto_endpoint,
        }
    finally:
        gw.stop()


def _token(stack, **body) -> str:
    response = requests.post(f"{stack['url']}/_local/token", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["token"]


# ------------------------------------------------------------------ routing


def test_no_route_is_404_with_api_gateway_body(stack):
    for method, path in [("GET", "/nope"), ("POST", "/public"), ("GET", "/items/"), ("GET", "/files/")]:
        response = requests.request(method, stack["url"] + path, timeout=10)
        assert response.status_code == 404, (method, path)
        assert response.text == '{"message":"Not Found"}'
        assert response.headers["content-type"] == "application/json"


def test_public_route_event_shape(stack):
    conn = http.client.HTTPConnection("127.0.0.1", stack["gw"].port, timeout=10)
    conn.putrequest("GET", "/public?a=1&a=2&b=x%20y&empty=")
    conn.putheader("X-Multi", "one")
    conn.putheader("X-Multi", "two")
    conn.putheader("User-Agent", "pytest-agent")
    conn.putheader("Cookie", "session=abc; theme=dark")
    conn.endheaders()
    response = conn.getresponse()
    payload = json.loads(response.read())
    conn.close()
    assert response.status == 200
    event = payload["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /public"
    assert event["rawPath"] == "/public"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y&empty="
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y", "empty": ""}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    headers = event["headers"]
    assert "cookie" not in headers
    assert headers["x-multi"] == "one,two"
    assert headers["user-agent"] == "pytest-agent"
    assert all(name == name.lower() for name in headers)
    assert headers["x-forwarded-proto"] == "http"
    assert "pathParameters" not in event
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert "authorizer" not in ctx
    assert ctx["accountId"] == "123456789012"
    assert ctx["apiId"] == "local"
    assert ctx["domainName"] == f"127.0.0.1:{stack['gw'].port}"
    assert ctx["http"] == {
        "method": "GET",
        "path": "/public",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "pytest-agent",
    }
    assert re.fullmatch(r"[0-9a-f-]{36}", ctx["requestId"])
    assert ctx["routeKey"] == "GET /public"
    assert ctx["stage"] == "$default"
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", ctx["time"])
    assert abs(ctx["timeEpoch"] - time.time() * 1000) < 60_000


def test_request_ids_are_unique(stack):
    ids = {requests.get(stack["url"] + "/public", timeout=10).json()["event"]["requestContext"]["requestId"] for _ in range(3)}
    assert len(ids) == 3


def test_both_slash_forms_are_distinct_routes(stack):
    plain = requests.get(stack["url"] + "/public", timeout=10).json()["event"]
    slash = requests.get(stack["url"] + "/public/", timeout=10).json()["event"]
    assert plain["routeKey"] == "GET /public"
    assert slash["routeKey"] == "GET /public/"
    assert slash["rawPath"] == "/public/"
    token = _token(stack, sub="u1")
    response = requests.get(stack["url"] + "/private/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 404  # only /private is declared


def test_path_parameters_and_specificity(stack):
    item = requests.get(stack["url"] + "/items/abc%20d", timeout=10).json()["event"]
    assert item["routeKey"] == "GET /items/{id}"
    assert item["pathParameters"] == {"id": "abc d"}
    assert item["rawPath"] == "/items/abc%20d"
    special = requests.get(stack["url"] + "/items/special", timeout=10).json()["event"]
    assert special["routeKey"] == "GET /items/special"
    assert "pathParameters" not in special
    files = requests.delete(stack["url"] + "/files/a/b/c.txt", timeout=10).json()["event"]
    assert files["routeKey"] == "ANY /files/{proxy+}"
    assert files["pathParameters"] == {"proxy": "a/b/c.txt"}
    assert files["requestContext"]["http"]["method"] == "DELETE"


# -------------------------------------------------------------------- auth


def test_missing_token_is_401(stack):
    response = requests.get(stack["url"] + "/private", timeout=10)
    assert response.status_code == 401
    assert response.text == '{"message":"Unauthorized"}'
    assert response.headers["content-type"] == "application/json"
    response = requests.get(stack["url"] + "/private", headers={"Authorization": "Bearer not-a-jwt"}, timeout=10)
    assert response.status_code == 401


def test_expired_token_is_401(stack):
    token = _token(stack, sub="u1", ttl_seconds=-30)
    response = requests.get(stack["url"] + "/private", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 401
    assert response.text == '{"message":"Unauthorized"}'


def test_forged_token_is_401(stack):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = make_token(other_key, issuer=stack["gw"].issuer, sub="mallory", groups=["admin"])
    response = requests.get(stack["url"] + "/private", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 401


def test_wrong_audience_or_issuer_is_401(stack):
    gw = stack["gw"]
    for extra in ({"aud": "someone-else"}, {"iss": "https://cognito-idp.us-east-1.amazonaws.com/pool"}):
        token = gw.issue_token("u1", extra_claims=extra)
        response = requests.get(stack["url"] + "/private", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 401, extra


def test_token_endpoint_requires_sub(stack):
    response = requests.post(f"{stack['url']}/_local/token", json={"email": "a@example.com"}, timeout=10)
    assert response.status_code == 400
    assert response.json() == {"message": "sub is required"}


def test_valid_token_claims_arrive_flattened(stack):
    token = _token(stack, sub="user-1", email="ada@example.com", name="Ada", groups=["admin", "scanner"])
    response = requests.get(stack["url"] + "/private", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    event = response.json()["event"]
    assert event["routeKey"] == "GET /private"
    jwt_ctx = event["requestContext"]["authorizer"]["jwt"]
    assert jwt_ctx["scopes"] is None
    claims = jwt_ctx["claims"]
    assert all(isinstance(v, str) for v in claims.values())
    assert claims["sub"] == "user-1"
    assert claims["email"] == "ada@example.com"
    assert claims["name"] == "Ada"
    assert claims["cognito:groups"] == "[admin scanner]"
    assert claims["cognito:username"] == "user-1"
    assert claims["email_verified"] == "true"
    assert claims["token_use"] == "id"
    assert claims["iss"] == stack["gw"].issuer
    assert claims["aud"] == "local-client"
    for name in ("exp", "iat", "auth_time"):
        assert claims[name].isdigit()
    assert int(claims["exp"]) - int(claims["iat"]) == 3600
    # the raw token (no "Bearer ") is accepted too
    raw = requests.get(stack["url"] + "/private", headers={"Authorization": token}, timeout=10)
    assert raw.status_code == 200


def test_token_without_groups_has_no_groups_claim(stack):
    token = _token(stack, sub="user-2")
    claims = requests.get(stack["url"] + "/private", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()[
        "event"
    ]["requestContext"]["authorizer"]["jwt"]["claims"]
    assert "cognito:groups" not in claims


def test_key_file_is_created_private(stack):
    key_file = stack["key_file"]
    assert key_file.exists()
    assert key_file.stat().st_mode & 0o077 == 0


# ------------------------------------------------------------ bodies, CORS


def test_body_over_limit_is_413(stack):
    response = requests.post(
        stack["url"] + "/echo", data=b"x" * (MAX_BODY + 1), headers={"content-type": "text/plain"}, timeout=10
    )
    assert response.status_code == 413
    assert response.text == '{"message":"Request Entity Too Large"}'
    ok = requests.post(stack["url"] + "/echo", data=b"x" * MAX_BODY, headers={"content-type": "text/plain"}, timeout=10)
    assert ok.status_code == 200
    assert ok.json()["event"]["body"] == "x" * MAX_BODY


def test_text_and_binary_bodies(stack):
    doc = {"name": "Ada", "n": 1}
    event = requests.post(stack["url"] + "/echo", json=doc, timeout=10).json()["event"]
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == doc
    blob = bytes(range(256))
    event = requests.post(
        stack["url"] + "/echo", data=blob, headers={"content-type": "application/octet-stream"}, timeout=10
    ).json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == blob


def test_binary_round_trip(stack):
    blob = bytes(range(256)) * 4
    response = requests.post(
        stack["url"] + "/echo?mode=raw", data=blob, headers={"content-type": "application/octet-stream"}, timeout=10
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == blob


def test_response_shapes(stack):
    response = requests.post(stack["url"] + "/echo?mode=cookies", timeout=10)
    assert response.status_code == 201
    assert response.text == "made"
    assert response.headers["x-custom"] == "yes"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2"]
    listed = requests.post(stack["url"] + "/echo?mode=list", timeout=10)
    assert listed.status_code == 200
    assert listed.headers["content-type"] == "application/json"
    assert listed.json() == [1, "two", None]
    text = requests.post(stack["url"] + "/echo?mode=string", timeout=10)
    assert text.status_code == 200
    assert text.json() == "hello"


def test_cors_preflight(stack):
    allowed = requests.options(
        stack["url"] + "/anything/at/all",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
        timeout=10,
    )
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert allowed.headers["access-control-allow-methods"] == "GET,POST"
    assert allowed.headers["access-control-allow-headers"] == "authorization,content-type"
    assert allowed.headers["access-control-max-age"] == "600"
    denied = requests.options(
        stack["url"] + "/public",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    assert denied.status_code == 204
    assert not any(h.lower().startswith("access-control-") for h in denied.headers)


def test_cors_headers_on_responses(stack):
    response = requests.get(stack["url"] + "/public", headers={"Origin": ORIGIN}, timeout=10)
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-expose-headers"] == "retry-after"
    unauthorized = requests.get(stack["url"] + "/private", headers={"Origin": ORIGIN}, timeout=10)
    assert unauthorized.headers["access-control-allow-origin"] == ORIGIN
    other = requests.get(stack["url"] + "/public", headers={"Origin": "http://evil.example"}, timeout=10)
    assert "access-control-allow-origin" not in other.headers
    # the backend's own CORS headers are replaced by the API's configuration
    backend = requests.post(stack["url"] + "/echo?mode=cookies", headers={"Origin": ORIGIN}, timeout=10)
    assert backend.headers["access-control-allow-origin"] == ORIGIN
    no_origin = requests.post(stack["url"] + "/echo?mode=cookies", timeout=10)
    assert "access-control-allow-origin" not in no_origin.headers


# --------------------------------------------------------- workers, errors


def _gone(pid):
    return _wait_for(lambda: not alive(pid), 5)


def test_handler_exception_is_500_and_the_worker_serves_on(stack):
    gw = stack["gw"]
    for _ in range(2):
        response = requests.get(stack["url"] + "/boom", timeout=10)
        assert response.status_code == 500
        assert response.text == '{"message":"Internal Server Error"}'
    assert len(gw.pools["BoomFunction"].pids()) == 1  # an error is an answer: the worker stays
    assert requests.get(stack["url"] + "/public", timeout=10).status_code == 200


def test_worker_crash_is_502_and_only_that_worker_goes(stack):
    gw = stack["gw"]
    for _ in range(3):  # each crash ends its worker; the next request gets a new one
        response = requests.get(stack["url"] + "/die", timeout=10)
        assert response.status_code == 502
        assert response.text == '{"message":"Internal Server Error"}'
    assert gw.pools["DieFunction"].pids() == set()
    assert requests.get(stack["url"] + "/public", timeout=10).status_code == 200


def test_function_timeout_is_503_and_its_worker_is_killed(stack):
    gw = stack["gw"]
    assert requests.get(stack["url"] + "/slow?s=0", timeout=10).status_code == 200
    before = gw.pools["SlowFunction"].pids()
    response = requests.get(stack["url"] + "/slow?s=5", timeout=10)  # Timeout: 1
    assert response.status_code == 503
    assert response.text == '{"message":"Service Unavailable"}'
    after = gw.pools["SlowFunction"].pids()
    killed = before - after
    assert len(killed) == 1  # exactly the timed-out worker
    assert all(_gone(pid) for pid in killed)
    ok = requests.get(stack["url"] + "/slow?s=0", timeout=10)
    assert ok.status_code == 200 and ok.json()["pid"] not in killed


def test_no_answer_within_the_integration_timeout_is_503_and_the_function_runs_on(stack):
    pool = stack["gw"].pools["PatientFunction"]
    before = pool.pids()
    response = requests.get(stack["url"] + f"/patient?s={INTEGRATION_TIMEOUT + 1.5}", timeout=20)
    assert response.status_code == 503  # API Gateway gives up at its limit ...
    assert response.text == '{"message":"Service Unavailable"}'
    # ... while Lambda lets the function finish (its own timeout is 20 s): its worker comes
    # back idle, and none was killed
    assert _wait_for(lambda: pool.pids() and len(pool.idle) == len(pool.pids()), 10)
    assert before <= pool.pids() and len(pool.pids()) <= len(before) + 1


def test_waiting_for_a_busy_function_does_not_count_against_the_integration_timeout(stack):
    """Lambda would start an execution environment for each of 12 requests at once; here 4
    take them in turns, so the last 4 wait about two turns (longer than the integration
    timeout) for a worker. The timeout counts from when a worker has the request, as API
    Gateway counts from when Lambda runs it: all 12 are answered."""
    turn = INTEGRATION_TIMEOUT * 0.7  # under the timeout each; two turns of waiting are over it
    barrier = threading.Barrier(12)

    def call(_):
        barrier.wait(timeout=30)
        return requests.get(stack["url"] + f"/patient?s={turn}", timeout=60).status_code

    with ThreadPoolExecutor(max_workers=12) as clients:
        answers = list(clients.map(call, range(12)))
    assert answers == [200] * 12


def test_an_answer_over_lambdas_6_mb_fails_as_in_aws(stack):
    limit = 6 * 1024 * 1024 + 100  # Lambda's 6,291,556 bytes of response payload
    near = requests.get(stack["url"] + f"/big?bytes={limit - 200}", timeout=30)
    assert near.status_code == 200 and len(near.content) == limit - 200
    over = requests.get(stack["url"] + f"/big?bytes={limit}", timeout=30)
    assert over.status_code == 500 and over.text == '{"message":"Internal Server Error"}'


def test_256_clients_at_once_are_all_answered(stack):
    barrier = threading.Barrier(256)

    def call(_):
        barrier.wait(timeout=30)
        try:
            return requests.get(stack["url"] + "/items/rush", timeout=30).status_code
        except requests.RequestException as exc:  # a reset connection: what the backlog of 5 gave
            return repr(exc)

    with ThreadPoolExecutor(max_workers=256) as pool:
        answers = list(pool.map(call, range(256)))
    assert answers == [200] * 256, [a for a in answers if a != 200][:5]


def test_workers_grow_on_demand_up_to_the_stated_concurrency(stack):
    gw = stack["gw"]
    pool = gw.pools["PatientFunction"]
    event = {"queryStringParameters": {"s": "1"}}  # invoked directly: the pool is the point, not HTTP
    with ThreadPoolExecutor(max_workers=8) as clients:
        results = list(clients.map(lambda _: gw.invoke("PatientFunction", event), range(8)))
    assert [r.status for r in results] == ["ok"] * 8
    assert len({r.value["pid"] for r in results}) == gw.concurrency == 4  # 8 invocations, 4 workers, no more
    assert len(pool.pids()) == 4


def test_module_that_fails_to_import_is_502(stack):
    for _ in range(2):
        response = requests.get(stack["url"] + "/broken", timeout=20)
        assert response.status_code == 502
        assert response.text == '{"message":"Internal Server Error"}'
    assert requests.get(stack["url"] + "/public", timeout=10).status_code == 200


def test_concurrent_requests_use_distinct_workers(stack):
    barrier = threading.Barrier(2)
    pids = []
    errors = []

    def call():
        try:
            barrier.wait(timeout=5)
            response = requests.get(stack["url"] + "/slow?s=0.6", timeout=10)
            assert response.status_code == 200
            pids.append(response.json()["pid"])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not errors
    assert len(set(pids)) == 2


def test_module_state_is_per_worker_process(stack):
    seen: dict[int, list[int]] = {}
    for _ in range(6):
        body = requests.get(stack["url"] + "/count", timeout=10).json()
        seen.setdefault(body["pid"], []).append(body["count"])
    assert sum(len(v) for v in seen.values()) == 6
    for counts in seen.values():
        assert counts == list(range(1, len(counts) + 1))


def test_function_environment_and_context(stack):
    body = requests.get(stack["url"] + "/public", timeout=10).json()
    env = body["env"]
    assert env["STAGE"] == "test"
    assert env["TABLE_NAME"] == "Table"
    assert env["QUEUE_ARN"] == f"arn:aws:sqs:us-east-1:123456789012:{stack['queue_name']}"
    assert env["GREETING"] == "from-parameters"  # env-file Parameters beat the template
    assert env["FN_ONLY"] == "function"  # function Variables beat Globals
    assert env["FROM_ENV_FILE"] == "from-env-file"  # function section of the env-file
    assert env["UNRESOLVABLE"] is None  # unresolvable intrinsic dropped
    assert env["EXTRA_LOCAL"] == "undeclared"  # env-file names the template lacks are passed on too
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "EchoFunction"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_ENDPOINT_URL"] == stack["moto"]  # the gateway's environment is inherited
    assert body["layer"] == "from-layer"
    ctx = body["context"]
    assert ctx["function_name"] == "EchoFunction"
    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:EchoFunction"
    assert ctx["memory_limit_in_mb"] == "256"
    assert ctx["log_group_name"] == "/aws/lambda/EchoFunction"
    assert ctx["aws_request_id"]
    assert 0 < ctx["remaining"] <= 3000


# -------------------------------------------------------- background events


def test_schedule_event_invokes_function(stack):
    ticks = _wait_for(lambda: sorted(stack["ticks"].glob("*.json")), 8)
    assert ticks, "scheduled function was not invoked"
    event = json.loads(ticks[0].read_text())
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["account"] == "123456789012"
    assert event["resources"][0].startswith("arn:aws:events:us-east-1:123456789012:rule/")
    assert event["detail"] == {}


def test_sqs_event_source(stack):
    sqs, queue_url = stack["sqs"], stack["queue_url"]
    sent = {}
    for body in ("one", "two", "fail"):
        message = sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=body,
            MessageAttributes={"kind": {"DataType": "String", "StringValue": f"k-{body}"}},
        )
        sent[message["MessageId"]] = body
    out = stack["out"]
    assert _wait_for(lambda: all((out / f"{mid}.json").exists() for mid in sent), 15), "messages not delivered"
    for mid, body in sent.items():
        record = json.loads((out / f"{mid}.json").read_text())
        assert record["body"] == body
        assert record["messageId"] == mid
        assert record["receiptHandle"]
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == f"arn:aws:sqs:us-east-1:123456789012:{stack['queue_name']}"
        assert record["awsRegion"] == "us-east-1"
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        assert record["messageAttributes"]["kind"]["stringValue"] == f"k-{body}"
        assert record["messageAttributes"]["kind"]["dataType"] == "String"

    def remaining():
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    # the two successes are deleted; the reported failure stays, and comes back after its visibility timeout
    failed = next(mid for mid, body in sent.items() if body == "fail")

    def redelivered():
        try:
            return json.loads((out / f"{failed}.json").read_text())["attributes"]["ApproximateReceiveCount"] != "1"
        except ValueError:  # being written
            return False

    assert _wait_for(redelivered, 15), "the reported failure was not delivered again"
    assert remaining() == 1


# ---------------------------------------------------------------- process


def test_port_in_use_exits_2_with_one_line(stack):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "local.gateway", "--template", str(stack["template"]), "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"gateway: port {port} on 127.0.0.1 is already in use (set API_PORT to use another)"
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_serves_and_stops_on_sigterm(stack, tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "local.gateway", "--template", str(stack["template"]),
            "--port", str(port), "--concurrency", "1", "--no-background", "--quiet",
            "--parameter", f"FrontendUrl={ORIGIN}", "--key-file", str(tmp_path / "key.pem"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"gateway listening on http://127.0.0.1:{port}"
        response = requests.get(f"http://127.0.0.1:{port}/items/x", headers={"Origin": ORIGIN}, timeout=10)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        worker_pids = descendants(proc.pid)
        assert len(worker_pids) >= 2  # each function's parent, and the worker that answered
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        for pid in worker_pids:
            assert _wait_for(lambda: not alive(pid), 5), f"worker {pid} left running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_stop_kills_every_worker(stack):
    gw = Gateway(stack["template"], "127.0.0.1", 0, concurrency=1, background=False, access_log=False)
    gw.start()
    try:
        assert requests.get(gw.url + "/public", timeout=10).status_code == 200
        pids = {pid for pool in gw.pools.values() for pid in pool.processes()}
        assert len(pids) == len(gw.pools) + 1  # a parent per function, and EchoFunction's worker
    finally:
        gw.stop()
    assert all(_gone(pid) for pid in pids)
    with pytest.raises(requests.ConnectionError):
        requests.get(gw.url + "/public", timeout=2)
