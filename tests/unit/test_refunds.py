"""Refund and dispute rules in process (tests/unit/world.py: every function over moto and
the Stripe stand-in): full, partial and per ticket, refusals that change nothing, the
cut-off, used tickets, Stripe failing, and disputes from signed events shaped like
Stripe's own. Ten refunds at once and a dashboard refund delivered by the Stripe
stand-in go through the gateway (tests/integration/test_refunds.py)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.shop import (available, deliver, event_for, order_state, paid_for_refund, receipts_for, refund, refund_notices, shards,
                        signed, stripe_refunds, table_item)
from tests.shop import dispute as _dispute
from tests.unit.world import TABLE


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def paid(api, stack):
    """`paid()`: a paid order for 3 GA tickets at $20, its owner's token and the event (tests/shop.py)."""
    return lambda starts_in=timedelta(days=7): paid_for_refund(api, stack, starts_in)


# ----------------------------------------------------------------- success
def test_a_full_refund_voids_every_ticket_returns_the_seats_and_emails_the_customer(api, stack, paid):
    ctx = paid()
    assert available(api, ctx["event_id"], ctx["type_id"]) == 7
    answer = refund(api, ctx)
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["amount_cents"] == 6000 and made["status"] == "succeeded" and made["reason"] == "requested_by_customer"
    assert made["stripe_refund_id"].startswith("re_") and sorted(made["ticket_ids"]) == sorted(t["id"] for t in ctx["order"]["tickets"])
    assert [r.amount for r in stripe_refunds(stack, ctx)] == [6000]
    state = order_state(api, ctx)
    assert state["status"] == "refunded" and state["refunded_cents"] == 6000
    assert {t["status"] for t in state["tickets"]} == {"void"} and state["refunds"][0]["id"] == made["id"]
    assert available(api, ctx["event_id"], ctx["type_id"]) == 10
    assert shards(stack, ctx["type_id"])[2] == 0  # nothing counted as sold any more
    assert len(refund_notices(stack, ctx["order"]["order_id"])) == 1


def test_a_partial_refund_by_an_admin_keeps_the_tickets(api, stack, paid):
    ctx = paid()
    answer = refund(api, ctx, {"amount_cents": 1500, "reason": "other"}, token=api.token(["admin"]))  # organisers choose
    assert answer.status_code == 201, answer.text
    state = order_state(api, ctx)
    assert state["status"] == "partially_refunded" and state["refunded_cents"] == 1500
    assert {t["status"] for t in state["tickets"]} == {"valid"}
    refunds = stripe_refunds(stack, ctx)
    assert [r.amount for r in refunds] == [1500] and refunds[0].metadata["reason"] == "other"
    assert refunds[0].reason == "requested_by_customer"  # Stripe's own reasons are three; ours is in metadata


