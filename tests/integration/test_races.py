"""Each conflicting pair at the same moment, at least 20 times, through the local stack
(gateway, functions, moto server, localstripe). The AWS stand-in runs DynamoDB calls one
at a time, so these show the HTTP answers and the end state; tests/unit/test_races.py
walks every interleaving deterministically. After each pair: the excluded outcomes never
both happened, and the shared invariants (tests/invariants.py) hold for its orders."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from local import stack as stack_module
from tests import invariants
from tests.integration.support import wait_for
from tests.integration.test_checkout import buy, stripe_client
from tests.integration.test_refunds import _dispute
from tests.integration.test_webhook import deliver, event_for, order_of, pay, signed, table_item

pytestmark = pytest.mark.xdist_group("load")


def _at_once(*calls, stagger: float = 0.0):
    """Run the calls in threads released together (the second `stagger` seconds after the
    first, to vary which one reaches the table first); their answers, in order."""
    barrier = threading.Barrier(len(calls))

    def run(index_call):
        index, call = index_call
        barrier.wait()
        if index == 1 and stagger:
            time.sleep(stagger)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(run, pair) for pair in enumerate(calls)]]


def _paid_orders(api, stack, event_id, type_id, count, qty):
    """`count` paid orders of `qty` tickets, each with its owner's token."""
    made = []
    for _ in range(count):
        sub = f"racer-{uuid.uuid4().hex[:8]}"
        token = api.token([], sub=sub, email=f"{sub}@example.com")
        order = buy(api, token, event_id, [(type_id, qty)]).json()
        assert pay(stack, order).json()["status"] == "succeeded"
        made.append((token, order))
    for token, order in made:
        assert wait_for(lambda: order_of(api, token, order["order_id"])["status"] == "paid"), order["order_id"]
    return made


def _problems(stack, order_ids, type_ids):
    kept = invariants.stripe_kept(stripe_client(stack))
    return invariants.problems(stack.client("dynamodb"), stack_module.TABLE, kept, orders=order_ids, types=type_ids, only=True)


def _settled(api, token, order_id):
    """No refund of the order is still pending (its webhook may finish it)."""
    return all(r["status"] != "pending" for r in order_of(api, token, order_id)["refunds"])


def test_refund_and_check_in_of_one_ticket_at_once_50_times_never_both_succeed(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 60)})
    scanner = api.token(["scanner"])
    orders = _paid_orders(api, stack, event_id, types["GA"], 5, 10)
    endings = Counter()
    for token, order in orders:
        for n, ticket in enumerate(order["tickets"]):
            refund, checkin = _at_once(
                lambda: api.post(f"/api/orders/{order['order_id']}/refund/", token=token, json={"ticket_ids": [ticket["id"]]}),
                lambda: api.post(f"/api/tickets/{ticket['id']}/checkin/", token=scanner, json={"gate": "North"}),
                stagger=0.05 * n,  # the scan 0-450 ms after the refund started, as at a real gate
            )
            pair = (refund.status_code, checkin.status_code)
            if pair == (201, 409):
                assert checkin.json()["reason"] == "void", checkin.text
                endings["refunded"] += 1
            else:
                assert pair == (409, 200), (refund.text, checkin.text)
                assert refund.json()["code"] == "ticket_used", refund.text
                endings["admitted"] += 1
    assert sum(endings.values()) == 50
    for token, order in orders:
        assert wait_for(lambda: _settled(api, token, order["order_id"]))
    assert _problems(stack, [o["order_id"] for _, o in orders], [types["GA"]]) == []
    print(f"refund x check-in, 50 tries: {dict(endings)}")


