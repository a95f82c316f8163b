"""Reconciliation against the local stack: drift made by losing webhooks is reported,
and repaired with --repair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import requests

from local import stack as stack_module
from tests.conftest import ROOT
from tests.integration.test_checkout import buy, stripe_client
from tests.integration.test_webhook import pay, receipts_for, wait_for


def reconcile(stack, *args):
    env = {**os.environ, **stack.aws_env(), **stack.function_env(), "PYTHONPATH": str(ROOT / "layers/common/python"),
           "POWERTOOLS_LOG_LEVEL": "ERROR"}
    result = subprocess.run([sys.executable, "-m", "ticketing.reconcile", *args], env=env, capture_output=True, text=True, timeout=120)
    return result.returncode, json.loads(result.stdout), result.stderr


@pytest.fixture(autouse=True)
def lost_means_lost(stack):
    """Stripe retries failed deliveries (the stand-in too, on a compressed schedule); the
    webhooks these tests lose must stay lost, as when every retry has failed."""
    requests.post(f"{stack.stripe_url}/_config/webhook-retries", json={"retry_delays": []}, timeout=5).raise_for_status()
    yield
    requests.post(f"{stack.stripe_url}/_config/webhook-retries", json={}, timeout=5).raise_for_status()


def failed_events(stack, *object_ids):
    """How many Stripe events about these objects the webhook has recorded as failed."""
    items = stack.client("dynamodb").scan(
        TableName=stack_module.TABLE, ConsistentRead=True, FilterExpression="#s = :failed",
        ExpressionAttributeNames={"#s": "state"}, ExpressionAttributeValues={":failed": {"S": "failed"}},
    )["Items"]
    return sum(1 for item in items if item.get("object_id", {}).get("S") in object_ids)


def fault(stack, **rule):
    requests.post(f"{stack.stripe_url}/_config/faults", json=rule, timeout=5).raise_for_status()


def test_a_lost_payment_webhook_is_reported_and_repaired(api, stack, make_event):
    event_id, types = make_event({"GA": (1200, 10)})
    sub = f"lost-{uuid.uuid4().hex[:6]}"
    token = api.token([], sub=sub, email=f"{sub}@example.com")
    order = buy(api, token, event_id, [(types["GA"], 2)]).json()
    fault(stack, path=f"/v1/payment_intents/{order['payment_intent_id']}", method="GET", status=500, count=1000)
    try:
        pay(stack, order)
        time.sleep(3)  # the stand-in's webhook arrives and fails to read the payment
        assert api.get(f"/api/orders/{order['order_id']}/", token=token).json()["status"] == "pending"
    finally:
        requests.delete(f"{stack.stripe_url}/_config/faults", timeout=5)

    code, report, _ = reconcile(stack)
    mine = [d for d in report["drift"] if d["order_id"] == order["order_id"]]
    assert code == 1 and [d["kind"] for d in mine] == ["paid_not_fulfilled"] and not mine[0]["repaired"]

    code, report, err = reconcile(stack, "--repair")
    mine = [d for d in report["drift"] if d["order_id"] == order["order_id"]]
    assert mine[0]["repaired"], (report, err)
    shown = api.get(f"/api/orders/{order['order_id']}/", token=token).json()
    assert shown["status"] == "paid" and {t["status"] for t in shown["tickets"]} == {"valid"}
    assert wait_for(lambda: len(receipts_for(stack, order["order_id"])) == 1)
    assert all(d["order_id"] != order["order_id"] for d in reconcile(stack)[1]["drift"])


def test_an_unrecorded_refund_is_reported_and_mirrored(api, stack, make_event):
    event_id, types = make_event({"GA": (1200, 10)})
    token = api.token([])
    order = buy(api, token, event_id, [(types["GA"], 2)]).json()
    pay(stack, order)
    assert wait_for(lambda: api.get(f"/api/orders/{order['order_id']}/", token=token).json()["status"] == "paid")
    fault(stack, path="/v1/refunds", method="GET", status=500, count=1000)
    try:
        refund = stripe_client(stack).v1.refunds.create(params={"payment_intent": order["payment_intent_id"], "amount": 700})
        # charge.refunded and refund.created arrive, cannot list the refunds, and fail
        assert wait_for(lambda: failed_events(stack, refund.charge, refund.id) == 2, timeout=60)
        assert api.get(f"/api/orders/{order['order_id']}/", token=token).json()["refunded_cents"] == 0
    finally:
        requests.delete(f"{stack.stripe_url}/_config/faults", timeout=5)

    code, report, err = reconcile(stack, "--repair")
    mine = [d for d in report["drift"] if d["order_id"] == order["order_id"]]
    assert [d["kind"] for d in mine] == ["refund_not_recorded"] and mine[0]["repaired"], (report, err)
    shown = api.get(f"/api/orders/{order['order_id']}/", token=token).json()
    assert shown["refunded_cents"] == 700 and shown["status"] == "partially_refunded"
