"""Vouchers and waiting lists through the gateway (issue 19): the HTTP path of each, on the
local stack. The rules themselves are tested in process (tests/unit/test_vouchers.py,
tests/unit/test_waitlist.py)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from local import stack as stack_module
from tests.integration.support import wait_for
from tests.integration.test_checkout import CHECKOUT, available, lapse, shards


def _customer(api, label: str) -> str:
    sub = f"{label}-{uuid.uuid4().hex[:6]}"
    return api.token([], sub=sub, email=f"{sub}@example.com")


def _expire(stack) -> dict:
    answer = requests.post(f"{stack.api_url}/_local/invoke/ExpireHoldsFunction", json={}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_concurrent_checkouts_through_the_gateway_use_a_5_use_voucher_exactly_5_times(api, stack, make_event):
    event_id, types = make_event({"GA": (2000, 40)})
    admin = api.token(["admin"])
    made = api.post(f"/api/events/{event_id}/vouchers", token=admin, json={"kind": "percent", "value": 25, "max_uses": 5})
    assert made.status_code == 201, made.text
    code = made.json()["code"]

    def one(_):
        body = {"event_id": event_id, "items": [{"ticket_type_id": types["GA"], "qty": 1}], "voucher_code": code}
        return api.post(CHECKOUT, token=_customer(api, "v"), json=body)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, range(8)))
    won = [a.json() for a in answers if a.status_code == 201]
    refused = [a.json() for a in answers if a.status_code != 201]
    assert len(won) == 5 and all(w["discount_cents"] == 500 and w["total_cents"] == 1500 for w in won), [a.text for a in answers]
    assert {(r["field"], r["code"]) for r in refused} == {("voucher_code", "used_up")}
    lapse(stack, won[0]["order_id"])
    _expire(stack)
    listed = api.get(f"/api/events/{event_id}/vouchers/", token=admin).json()["vouchers"]
    assert [v["uses"] for v in listed] == [4]
    assert api.get(f"/api/events/{event_id}/vouchers/", token=_customer(api, "nosy")).status_code == 403


def test_a_waiting_list_through_the_gateway_offers_returned_seats_to_the_first_in_line(api, stack, make_event):
    event_id, types = make_event({"Few": (3000, 2)})
    admin = api.token(["admin"])
    patched = api.request("PATCH", f"/api/events/{event_id}/", token=admin, json={"waiting_list": {"enabled": True, "offer_minutes": 10}})
    assert patched.status_code == 200 and patched.json()["waiting_list"]["enabled"] is True
    path = f"/api/events/{event_id}/ticket-types/{types['Few']}/waitlist/"
    early = _customer(api, "early")
    refused = api.post(path, token=early, json={"qty": 1})
    assert refused.status_code == 409 and refused.json()["code"] == "not_sold_out"
    holder = _customer(api, "holder")
    held = api.post(CHECKOUT, token=holder, json={"event_id": event_id, "items": [{"ticket_type_id": types["Few"], "qty": 2}]})
    assert held.status_code == 201
    first, second = _customer(api, "first"), _customer(api, "second")
    assert api.post(path, token=first, json={"qty": 2}).json()["position"] == 1
    assert api.post(path.rstrip("/"), token=second, json={"qty": 2}).json()["position"] == 2
    assert api.post(f"/api/orders/{held.json()['order_id']}/cancel/", token=holder).status_code == 200
    assert available(api, event_id, types["Few"]) == 0  # kept for the list, never the public's
    _expire(stack)  # the stack's own schedule may have made the offer first: either way, one offer
    offer = wait_for(lambda: (e := api.get("/api/me/waitlist/", token=first).json()["entries"]) and e[0]["offer"], timeout=60)
    assert offer and offer["qty"] == 2
    assert api.get("/api/me/waitlist", token=second).json()["entries"][0]["offer"] is None
    assert shards(stack, types["Few"])[:2] == (0, 2) and available(api, event_id, types["Few"]) == 0
    bought = api.post(CHECKOUT, token=first, json={"event_id": event_id, "offer_code": offer["offer_code"],
                                                   "items": [{"ticket_type_id": types["Few"], "qty": 2}]})
    assert bought.status_code == 201, bought.text
    assert api.get("/api/me/waitlist/", token=first).json()["entries"] == []
    assert api.request("DELETE", path, token=second).status_code == 200
    assert api.request("DELETE", path, token=second).status_code == 404
    item = stack.client("dynamodb").get_item(
        TableName=stack_module.TABLE, Key={"PK": {"S": f"WAIT#{types['Few']}"}, "SK": {"S": "HEAD"}}, ConsistentRead=True)["Item"]
    assert item["waiting"]["N"] == "0"