def test_a_dispute_and_check_ins_at_once_20_times(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 30)})
    scanner = api.token(["scanner"])
    orders = _paid_orders(api, stack, event_id, types["GA"], 20, 1)
    for token, order in orders:
        state = order_of(api, token, order["order_id"])
        charge, intent = state["payment"]["charge_id"], order["payment_intent_id"]
        payload = event_for(intent, kind="charge.dispute.created",
                            obj=_dispute(stack, charge, intent, "needs_response", f"dp_{uuid.uuid4().hex[:14]}"))
        opened, checkin = _at_once(
            lambda: deliver(api, payload, signed(payload)),
            lambda: api.post(f"/api/tickets/{order['tickets'][0]['id']}/checkin/", token=scanner, json={"gate": "North"}),
        )
        assert opened.status_code == 200 and opened.json()["outcome"] == "disputed", opened.text
        assert checkin.status_code == 200 or checkin.json()["reason"] == "void", checkin.text
        ticket = table_item(stack, f"TICKET#{order['tickets'][0]['id']}")
        assert ticket["status"] == "void" and ticket["voided_by_dispute"]  # admitted or not, it ends void
    assert _problems(stack, [o["order_id"] for _, o in orders], [types["GA"]]) == []


def test_two_partial_refunds_of_one_order_at_once_20_times_never_refund_more_than_was_paid(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 20)})
    [(token, order)] = _paid_orders(api, stack, event_id, types["GA"], 1, 10)  # 15000 paid
    admin = api.token(["admin"])
    path = f"/api/orders/{order['order_id']}/refund/"
    answers = Counter()
    for _ in range(20):
        for answer in _at_once(lambda: api.post(path, token=admin, json={"amount_cents": 400}),
                               lambda: api.post(path, token=admin, json={"amount_cents": 400})):
            answers[(answer.status_code, answer.json().get("code"))] += 1
            assert answer.status_code in (201, 409, 503), answer.text
    state = order_of(api, token, order["order_id"])
    assert state["refunded_cents"] == 400 * answers[(201, None)] <= 15000, (answers, state["refunds"])
    assert wait_for(lambda: _settled(api, token, order["order_id"]))
    assert _problems(stack, [order["order_id"]], [types["GA"]]) == []


def test_offline_uploads_and_online_scans_at_once_20_times_never_rewrite_an_online_admission(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 30)})
    scanner = api.token(["scanner"])
    orders = _paid_orders(api, stack, event_id, types["GA"], 2, 10)
    for _, order in orders:
        for ticket in order["tickets"]:
            item = table_item(stack, f"TICKET#{ticket['id']}")
            scan = [{"code": item["qr_payload"], "scanned_at": item["issued_at"], "gate": "Offline"}]
            upload, online = _at_once(
                lambda: api.post("/api/scanner/checkins/", token=scanner, json=scan),
                lambda: api.post(f"/api/tickets/{ticket['id']}/checkin/", token=scanner, json={"gate": "North"}),
            )
            result = upload.json()["results"][0]
            after = table_item(stack, f"TICKET#{ticket['id']}")
            if online.status_code == 200:
                assert (after["gate"], after["admission"]) == ("North", "online")
                assert result["result"] == "conflict", result
            else:
                assert online.json()["reason"] == "already_used" and result["result"] == "accepted"
                assert (after["gate"], after["admission"]) == ("Offline", "offline")
    assert _problems(stack, [o["order_id"] for _, o in orders], [types["GA"]]) == []


