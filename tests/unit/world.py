"""The whole product in process: every function's handler behind the template's routes,
moto's `mock_aws` for AWS and the Stripe stand-in on loopback for Stripe. Product rules
that go through several functions (buy, pay, refund, list, report) are tested here
with the same calls an integration test makes (`api.post(path, token=..., json=...)`),
without a gateway, a worker pool or an AWS server: the HTTP path itself is tested in
tests/integration.

An `api.token(...)` is an opaque string standing for the claims API Gateway's JWT
authorizer would hand on; a route with an authorizer and no token is answered 401 as
API Gateway answers it, an undeclared route 404, so a test reads as its integration
twin. Webhooks are delivered by calling the webhook function with a correctly signed
body (`World.payment_confirmed`, tests/shop.py's `deliver`): the stand-in's own deliveries are
tested in tests/integration.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

import boto3
import requests
from requests.structures import CaseInsensitiveDict

from local.gateway.events import build_event, build_response
from local.gateway.routes import match_route
from local.template import load_template
from tests.conftest import ROOT, load_function
from tests.shop import WEBHOOK_SECRET, deliver, event_for, signed

TEMPLATE = load_template(ROOT / "template.yaml")
TABLE = "ticketing-test"
STRIPE_SECRET = "ticketing/test/stripe"
QR_SECRET = "ticketing/test/qr"
QR_PUBLIC_KEYS = "/ticketing/test/qr-public-keys"
BUCKET = "ticketing-qr-test"
SENDER = "tickets@unit.example"
MAIL_CONFIGURATION_SET = "ticketing-test"
SECRET_KEY, PUBLISHABLE_KEY = "sk_test_unit", "pk_test_unit"
QUEUES = {"ReceiptQueue": "RECEIPT_QUEUE_URL", "EventCancelQueue": "CANCEL_QUEUE_URL"}
# What the integration stack sets besides the template (tests/integration/conftest.py):
# small shards so small capacities spread over several, a low hold cap to reach it, and a
# Stripe budget well above what any test asks for.
ENV = {
    "STAGE": "test", "QR_SIGNING_SECRET_NAME": QR_SECRET, "QR_PUBLIC_KEYS_PARAMETER": QR_PUBLIC_KEYS,
    "QR_BUCKET": BUCKET, "SENDER_EMAIL": SENDER, "SES_CONFIGURATION_SET": MAIL_CONFIGURATION_SET,
    "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY, "HOLD_MINUTES": "15", "REFUND_CUTOFF_HOURS": "48",
    "INVENTORY_SHARD_SIZE": "10", "MAX_HELD_PER_CUSTOMER": "12",
    "STRIPE_RATE_TOTAL": "10000", "STRIPE_RATE_PER_ENDPOINT": "10000", "STRIPE_RATE_BACKGROUND_PERCENT": "50",
}
_modules: dict[str, Any] = {}


def function_module(logical_id: str) -> Any:
    """A function's app.py, imported once per test session (a warm container)."""
    if logical_id not in _modules:
        _modules[logical_id] = load_function(TEMPLATE.functions[logical_id].code_uri.rstrip("/").rsplit("/", 1)[-1])
    return _modules[logical_id]


def reset_caches() -> None:
    """What a fresh container would not have: settings, clients and caches of the last test's world."""
    from aws_lambda_powertools.utilities import parameters

    from ticketing import config, exports, gate, mail, tickets

    config.settings.cache_clear()
    parameters.clear_caches()
    mail.reset_client()
    tickets.reset_client()
    exports.reset_client()
    gate.forget_events()


