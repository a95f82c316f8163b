"""Reconciliation of refunds whose process stopped half-way (moto + the Stripe stand-in):
reserved but never sent to Stripe, and sent but never recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.test_fulfilment import _order, _pay_at_stripe, shop  # noqa: F401  (the fixture)
from ticketing import clock, fulfilment, orders, payments, reconcile, refunds
from ticketing.auth import Caller
from ticketing.errors import Conflict
from ticketing.table import RefundItem

ADMIN = Caller("admin-1", groups=frozenset({"admin"}))


class Stopped(BaseException):
    """The process ending mid-request (a Lambda timeout, an out-of-memory kill): no
    `except Exception` runs, so nothing is undone."""


def _paid(shop, sub: str) -> str:  # noqa: F811
    order = _order(shop, sub)
    _pay_at_stripe(order["payment_intent_id"])
    assert fulfilment.settle(payments.retrieve_intent(order["payment_intent_id"]))[0] == "paid"
    return order["order_id"]


def _drift(order_id: str, repair: bool = False) -> list[reconcile.Drift]:
    return [d for d in reconcile.scan(repair=repair) if d.order_id == order_id]


@pytest.fixture
def later():
    """Move the clock past the point where a pending refund is no longer in flight."""
    yield lambda: clock.freeze(clock.now() + reconcile.STALE_AFTER + timedelta(minutes=1))
    clock.freeze(None)


def _stop_at_stripe(monkeypatch, after_stripe: bool) -> None:
    original = payments.refund

    def stopping(**kwargs):
        if after_stripe:
            original(**kwargs)
        raise Stopped()

    monkeypatch.setattr(payments, "refund", stopping)


def test_a_refund_that_never_reached_stripe_is_reported_then_released(shop, monkeypatch, later):  # noqa: F811
    order_id = _paid(shop, "stopped-before-stripe")
    with monkeypatch.context() as patched:
        _stop_at_stripe(patched, after_stripe=False)
        with pytest.raises(Stopped):
            refunds.refund(order_id, refunds.RefundIn(), ADMIN)
    stuck = orders.get(order_id)
    assert stuck.refunded_cents == 6000 and all(t.refund_id for t in orders.tickets_of(stuck))
    with pytest.raises(Conflict):  # everything is set aside, so asking again is refused
        refunds.refund(order_id, refunds.RefundIn(), ADMIN)
    assert _drift(order_id) == []  # still within the time a request can take

    later()
    found = _drift(order_id)
    assert [(d.kind, d.repaired) for d in found] == [("refund_not_sent", False)]
    assert orders.get(order_id).refunded_cents == 6000  # reporting changes nothing
    assert [(d.kind, d.repaired) for d in _drift(order_id, repair=True)] == [("refund_not_sent", True)]
    assert _drift(order_id) == []

    released = orders.get(order_id)
    assert released.status == "paid" and released.refunded_cents == 0
    assert [(t.status, t.refund_id) for t in orders.tickets_of(released)] == [("valid", None)] * 2
    assert list(RefundItem.query(RefundItem.key(order_id, "")[0], RefundItem.SK.startswith("REFUND#"))) == []
    assert payments.refunds_of(released.payment.payment_intent_id) == []

    again = refunds.refund(order_id, refunds.RefundIn(), ADMIN)  # asked again: refunded once
    assert again.amount_cents == 6000 and orders.get(order_id).status == "refunded"
    assert [r.amount for r in payments.refunds_of(released.payment.payment_intent_id)] == [6000]


def test_a_refund_stripe_made_whose_answer_was_lost_is_completed_not_released(shop, monkeypatch, later):  # noqa: F811
    order_id = _paid(shop, "stopped-after-stripe")
    with monkeypatch.context() as patched:
        _stop_at_stripe(patched, after_stripe=True)
        with pytest.raises(Stopped):
            refunds.refund(order_id, refunds.RefundIn(amount_cents=2500), ADMIN)
    assert orders.get(order_id).status == "paid"  # reserved, not completed
    later()
    assert [(d.kind, d.repaired) for d in _drift(order_id)] == [("refund_not_recorded", False)]
    assert [(d.kind, d.repaired) for d in _drift(order_id, repair=True)] == [("refund_not_recorded", True)]
    assert _drift(order_id) == []
    done = orders.get(order_id)
    assert done.status == "partially_refunded" and done.refunded_cents == 2500
    assert [r.amount for r in payments.refunds_of(done.payment.payment_intent_id)] == [2500]