def test_capacity_edits_and_checkouts_at_once_20_times_never_oversell(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 8)})
    admin = api.token(["admin"])
    made = []
    for n in range(20):
        sub = f"cap-{uuid.uuid4().hex[:8]}"
        token = api.token([], sub=sub)
        target = 6 if n % 2 else 10
        edit, checkout = _at_once(
            lambda: api.request("PATCH", f"/api/events/{event_id}/ticket-types/{types['GA']}/", token=admin, json={"capacity": target}),
            lambda: buy(api, token, event_id, [(types["GA"], 1)]),
        )
        assert edit.status_code in (200, 409), edit.text
        assert checkout.status_code in (201, 409), checkout.text
        if checkout.status_code == 201:
            made.append(checkout.json()["order_id"])
            requests.post(f"{api.stack.api_url}/api/orders/{checkout.json()['order_id']}/cancel/",
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert made
    assert _problems(stack, made, [types["GA"]]) == []


def test_a_customers_cancel_and_the_payment_at_once_20_times(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 30)})
    endings = Counter()
    placed = []
    for _ in range(20):
        sub = f"canceler-{uuid.uuid4().hex[:8]}"
        token = api.token([], sub=sub, email=f"{sub}@example.com")
        order = buy(api, token, event_id, [(types["GA"], 1)]).json()
        placed.append((token, order))
        cancel, paid = _at_once(lambda: api.post(f"/api/orders/{order['order_id']}/cancel/", token=token),
                                lambda: pay(stack, order), stagger=0.02 * (len(placed) % 10))
        if cancel.status_code == 200:
            assert paid.status_code != 200 or paid.json().get("status") != "succeeded", paid.text
            endings["canceled"] += 1
        else:
            assert cancel.status_code == 409 and cancel.json()["code"] == "order_paid", cancel.text
            endings["paid"] += 1
    for token, order in placed:
        assert wait_for(lambda: order_of(api, token, order["order_id"])["status"] in ("paid", "canceled"))
    assert _problems(stack, [o["order_id"] for _, o in placed], [types["GA"]]) == []
    print(f"cancel x payment, 20 tries: {dict(endings)}")


def test_canceling_the_event_while_its_tickets_are_scanned(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 30)})
    scanner, admin = api.token(["scanner"]), api.token(["admin"])
    orders = _paid_orders(api, stack, event_id, types["GA"], 2, 10)
    tickets = [t["id"] for _, o in orders for t in o["tickets"]]
    calls = [lambda: api.post(f"/api/events/{event_id}/cancel/", token=admin, json={"batch_size": 5})]
    calls += [lambda t=t: api.post(f"/api/tickets/{t}/checkin/", token=scanner, json={"gate": "North"}) for t in tickets]
    answers = _at_once(*calls)
    assert answers[0].status_code in (200, 202), answers[0].text
    assert all(a.status_code == 200 or a.json()["reason"] == "void" for a in answers[1:])
    assert wait_for(lambda: api.get(f"/api/events/{event_id}/cancel/", token=admin).json()["state"] == "completed", timeout=120)
    for token, order in orders:
        assert wait_for(lambda: _settled(api, token, order["order_id"]))
        assert order_of(api, token, order["order_id"])["status"] == "refunded"
    assert {table_item(stack, f"TICKET#{t}")["status"] for t in tickets} == {"void"}
    assert _problems(stack, [o["order_id"] for _, o in orders], [types["GA"]]) == []


def test_a_transaction_conflict_on_the_payment_is_retried_and_on_every_attempt_answered_503(api, stack, make_event, aws_faults):
    event_id, types = make_event({"GA": (1500, 10)})
    sub = f"conflicted-{uuid.uuid4().hex[:8]}"
    token = api.token([], sub=sub, email=f"{sub}@example.com")
    order = buy(api, token, event_id, [(types["GA"], 1)]).json()
    ticket = f"TICKET#{order['tickets'][0]['id']}"
    # Two conflicts: the lifecycle's retry gets past them, the customer sees nothing.
    aws_faults(service="dynamodb", operation="TransactWriteItems", code="TransactionConflict", item=ticket, count=2)
    cancel = api.post(f"/api/orders/{order['order_id']}/cancel/", token=token)
    assert cancel.status_code == 200 and cancel.json()["status"] == "canceled", cancel.text
    assert aws_faults.hits() == 2

    other = buy(api, token, event_id, [(types["GA"], 1)]).json()
    aws_faults.clear()
    aws_faults(service="dynamodb", operation="TransactWriteItems", code="TransactionConflict",
               item=f"TICKET#{other['tickets'][0]['id']}", count=-1)
    cancel = api.post(f"/api/orders/{other['order_id']}/cancel/", token=token)
    assert cancel.status_code == 503 and cancel.headers.get("Retry-After"), cancel.text
    assert cancel.json()["code"] == "contention"
    aws_faults.clear()
    assert order_of(api, token, other["order_id"])["status"] == "pending"  # nothing changed
    assert _problems(stack, [order["order_id"], other["order_id"]], [types["GA"]]) == []
