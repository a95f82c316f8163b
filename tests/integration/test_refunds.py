"""Refunds through the gateway: ten at once never refund more than was paid, and a refund
made in Stripe's dashboard, delivered by the Stripe stand-in with real signatures, is
mirrored once. The refund rules themselves (full, partial, per ticket, refusals, the
cut-off, Stripe failing, disputes) are tested in process: tests/unit/test_refunds.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from tests.integration.support import wait_for
from tests.shop import dispute as _dispute  # noqa: F401 - for test_races and test_least_privilege
from tests.shop import order_state, paid_for_refund, refund, stripe_client, stripe_events, stripe_refunds


@pytest.fixture
def paid(api, stack):
    """`paid()`: a paid order for 3 GA tickets at $20, its owner's token and the event (tests/shop.py)."""
    return lambda starts_in=timedelta(days=7): paid_for_refund(api, stack, starts_in)


def test_ten_concurrent_partial_refunds_never_exceed_what_was_paid(api, stack, paid):
    ctx = paid()
    admin = api.token(["admin"])
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: refund(api, ctx, {"amount_cents": 1700}, token=admin), range(10)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(201) == 3 and set(statuses) <= {201, 409}, statuses
    at_stripe = stripe_refunds(stack, ctx)
    assert sum(r.amount for r in at_stripe) == 5100 and len(at_stripe) == 3
    state = order_state(api, ctx)
    assert state["refunded_cents"] == 5100 and state["status"] == "partially_refunded"


# ------------------------------------------------------------- from Stripe
def processed(stack, *object_ids):
    """The Stripe events about these objects that the webhook has finished with."""
    return [e for e in stripe_events(stack, *object_ids) if e["state"] == "processed"]


def test_a_dashboard_refund_is_mirrored_once(api, stack, paid):
    ctx = paid()
    charge = order_state(api, ctx)["payment"]["charge_id"]
    made = stripe_client(stack).v1.refunds.create(params={"payment_intent": ctx["order"]["payment_intent_id"], "amount": 2500})
    # The stand-in sends charge.refunded and refund.created: both arrive, one record results.
    assert wait_for(lambda: len(processed(stack, charge, made.id)) == 2), stripe_events(stack, charge, made.id)
    state = order_state(api, ctx)
    assert state["refunded_cents"] == 2500 and state["status"] == "partially_refunded"
    assert [r["amount_cents"] for r in state["refunds"]] == [2500]
    # Our own refund afterwards is not counted twice when its charge.refunded arrives.
    ours = refund(api, ctx, {"amount_cents": 1000}, token=api.token(["admin"]))
    assert ours.status_code == 201
    assert wait_for(lambda: len(processed(stack, charge, made.id, ours.json()["stripe_refund_id"])) == 4)
    state = order_state(api, ctx)
    assert state["refunded_cents"] == 3500 and len(state["refunds"]) == 2