def test_a_per_ticket_refund_voids_that_ticket_and_puts_its_seat_back(api, stack, paid):
    ctx = paid()
    ticket = ctx["order"]["tickets"][1]
    answer = refund(api, ctx, {"ticket_ids": [ticket["id"]], "reason": "requested_by_customer"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["amount_cents"] == 2000 and answer.json()["ticket_ids"] == [ticket["id"]]
    state = order_state(api, ctx)
    assert state["status"] == "partially_refunded" and state["refunded_cents"] == 2000
    assert {t["id"]: t["status"] for t in state["tickets"]}[ticket["id"]] == "void"
    assert sorted(t["status"] for t in state["tickets"]) == ["valid", "valid", "void"]
    assert available(api, ctx["event_id"], ctx["type_id"]) == 8
    voided = table_item(stack, f"TICKET#{ticket['id']}")
    scanner = api.token(["scanner"])
    assert api.get("/api/tickets/verify/", token=scanner, params={"code": voided["qr_payload"]}).json()["reason"] == "void"
    keys = api.get("/api/scanner/keys/", token=scanner, params={"event_id": ctx["event_id"]}).json()
    assert [v["ticket_id"] for v in keys["voided"]] == [ticket["id"]]


# ---------------------------------------------------------------- refusals
def _unchanged(api, stack, ctx, refunded_cents=0, stripe_count=0):
    state = order_state(api, ctx)
    assert state["refunded_cents"] == refunded_cents
    assert len(stripe_refunds(stack, ctx)) == stripe_count
    assert len(state["refunds"]) == stripe_count


def test_over_refund_and_a_second_full_refund_are_409(api, stack, paid):
    ctx = paid()
    admin = api.token(["admin"])
    over = refund(api, ctx, {"amount_cents": 6001}, token=admin)
    assert over.status_code == 409 and over.json()["code"] == "over_refund"
    _unchanged(api, stack, ctx)
    assert refund(api, ctx).status_code == 201
    again = refund(api, ctx)
    assert again.status_code == 409 and again.json()["code"] == "already_refunded"
    _unchanged(api, stack, ctx, refunded_cents=6000, stripe_count=1)


@pytest.mark.parametrize(
    ("who", "body", "status", "code"),
    [
        ("customer", {"amount_cents": 100}, 403, None),
        ("stranger", {}, 404, None),
        ("customer", {"ticket_ids": ["tk_not_in_this_order"]}, 422, None),
        ("customer", {"amount_cents": 100, "ticket_ids": ["x"]}, 422, None),
        ("customer", {"reason": "because"}, 422, None),
        ("customer", {"reason": "fraudulent"}, 403, "reason_for_organisers"),
        ("customer", {"reason": "duplicate"}, 403, "reason_for_organisers"),
        ("customer", {"reason": "event_canceled"}, 403, "reason_event_canceled"),
        ("admin", {"reason": "event_canceled"}, 403, "reason_event_canceled"),
        ("customer", {"amount_cents": -5}, 422, None),
    ],
)
def test_refusals_change_nothing(api, stack, paid, who, body, status, code):
    ctx = paid()
    token = {"customer": ctx["token"], "stranger": api.token([]), "admin": api.token(["admin"])}[who]
    answer = refund(api, ctx, body, token=token)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) >= {"error", "detail"}
    if code:
        assert answer.json()["code"] == code
    _unchanged(api, stack, ctx)


def test_a_customer_after_the_cut_off_is_refused(api, stack, paid):
    ctx = paid(starts_in=timedelta(hours=30))  # the cut-off is 48 hours before the start
    answer = refund(api, ctx)
    assert answer.status_code == 403 and answer.json()["code"] == "refund_window_closed"
    _unchanged(api, stack, ctx)
    assert refund(api, ctx, token=api.token(["admin"])).status_code == 201  # organisers still can


def test_a_used_ticket_is_for_admins_only(api, stack, paid):
    ctx = paid()
    ticket = ctx["order"]["tickets"][0]
    stack.client("dynamodb").update_item(
        TableName=TABLE, Key={"PK": {"S": f"TICKET#{ticket['id']}"}, "SK": {"S": "META"}},
        UpdateExpression="SET #s = :u, used_at = :t", ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":u": {"S": "used"}, ":t": {"S": iso(datetime.now(timezone.utc))}},
    )
    for body in ({"ticket_ids": [ticket["id"]]}, None):  # by ticket, or in full (which would include it)
        answer = refund(api, ctx, body) if body else refund(api, ctx)
        assert (answer.status_code, answer.json()["code"]) == (409, "ticket_used"), answer.text
    _unchanged(api, stack, ctx)
    assert refund(api, ctx, {"ticket_ids": [ticket["id"]]}, token=api.token(["admin"])).status_code == 201


def test_stripe_unreachable_is_502_records_nothing_and_a_retry_refunds_once(api, stack, paid, stripe_faults):
    ctx = paid()
    stripe_faults(500, path="/v1/refunds", method="POST", count=5)
    answer = refund(api, ctx)
    assert answer.status_code == 502 and answer.json()["error"] == "Payment processing error"
    _unchanged(api, stack, ctx)
    assert {t["status"] for t in order_state(api, ctx)["tickets"]} == {"valid"}
    stripe_faults.clear()
    assert refund(api, ctx).status_code == 201
    _unchanged(api, stack, ctx, refunded_cents=6000, stripe_count=1)


