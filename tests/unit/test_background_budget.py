"""Refunds and an event cancellation's PaymentIntent cancels spend the Stripe budget's
background share, as the expiry's cancels do (in process: moto and the Stripe stand-in;
counts of the calls that reached Stripe, the clock frozen inside one second)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from local.environment import overriding
from tests.unit.conftest import ADMIN, Invoker, catalogue_event, confirm_at_stripe, load_function, provision_fulfilment
from ticketing import clock, config, event_cancel, fulfilment, mail, orders, payments, refunds
from ticketing.auth import Caller
from ticketing.errors import DependencyUnavailable

SECOND = datetime(2029, 6, 1, 12, 0, 0, 200_000, tzinfo=timezone.utc)  # early in a second: no edge spending
ORGANISER = Caller(sub="admin-1", groups=frozenset({"admin"}))


@pytest.fixture
def shop(aws, catalogue, stripe_standin, monkeypatch):
    provision_fulfilment(monkeypatch)
    event = catalogue_event(catalogue, "Budgeted")
    _, ticket_type, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/", {"name": "GA", "price_cents": 3000, "capacity": 10}, claims=ADMIN)
    buy = Invoker(load_function("checkout"))
    calls = {"refund": 0, "cancel": 0}
    real_refund, real_cancel = payments.refund, payments.cancel_intent

    def counted_refund(**kwargs):
        calls["refund"] += 1
        return real_refund(**kwargs)

    def counted_cancel(intent_id):
        calls["cancel"] += 1
        return real_cancel(intent_id)

    monkeypatch.setattr(payments, "refund", counted_refund)
    monkeypatch.setattr(payments, "cancel_intent", counted_cancel)

    def hold(n: int, at: datetime | None = None) -> dict:
        clock.freeze(at or SECOND - timedelta(minutes=5) + timedelta(seconds=n))  # one checkout a second: within its budget
        sub = f"buyer-{n}"
        status, answer, _ = buy("POST", "/api/tickets/stripe/checkout/",
                                {"event_id": event["id"], "items": [{"ticket_type_id": ticket_type["id"], "qty": 1}]},
                                claims={"sub": sub, "email": f"{sub}@example.com", "name": sub, "email_verified": "true"})
        assert status == 201, answer
        return answer

    def paid(n: int) -> dict:
        answer = hold(n)
        confirm_at_stripe(answer["payment_intent_id"])
        assert fulfilment.settle(payments.retrieve_intent(answer["payment_intent_id"]))[0] == "paid"
        return answer

    yield {"hold": hold, "paid": paid, "calls": calls}
    clock.freeze(None)
    config.settings.cache_clear()
    mail.reset_client()


def _background(per_second: int):
    """The budget with `per_second` background requests (of 10 in all)."""
    return overriding({"STRIPE_RATE_TOTAL": "10", "STRIPE_RATE_PER_ENDPOINT": "25",
                       "STRIPE_RATE_BACKGROUND_PERCENT": str(per_second * 10)}, config.settings.cache_clear)


def test_refunds_are_paced_by_the_background_budget_and_a_refused_one_leaves_nothing_reserved(shop):
    made = [shop["paid"](n) for n in range(3)]
    clock.freeze(SECOND)
    with _background(2):
        done = []
        for order in made:
            try:
                refunds.refund(order["order_id"], refunds.RefundIn(), ORGANISER)
                done.append(order["order_id"])
            except DependencyUnavailable as refused:
                assert refused.retry_after == 1 and refused.fields["code"] == "stripe_budget"
        assert len(done) == 2 and shop["calls"]["refund"] == 2  # the third never reached Stripe
        left = next(o["order_id"] for o in made if o["order_id"] not in done)
        untouched = orders.get(left)
        assert untouched.status == "paid" and int(untouched.refunded_cents or 0) == 0 and orders.refunds_of(left) == []
        clock.freeze(SECOND + timedelta(seconds=1))  # its retry, a second later
        refunds.refund(left, refunds.RefundIn(), ORGANISER)
    assert shop["calls"]["refund"] == 3 and [orders.get(o["order_id"]).status for o in made] == ["refunded"] * 3


def test_an_event_cancellations_payment_cancels_are_paced_by_the_background_budget(shop):
    held = [orders.get(shop["hold"](n)["order_id"]) for n in range(3)]
    clock.freeze(SECOND)
    with _background(2):
        outcomes = []
        for order in held:
            try:
                outcomes.append(event_cancel._settle(order, None)[1])
            except event_cancel.RetryLater as later:
                outcomes.append(f"later: {later}")
        assert outcomes[:2] == ["canceled", "canceled"] and outcomes[2].startswith("later: canceling the payment failed")
        assert shop["calls"]["cancel"] == 2 and orders.get(held[2].order_id).status == "pending"  # nothing changed
        clock.freeze(SECOND + timedelta(seconds=1))  # the queue delivers it again
        assert event_cancel._settle(held[2], None)[1] == "canceled"
    assert shop["calls"]["cancel"] == 3 and [orders.get(o.order_id).status for o in held] == ["canceled"] * 3


def test_background_work_cannot_take_checkouts_share(shop):
    """A rush of refunds spends the background pool only: checkout's share is still there."""
    made = [shop["paid"](n) for n in range(2)]
    clock.freeze(SECOND)
    with _background(1):
        refunds.refund(made[0]["order_id"], refunds.RefundIn(), ORGANISER)
        with pytest.raises(DependencyUnavailable):
            refunds.refund(made[1]["order_id"], refunds.RefundIn(), ORGANISER)
        assert shop["hold"](99, at=SECOND)  # a checkout in that same second is admitted
