"""The shop as an organiser, a customer and Stripe.js use it: one copy for the unit tests
(tests/unit/world.py, every function in process) and the integration tests (the local stack
behind its gateway).

Each function takes what it needs of two things both sides provide as fixtures:
- `api`: a client for the product's routes (`api.token(groups, **claims)`,
  `api.get/post/patch/delete(path, token=..., json=..., headers=...)`);
- `stack`: where the product runs. Besides `stripe_url`, `client(service)`, `shards(type_id)`,
  `table` and `stripe_keys` (secret, publishable and webhook keys), it answers for the two
  ways the sides differ, so that no helper here needs to know which side it is on:
  - `stack.payment_confirmed(order, confirmed)`: what Stripe does once Stripe.js has confirmed
    a payment. The local stack's Stripe stand-in delivers the signed webhook to the gateway by
    itself; the unit world, which has no Stripe able to reach it, delivers it there and then.
  - `stack.eventually(check)`: `check`'s answer once what the product does after answering has
    happened. The unit world has done it all when a call answers (it checks once); the local
    stack finishes webhooks, queues and schedules in the background (it polls until true).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

CHECKOUT = "/api/tickets/stripe/checkout/"
VISA = "4242424242424242"


# ------------------------------------------------------------------ the organiser
def make_event(api, types: dict[str, tuple[int, int]], *, admin: str | None = None, **event_fields: Any):
    """An event on sale a week from now with the given ticket types, made through the API:
    `make_event(api, {"GA": (2500, 40)})` answers (event_id, {"GA": type_id})."""
    admin = admin or api.token(["admin"])
    start = datetime.now(timezone.utc) + timedelta(days=7)
    body = {
        "name": f"Test {uuid.uuid4().hex[:6]}", "venue": "Hall", "currency": "usd",
        "starts_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ends_at": (start + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ"), **event_fields,
    }
    event = api.post("/api/events/", token=admin, json=body)
    assert event.status_code == 201, event.text
    event_id = event.json()["id"]
    made = {}
    for name, (price, capacity) in types.items():
        answer = api.post(f"/api/events/{event_id}/ticket-types/", token=admin,
                          json={"name": name, "price_cents": price, "capacity": capacity, "max_per_order": 10})
        assert answer.status_code == 201, answer.text
        made[name] = answer.json()["id"]
    return event_id, made


# ------------------------------------------------------------------ the customer
def buy(api, token: str, event_id: str, items: list[tuple[str, int]], **headers: str):
    """Checkout for `items` [(type_id, qty)]: the API's answer as it is."""
    body = {"event_id": event_id, "items": [{"ticket_type_id": t, "qty": q} for t, q in items]}
    return api.post(CHECKOUT, token=token, json=body, headers=headers)


def order_of(api, token: str, order_id: str) -> dict:
    return api.get(f"/api/orders/{order_id}/", token=token).json()


def pay(stack, order: dict, card: str = VISA) -> requests.Response:
    """What Stripe.js does with the publishable key (a PaymentMethod, then confirm), then
    what Stripe does about it (`stack.payment_confirmed`): the confirm's answer."""
    key = stack.stripe_keys["publishable_key"]
    method = requests.post(
        f"{stack.stripe_url}/v1/payment_methods", auth=(key, ""), timeout=10,
        data={"type": "card", "card[number]": card, "card[exp_month]": "12", "card[exp_year]": "2034", "card[cvc]": "123"},
    )
    assert method.status_code == 200, method.text
    confirmed = requests.post(
        f"{stack.stripe_url}/v1/payment_intents/{order['payment_intent_id']}/confirm", auth=(key, ""), timeout=10,
        data={"payment_method": method.json()["id"], "client_secret": order["client_secret"]},
    )
    stack.payment_confirmed(order, confirmed)
    return confirmed


def pending_order(api, event_id: str, items: list[tuple[str, int]], token: str | None = None) -> dict:
    """An order bought (its seats held) and not paid, by a fresh customer unless `token`."""
    answer = buy(api, token or api.token([]), event_id, items)
    assert answer.status_code == 201, answer.text
    return answer.json()


def paid_order(api, stack, event_id: str, items: list[tuple[str, int]], *, settled: bool = True,
               **claims: Any) -> tuple[dict, str]:
    """An order bought and paid by card by a fresh customer (claims: `sub`, default fan-…;
    `email`, default <sub>@example.com; any others), and with `settled` shown paid.
    Answers (the checkout's answer, the customer's token)."""
    sub = claims.pop("sub", f"fan-{uuid.uuid4().hex[:6]}")
    token = api.token([], sub=sub, email=claims.pop("email", f"{sub}@example.com"), **claims)
    order = pending_order(api, event_id, items, token)
    assert pay(stack, order).json()["status"] == "succeeded"
    if settled:
        assert stack.eventually(lambda: order_of(api, token, order["order_id"])["status"] == "paid"), "not paid"
    return order, token