class Response:
    """The parts of `requests.Response` tests read."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status_code, self.content = status, body
        self.headers = CaseInsensitiveDict(headers)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _Context:
    function_name = "unit"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:unit"
    aws_request_id = "unit-request"
    log_group_name = log_stream_name = "unit"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


class Api:
    """The integration tests' client, answered in process: `api.post(path, token=..., json=...)`."""

    def __init__(self) -> None:
        self._claims: dict[str, dict[str, Any]] = {}

    def token(self, groups: list[str] | None = None, **claims: Any) -> str:
        sub = claims.pop("sub", f"user-{uuid.uuid4().hex[:8]}")
        email_verified = claims.pop("email_verified", True)
        made: dict[str, Any] = {"sub": sub, "email": claims.pop("email", None) or f"{sub}@example.com",
                                "email_verified": bool(email_verified),
                                "name": claims.pop("name", None) or sub.replace("-", " ").title()}
        if groups:
            made["cognito:groups"] = list(groups)
        made.update({"iss": "http://127.0.0.1/local", "cognito:username": sub, "aud": "ticketing-local",
                     "token_use": "id", "auth_time": int(time.time()), "iat": int(time.time()),
                     "exp": int(time.time()) + 3600, **claims})
        token = f"unit.{uuid.uuid4().hex}"
        self._claims[token] = made
        return token

    def request(self, method: str, path: str, token: str | None = None, *, json: Any = None, data: Any = None,
                params: dict | None = None, headers: dict | None = None) -> Response:
        parts = urlsplit(path)
        query = "&".join(q for q in (parts.query, urlencode(params or {})) if q)
        header_pairs = dict(headers or {})
        if json is not None:
            body = _json_dumps(json).encode()
            header_pairs.setdefault("Content-Type", "application/json")
        elif data is not None:
            body = data.encode() if isinstance(data, str) else bytes(data)
        else:
            body = b""
        if token:
            header_pairs["Authorization"] = f"Bearer {token}"
        matched = match_route(TEMPLATE.routes, method, parts.path)
        if matched is None:
            return Response(404, [("content-type", "application/json")], b'{"message":"Not Found"}')
        route, path_parameters = matched
        claims = None
        if route.authorizer:
            claims = self._claims.get(token or "")
            if claims is None:
                return Response(401, [("content-type", "application/json")], b'{"message":"Unauthorized"}')
        event = build_event(method=method, raw_path=parts.path, raw_query=query, headers=list(header_pairs.items()),
                            body=body, route_key=route.route_key, path_parameters=path_parameters, claims=claims)
        result = function_module(route.function).lambda_handler(event, _Context())
        return Response(*build_response(result))

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Response:
        return self.request("DELETE", path, **kwargs)


def _json_dumps(value: Any) -> str:
    return json.dumps(value)


class World:
    """The provisioned account (as local/stack.py provisions it) and what tests read of it:
    the `stack` of tests/shop.py, as the integration tests' local stack is."""

    table = TABLE
    stripe_keys = {"secret_key": SECRET_KEY, "publishable_key": PUBLISHABLE_KEY, "webhook_secret": WEBHOOK_SECRET}

    def __init__(self, stripe_url: str) -> None:
        self.stripe_url = stripe_url
        self.api = Api()

    # ------------------------------------------------------------ where it differs from the local stack
    def payment_confirmed(self, order: dict, confirmed: requests.Response) -> None:
        """Stripe's payment_intent.succeeded (or payment_failed), signed, delivered to the
        webhook there and then: no Stripe can reach an in-process world."""
        if confirmed.status_code == 200:
            kind = "payment_intent.succeeded" if confirmed.json()["status"] == "succeeded" else "payment_intent.payment_failed"
            payload = event_for(order["payment_intent_id"], kind=kind)
            delivered = deliver(self.api, payload, signed(payload))
            assert delivered.status_code == 200, delivered.text

    @staticmethod
    def eventually(check: Any) -> Any:
        """Everything a call sets off has happened by the time it answers: `check()`, once."""
        return check()

    @staticmethod
    def provision(monkeypatch) -> dict[str, str]:
        from local.stack import _new_qr_keys
        from ticketing import qr

        for name, value in ENV.items():
            monkeypatch.setenv(name, value)
        s3, sqs = boto3.client("s3"), boto3.client("sqs")
        s3.create_bucket(Bucket=BUCKET)
        urls = {}
        for logical_id, variable in QUEUES.items():
            urls[logical_id] = sqs.create_queue(QueueName=logical_id)["QueueUrl"]
            monkeypatch.setenv(variable, urls[logical_id])
        boto3.client("ses").verify_email_identity(EmailAddress=SENDER)
        boto3.client("sesv2").create_configuration_set(ConfigurationSetName=MAIL_CONFIGURATION_SET)
        keys = _new_qr_keys()
        boto3.client("secretsmanager").create_secret(Name=QR_SECRET, SecretString=json.dumps(keys))
        boto3.client("ssm").put_parameter(Name=QR_PUBLIC_KEYS, Value=json.dumps(qr.public_document(keys)), Type="String")
        reset_caches()
        return urls

    # ------------------------------------------------------------ reading
    @staticmethod
    def client(service: str):
        return boto3.client(service)

    @staticmethod
    def shards(type_id: str) -> list[dict[str, int]]:
        keys = [{"PK": {"S": f"INV#{type_id}#{n}"}, "SK": {"S": "INV"}} for n in range(100)]
        items = boto3.client("dynamodb").batch_get_item(RequestItems={TABLE: {"Keys": keys, "ConsistentRead": True}})
        fields = ("shard", "remaining", "held", "sold", "capacity")
        return sorted(({k: int(item[k]["N"]) for k in fields} for item in items["Responses"][TABLE]), key=lambda s: s["shard"])

    @staticmethod
    def mail() -> list[dict[str, str]]:
        """Every email SES accepted, as the AWS stand-in's `/_local/mail` lists them."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        return [{"raw": m.raw_data} for m in ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages if getattr(m, "raw_data", None)]
