"""Unit tests: domain rules against moto in process (`mock_aws`), no servers."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import uuid
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.aws import like_the_stand_in
from local.gateway import match_route
from local.stack import stripe_standin as local_stripe_standin
from local.template import load_template
from tests.conftest import ROOT, load_function
from tests.shop import WEBHOOK_SECRET

TEMPLATE = load_template(ROOT / "template.yaml")


@pytest.fixture
def aws():
    """In-process AWS with the table built from template.yaml's own key schema, moto with
    the local stand-in's fixes (its answers unchanged, its cost per request no longer
    growing with the table)."""
    with mock_aws(), like_the_stand_in():
        boto3.client("dynamodb").create_table(TableName="ticketing-test", **TEMPLATE.table_definition())
        boto3.client("secretsmanager").create_secret(
            Name="ticketing/test/stripe",
            SecretString=json.dumps({"secret_key": "sk_test_unit", "webhook_secret": WEBHOOK_SECRET}),
        )
        boto3.client("secretsmanager").create_secret(
            Name="ticketing/test/admission", SecretString=json.dumps({"key": "unit-admission-key-" + "k" * 40}),
        )
        yield


@pytest.fixture(scope="session")
def catalogue_fn():
    return load_function("catalogue")


class Invoker:
    """Calls a function's handler with an HTTP API v2 event, as API Gateway would.

    Lambda runs one event at a time in an execution environment, and Powertools' resolver
    keeps the event being handled on the app: a thread other than the one that made the
    Invoker gets a copy of the function's module of its own, as a second execution
    environment would (12 threads sharing one app crossed their middleware stacks and
    answered 500)."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self._owner = threading.get_ident()
        self._environments = threading.local()

    def _environment(self) -> Any:
        if threading.get_ident() == self._owner:
            return self.module
        module = getattr(self._environments, "module", None)
        if module is None:
            name = f"{self.module.__name__}_environment_{threading.get_ident()}"
            spec = importlib.util.spec_from_file_location(name, self.module.__file__)
            module = self._environments.module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return module

    def __call__(self, method: str, path: str, body: Any = None, *, claims: dict | None = None,
                 query: dict | None = None, raw_body: str | None = None, headers: dict | None = None,
                 route_key: str | None = None) -> tuple[int, Any, dict]:
        from urllib.parse import urlencode

        if route_key is None:
            matched = match_route(TEMPLATE.routes, method, path)
            route_key = matched[0].route_key if matched else "$default"
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": path,
            "rawQueryString": urlencode(query or {}),
            "headers": {"content-type": "application/json", **(headers or {})},
            "requestContext": {
                "accountId": "123456789012", "apiId": "unit", "domainName": "unit.test",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "pytest"},
                "requestId": str(uuid.uuid4()), "routeKey": route_key, "stage": "$default",
                "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0,
            },
            "isBase64Encoded": False,
        }
        if query:
            event["queryStringParameters"] = {k: str(v) for k, v in query.items()}
        if claims is not None:
            event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
        if raw_body is not None:
            event["body"] = raw_body
        elif body is not None:
            event["body"] = json.dumps(body)
        response = self._environment().lambda_handler(event, _Context())
        text = response.get("body") or ""
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = text
        return response["statusCode"], payload, response.get("headers") or {}


class _Context:
    function_name = "unit"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:unit"
    aws_request_id = "unit-request"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


ADMIN = {"sub": "admin-1", "email": "admin@example.com", "name": "Admin", "cognito:groups": "[admin]", "email_verified": "true"}
CUSTOMER = {"sub": "cust-1", "email": "c@example.com", "name": "Customer", "email_verified": "true"}


# ------------------------------------------------ the domain in process, without the world's routes
SENDER = "tickets@unit.example"
QR_SIGNING_SECRET = "ticketing/test/qr"


def provision_fulfilment(monkeypatch, public_keys: str | None = None) -> None:
    """What fulfilling an order needs besides the table, for tests that call the domain or
    single handlers: a QR signing key (and, with `public_keys`, its public keys document in
    that parameter, for the gate) and a verified sender; settings and the mail client afresh."""
    from local.stack import _new_qr_keys
    from ticketing import config, mail, qr

    monkeypatch.setenv("QR_SIGNING_SECRET_NAME", QR_SIGNING_SECRET)
    if public_keys:
        monkeypatch.setenv("QR_PUBLIC_KEYS_PARAMETER", public_keys)
    monkeypatch.setenv("SENDER_EMAIL", SENDER)
    config.settings.cache_clear()
    mail.reset_client()
    keys = _new_qr_keys()
    boto3.client("secretsmanager").create_secret(Name=QR_SIGNING_SECRET, SecretString=json.dumps(keys))
    if public_keys:
        boto3.client("ssm").put_parameter(Name=public_keys, Value=json.dumps(qr.public_document(keys)), Type="String")
    boto3.client("ses").verify_email_identity(EmailAddress=SENDER)


def catalogue_event(catalogue, name: str) -> dict:
    """An event on 1 January 2030, 18:00 to 22:00, made by the organiser through the catalogue function."""
    _, event, _ = catalogue(
        "POST", "/api/events/",
        {"name": name, "venue": "Hall", "currency": "usd", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T22:00:00Z"},
        claims=ADMIN,
    )
    return event


def stripe_in_process():
    """The Stripe stand-in (`stripe_standin`) with the unit secret's key."""
    import stripe

    return stripe.StripeClient("sk_test_unit", base_addresses={"api": os.environ["STRIPE_API_BASE"]})


def confirm_at_stripe(intent_id: str):
    """A PaymentIntent confirmed with Stripe's test Visa, as if its customer had paid."""
    return stripe_in_process().v1.payment_intents.confirm(intent_id, params={"payment_method": "pm_card_visa"})


@pytest.fixture
def catalogue(aws, catalogue_fn):
    return Invoker(catalogue_fn)


@pytest.fixture(scope="session")
def stripe_standin():
    with local_stripe_standin() as url:
        os.environ["STRIPE_API_BASE"] = url
        try:
            yield
        finally:
            os.environ.pop("STRIPE_API_BASE", None)




# ------------------------------------------------ the whole product in process (tests/unit/world.py)
@pytest.fixture
def stack(aws, stripe_standin, monkeypatch):
    """Every function behind the template's routes, in process, over moto and the Stripe
    stand-in: the integration tests' `stack`, without servers (see tests/unit/world.py)."""
    from ticketing import clock
    from tests.unit.world import World, reset_caches

    World.provision(monkeypatch)
    world = World(os.environ["STRIPE_API_BASE"])
    yield world
    clock.freeze(None)
    reset_caches()


@pytest.fixture
def api(stack):
    return stack.api


@pytest.fixture
def stripe_faults(stack):
    """`stripe_faults(500)`: the Stripe stand-in fails the next 5 POSTs to /v1/payment_intents
    with 500 (or 429, "drop", "slow" with `delay=`); cleared when the test ends."""
    import requests

    url = f"{stack.stripe_url}/_config/faults"

    def inject(status, count=5, path="/v1/payment_intents", method="POST", delay=0):
        body = {"status": status, "count": count, "path": path, "method": method, "delay": delay}
        requests.post(url, json=body, timeout=5).raise_for_status()

    inject.clear = lambda: requests.delete(url, timeout=5).raise_for_status()
    yield inject
    inject.clear()