# ------------------------------------------------------------- from Stripe
def test_a_dispute_voids_the_tickets_and_a_won_dispute_restores_them(api, stack, paid):
    ctx = paid()
    order = order_state(api, ctx)
    charge_id, intent_id = order["payment"]["charge_id"], ctx["order"]["payment_intent_id"]
    dispute_id = f"dp_{uuid.uuid4().hex[:14]}"
    opened = event_for(intent_id, kind="charge.dispute.created", obj=_dispute(stack, charge_id, intent_id, "needs_response", dispute_id))
    answer = deliver(api, opened, signed(opened))
    assert answer.status_code == 200 and answer.json()["outcome"] == "disputed"
    state = order_state(api, ctx)
    assert state["status"] == "disputed" and {t["status"] for t in state["tickets"]} == {"void"}
    ticket_ids = {t["id"] for t in state["tickets"]}
    code = table_item(stack, f"TICKET#{state['tickets'][0]['id']}")["qr_payload"]
    scanner = api.token(["scanner"])
    assert api.get("/api/tickets/verify/", token=scanner, params={"code": code}).json()["reason"] == "void"
    keys = api.get("/api/scanner/keys/", token=scanner, params={"event_id": ctx["event_id"]}).json()
    assert {v["ticket_id"] for v in keys["voided"]} == ticket_ids and keys["restored"] == []
    assert refund(api, ctx).status_code == 409  # a disputed order is not refunded on top

    closed = event_for(intent_id, kind="charge.dispute.closed", obj=_dispute(stack, charge_id, intent_id, "won", dispute_id))
    assert deliver(api, closed, signed(closed)).json()["outcome"] == "dispute_won"
    state = order_state(api, ctx)
    assert state["status"] == "paid" and {t["status"] for t in state["tickets"]} == {"valid"}
    assert api.get("/api/tickets/verify/", token=scanner, params={"code": code}).json()["reason"] == "ok"
    keys = api.get("/api/scanner/keys/", token=scanner, params={"event_id": ctx["event_id"], "since": keys["generated_at"]}).json()
    assert keys["voided"] == [] and {r["ticket_id"] for r in keys["restored"]} == ticket_ids


def test_a_lost_dispute_leaves_the_tickets_void(api, stack, paid):
    ctx = paid()
    order = order_state(api, ctx)
    charge_id, intent_id = order["payment"]["charge_id"], ctx["order"]["payment_intent_id"]
    dispute_id = f"dp_{uuid.uuid4().hex[:14]}"
    for status, kind in (("needs_response", "charge.dispute.created"), ("lost", "charge.dispute.closed")):
        payload = event_for(intent_id, kind=kind, obj=_dispute(stack, charge_id, intent_id, status, dispute_id))
        assert deliver(api, payload, signed(payload)).status_code == 200
    state = order_state(api, ctx)
    assert state["status"] == "disputed" and {t["status"] for t in state["tickets"]} == {"void"}
    assert len(receipts_for(stack, ctx["order"]["order_id"])) == 1  # the receipt, nothing re-sent


def test_a_won_dispute_delivered_before_its_opening_leaves_the_order_paid(api, stack, paid):
    ctx = paid()
    order = order_state(api, ctx)
    charge_id, intent_id = order["payment"]["charge_id"], ctx["order"]["payment_intent_id"]
    dispute_id = f"dp_{uuid.uuid4().hex[:14]}"
    opened = event_for(intent_id, kind="charge.dispute.created", obj=_dispute(stack, charge_id, intent_id, "needs_response", dispute_id))
    closed = event_for(intent_id, kind="charge.dispute.closed", obj=_dispute(stack, charge_id, intent_id, "won", dispute_id))
    assert deliver(api, closed, signed(closed)).json()["outcome"] == "dispute_won"  # Stripe's order of delivery is not ours
    assert deliver(api, opened, signed(opened)).json()["outcome"] == "dispute_won"  # the dispute is fetched: it is won
    state = order_state(api, ctx)
    assert state["status"] == "paid" and {t["status"] for t in state["tickets"]} == {"valid"}
