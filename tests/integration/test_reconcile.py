"""Reconciliation against the local stack: drift made by losing webhooks is reported,
and repaired with --repair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import ROOT
from tests.integration.test_checkout import buy, stripe_client
from tests.integration.support import stripe_events, wait_for
from tests.integration.test_webhook import pay, receipts_for


@pytest.fixture
def since():
    """When the test began: reconciliation looks only at what was paid from then on (the
    worker's stack holds other tests' payments too)."""
    return (datetime.now(timezone.utc) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")


def reconcile(stack, since, *args):
    env = {**os.environ, **stack.aws_env(), **stack.function_env(), "PYTHONPATH": str(ROOT / "layers/common/python"),
           "POWERTOOLS_LOG_LEVEL": "ERROR"}
    result = subprocess.run([sys.executable, "-m", "ticketing.reconcile", "--since", since, *args], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout, result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout), result.stderr


@pytest.fixture(autouse=True)
def lost_means_lost(webhook_retries):
    """Stripe retries failed deliveries (the stand-in too, on a compressed schedule); the
    webhooks these tests lose must stay lost, as when every retry has failed."""
    webhook_retries([])


def failed_events(stack, *object_ids):
    """How many Stripe events about these objects the webhook has recorded as failed."""
    return sum(1 for event in stripe_events(stack, *object_ids) if event["state"] == "failed")


def test_a_lost_payment_webhook_is_reported_and_repaired(api, stack, make_event, stripe_faults, since):
    event_id, types = make_event({"GA": (1200, 10)})
    sub = f"lost-{uuid.uuid4().hex[:6]}"
    token = api.token([], sub=sub, email=f"{sub}@example.com")
    order = buy(api, token, event_id, [(types["GA"], 2)]).json()
    stripe_faults(500, path=f"/v1/payment_intents/{order['payment_intent_id']}", method="GET", count=1000)
    pay(stack, order)
    # the stand-in's webhook arrives, fails to read the payment, and is not retried
    assert wait_for(lambda: failed_events(stack, order["payment_intent_id"]) == 1, timeout=60)
    assert api.get(f"/api/orders/{order['order_id']}/", token=token).json()["status"] == "pending"
    stripe_faults.clear()

    code, report, _ = reconcile(stack, since)
    mine = [d for d in report["drift"] if d["order_id"] == order["order_id"]]
    assert code == 1 and [d["kind"] for d in mine] == ["paid_not_fulfilled"] and not mine[0]["repaired"]

    code, report, err = reconcile(stack, since, "--repair")
    mine = [d for d in report["drift"] if d["order_id"] == order["order_id"]]
    assert mine[0]["repaired"], (report, err)
    shown = api.get(f"/api/orders/{order['order_id']}/", token=token).json()
    assert shown["status"] == "paid" and {t["status"] for t in shown["tickets"]} == {"valid"}
    assert wait_for(lambda: len(receipts_for(stack, order["order_id"])) == 1)
    assert all(d["order_id"] != order["order_id"] for d in reconcile(stack, since)[1]["drift"])


def test_an_unrecorded_refund_is_reported_and_mirrored(api, stack, make_event, stripe_faults, since):
    event_id, types = make_event({"GA": (1200, 10)})
    token = api.token([])
    order = buy(api, token, event_id, [(types["GA"], 2)]).json()
    pay(stack, order)
    assert wait_for(lambda: api.get(f"/api/orders/{order['order_id']}/", token=token).json()["status"] == "paid")
    stripe_faults(500, path="/v1/refunds", method="GET", count=1000)
    refund = stripe_client(stack).v1.refunds.create(params={"payment_intent": order["payment_intent_id"], "amount": 700})
    # charge.refunded and refund.created arrive, cannot list the refunds, and fail
    assert wait_for(lambda: failed_events(stack, refund.charge, refund.id) == 2, timeout=60)
    assert api.get(f"/api/orders/{order['order_id']}/", token=token).json()["refunded_cents"] == 0
    stripe_faults.clear()

    code, report, err = reconcile(stack, since, "--repair")
    mine = [d for d in report["drift"] if d["order_id"] == order["order_id"]]
    assert [d["kind"] for d in mine] == ["refund_not_recorded"] and mine[0]["repaired"], (report, err)
    shown = api.get(f"/api/orders/{order['order_id']}/", token=token).json()
    assert shown["refunded_cents"] == 700 and shown["status"] == "partially_refunded"
