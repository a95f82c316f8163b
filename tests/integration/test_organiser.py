"""Organiser operations on the local stack: editing a sale under load, and canceling an
event through its background job (the stack's queue poller), interrupted by Stripe
failing and resumed, refunding every order exactly once. The organiser's rules (edits,
listings, attendees, figures) are tested in process: tests/unit/test_organiser_api.py."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

from local import stack as stack_module
from tests.integration.support import wait_for
from tests.shop import (buy, check_invariants, paid_order, pending_order, refund_notices, shard_items, stripe_client,
                        table_item, type_item)


# ------------------------------------------------------------------ helpers
def patch(api, path, token, body):
    return api.request("PATCH", path, token=token, json=body)


# -------------------------------------------------------------- editing
def test_lowering_capacity_during_a_rush_never_lets_sold_and_held_exceed_it(api, stack, make_event):
    event_id, types = make_event({"GA": (1000, 60)})
    type_id, admin = types["GA"], api.token(["admin"])
    stop = threading.Event()
    bought = []

    def shopper(_):
        while not stop.is_set():
            answer = buy(api, api.token([]), event_id, [(type_id, 3)])
            if answer.status_code == 201:
                bought.append(answer.json()["order_id"])
            elif answer.status_code == 409:
                return

    results = []
    with ThreadPoolExecutor(max_workers=6) as pool:
        running = [pool.submit(shopper, i) for i in range(5)]
        for target in (50, 42, 36, 30):
            sold = len(bought)  # each change lands while buyers are buying: after another sale
            wait_for(lambda: len(bought) > sold or all(f.done() for f in running), timeout=30, interval=0.05)
            answer = patch(api, f"/api/events/{event_id}/ticket-types/{type_id}/", admin, {"capacity": target})
            results.append((target, answer.status_code, answer.json()))
            assert answer.status_code in (200, 409), answer.text
            check_invariants(stack, event_id, type_id)
        stop.set()
        for future in running:
            future.result()

    capacity, remaining, held, sold = check_invariants(stack, event_id, type_id)
    accepted = [target for target, status, _ in results if status == 200]
    assert accepted and capacity == accepted[-1]
    assert held + sold == 3 * len(bought) <= capacity
    for target, status, body in results:
        if status == 409:
            assert body["code"] == "capacity_below_sold" and body["sold_and_held"] > target

    # Below what is sold and held: 409 and nothing changes.
    before = shard_items(stack, type_id), type_item(stack, event_id, type_id)
    refused = patch(api, f"/api/events/{event_id}/ticket-types/{type_id}/", admin, {"capacity": held + sold - 1, "price_cents": 100})
    assert refused.status_code == 409 and refused.json()["code"] == "capacity_below_sold"
    assert (shard_items(stack, type_id), type_item(stack, event_id, type_id)) == before
    assert table_item(stack, f"EVENT#{event_id}", f"TYPE#{type_id}")["price_cents"] == "1000"

    # Exactly what is sold and held: nothing left to sell.
    exact = patch(api, f"/api/events/{event_id}/ticket-types/{type_id}/", admin, {"capacity": held + sold})
    assert exact.status_code == 200 and exact.json()["available"] == 0
    check_invariants(stack, event_id, type_id)


# ------------------------------------------------------------------ seeing
# ---------------------------------------------------------------- cancel
def test_canceling_an_event_interrupted_by_stripe_refunds_each_order_exactly_once(api, stack, make_event, stripe_faults):
    event_id, types = make_event({"GA": (1500, 40)})
    admin, scanner = api.token(["admin"]), api.token(["scanner"])
    paid = [paid_order(api, stack, event_id, [(types["GA"], 1 + i % 3)]) for i in range(5)]
    pending = pending_order(api, event_id, [(types["GA"], 2)])
    # Stripe refuses the next refunds: the job must stop, keep its place and resume.
    stripe_faults(500, path="/v1/refunds", method="POST", count=5)
    started = api.post(f"/api/events/{event_id}/cancel/", token=admin, json={"batch_size": 2})
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["state"] == "running" and job["orders_total"] == 6 and job["batch_size"] == 2
    again = api.post(f"/api/events/{event_id}/cancel/", token=admin, json={})
    assert again.status_code == 200 and again.json()["job_id"] == job["job_id"]  # the same job, not a second
    assert buy(api, api.token([]), event_id, [(types["GA"], 1)]).json()["code"] == "event_not_on_sale"
    # Duplicate deliveries of the job's message, as SQS may make them, change nothing.
    queue = stack.client("sqs").get_queue_url(QueueName="EventCancelQueue")["QueueUrl"]
    for _ in range(2):
        stack.client("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps({"event_id": event_id}))

    seen_running = []

    def progressed():
        state = api.get(f"/api/events/{event_id}/cancel/", token=admin).json()
        assert state["done"] + state["failed"] + state["left"] == state["orders_total"] == 6
        assert state["done"] == state["refunded"] + state["canceled"] + state["skipped"]
        seen_running.append(state["state"] == "running")
        return state if state["state"] == "completed" else None

    final = wait_for(progressed, timeout=120, interval=1)
    stripe_faults.clear()
    assert final, api.get(f"/api/events/{event_id}/cancel/", token=admin).text
    assert any(seen_running)
    assert (final["done"], final["refunded"], final["canceled"], final["failed"], final["left"]) == (6, 5, 1, 0, 0)
    assert final["refunded_cents"] == sum(order["total_cents"] for order, _ in paid) and final["batches"] >= 4

    markers = stack.client("dynamodb").query(
        TableName=stack_module.TABLE, KeyConditionExpression="PK = :p AND begins_with(SK, :o)",
        ExpressionAttributeValues={":p": {"S": f"CANCEL#{event_id}"}, ":o": {"S": "ORDER#"}}, ConsistentRead=True,
    )["Items"]
    assert len(markers) == 6 and {m["state"]["S"] for m in markers} == {"done"}
    assert any(int(m.get("attempts", {"N": "0"})["N"]) >= 1 for m in markers)  # it was interrupted and resumed

    client = stripe_client(stack)
    for order, token in paid:
        refunds = client.v1.refunds.list(params={"payment_intent": order["payment_intent_id"]}).data
        assert [r.amount for r in refunds] == [order["total_cents"]]  # exactly one refund, in full
        assert refunds[0].metadata["reason"] == "event_canceled"
        state = api.get(f"/api/orders/{order['order_id']}/", token=token).json()
        assert state["status"] == "refunded" and {t["status"] for t in state["tickets"]} == {"void"}
        for ticket in order["tickets"]:
            code = table_item(stack, f"TICKET#{ticket['id']}")["qr_payload"]
            verdict = api.get("/api/tickets/verify/", token=scanner, params={"code": code}).json()
            assert verdict["is_valid"] is False and verdict["reason"] == "void"
        assert wait_for(lambda: len(refund_notices(stack, order["order_id"])) == 1)
    assert api.get(f"/api/orders/{pending['order_id']}/", token=admin).json()["status"] == "canceled"
    assert client.v1.payment_intents.retrieve(pending["payment_intent_id"]).status == "canceled"
    assert api.get(f"/api/events/{event_id}/").json()["status"] == "canceled"
    assert api.post(f"/api/events/{event_id}/cancel/", token=admin).json()["state"] == "completed"
    assert api.post(f"/api/events/{event_id}/cancel/", token=api.token([])).status_code == 403