# ------------------------------------------------------------------ reading the stack as it is
def table_item(stack, pk: str, sk: str = "META") -> dict[str, Any]:
    """An item of the table, read consistently, its attributes' values as strings ({} if none)."""
    item = stack.client("dynamodb").get_item(
        TableName=stack.table, Key={"PK": {"S": pk}, "SK": {"S": sk}}, ConsistentRead=True
    ).get("Item")
    return {k: next(iter(v.values())) for k, v in (item or {}).items()}


def shards(stack, type_id: str) -> tuple[int, int, int, int]:
    """(remaining, held, sold, capacity) summed over a type's shards, read from the table."""
    items = stack.shards(type_id)
    assert items and all(item["remaining"] >= 0 for item in items)
    total = lambda name: sum(item[name] for item in items)  # noqa: E731
    return total("remaining"), total("held"), total("sold"), total("capacity")


def available(api, event_id: str, type_id: str) -> int:
    """The seats of a type the public event page offers."""
    event = api.get(f"/api/events/{event_id}/").json()
    return next(t["available"] for t in event["ticket_types"] if t["id"] == type_id)


def type_item(stack, event_id: str, type_id: str) -> tuple[int, int]:
    """A ticket type's (capacity, number of shards) as the table holds them."""
    item = table_item(stack, f"EVENT#{event_id}", f"TYPE#{type_id}")
    return int(item["capacity"]), int(item["shards"])


def shard_items(stack, type_id: str) -> list[tuple[int, dict[str, int]]]:
    """A type's shards as [(shard number, {remaining, held, sold, capacity})], in order."""
    return [(shard.pop("shard"), shard) for shard in stack.shards(type_id)]


def check_invariants(stack, event_id: str, type_id: str) -> tuple[int, int, int, int]:
    """A type's seats add up, shard by shard and in all, to its capacity, none below zero:
    answers (capacity, remaining, held, sold)."""
    capacity, count = type_item(stack, event_id, type_id)
    items = shard_items(stack, type_id)
    assert len(items) == count
    for _, shard in items:
        assert shard["remaining"] >= 0 and shard["remaining"] + shard["held"] + shard["sold"] == shard["capacity"]
    remaining, held, sold, total = shards(stack, type_id)
    assert total == capacity and remaining + held + sold == capacity and held + sold <= capacity
    return capacity, remaining, held, sold


# ------------------------------------------------------------------ what several tests start from
def paid_for_refund(api, stack, starts_in: timedelta = timedelta(days=7)) -> dict:
    """A paid order for 3 GA tickets at $20 of an event starting in `starts_in` (3 hours
    long, 10 seats): {order, token, event_id, type_id, sub}."""
    start = datetime.now(timezone.utc) + starts_in
    event_id, types = make_event(api, {"GA": (2000, 10)}, starts_at=_iso(start), ends_at=_iso(start + timedelta(hours=3)))
    sub = f"refunder-{uuid.uuid4().hex[:6]}"
    order, token = paid_order(api, stack, event_id, [(types["GA"], 3)], sub=sub)
    return {"order": order, "token": token, "event_id": event_id, "type_id": types["GA"], "sub": sub}


def paid_tickets(api, stack, n: int) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
    """n valid GA tickets of a fresh event, bought by one customer and paid by card:
    (event_id, types, [(ticket_id, its QR code's payload)])."""
    event_id, types = make_event(api, {"GA": (1500, 20)})
    order, _ = paid_order(api, stack, event_id, [(types["GA"], n)], email="fan@example.com", name="Fan")
    return event_id, types, [(t["id"], table_item(stack, f"TICKET#{t['id']}")["qr_payload"]) for t in order["tickets"]]


def ticket_holder(api, stack) -> dict:
    """A customer with a paid order of 2 GA tickets and, newer, a pending order of 1 VIP:
    {event_id, token, sub, paid, pending} (the two checkout answers)."""
    event_id, types = make_event(api, {"GA": (2500, 30), "VIP": (9000, 5)})
    sub = f"fan-{uuid.uuid4().hex[:6]}"
    paid, token = paid_order(api, stack, event_id, [(types["GA"], 2)], sub=sub, name="Fan")
    pending = pending_order(api, event_id, [(types["VIP"], 1)], token)
    return {"event_id": event_id, "token": token, "sub": sub, "paid": paid, "pending": pending}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
