"""The shop as an organiser, a customer and Stripe.js use it: one copy for the unit tests
(tests/unit/world.py, every function in process) and the integration tests (the local stack
behind its gateway).

Each function takes what it needs of two things both sides provide as fixtures:
- `api`: a client for the product's routes (`api.token(groups, **claims)`,
  `api.get/post/patch/delete(path, token=..., json=..., headers=...)`);
- `stack`: where the product runs. Besides `stripe_url`, `client(service)`, `shards(type_id)`,
  `mail()` (what SES accepted), `table` and `stripe_keys` (secret, publishable and webhook
  keys), it answers for the two ways the sides differ, so that no helper here needs to know which side it is on:
  - `stack.payment_confirmed(order, confirmed)`: what Stripe does once Stripe.js has confirmed
    a payment. The local stack's Stripe stand-in delivers the signed webhook to the gateway by
    itself; the unit world, which has no Stripe able to reach it, delivers it there and then.
  - `stack.eventually(check)`: `check`'s answer once what the product does after answering has
    happened. The unit world has done it all when a call answers (it checks once); the local
    stack finishes webhooks, queues and schedules in the background (it polls until true).
"""

from __future__ import annotations

import copy
import email
import email.policy
import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests
import stripe

from local.stack import STRIPE_KEYS

CHECKOUT = "/api/tickets/stripe/checkout/"
WEBHOOK = "/api/tickets/webhook/"
CARDS = "/api/me/payment-methods/"
VISA = "4242424242424242"
# What the webhook's secret holds on both sides, so an event signs the same way on each.
WEBHOOK_SECRET = STRIPE_KEYS["webhook_secret"]
DISPUTE_FIXTURE = Path(__file__).resolve().parent / "fixtures/stripe/fixtures3-dispute.json"


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


# ------------------------------------------------------------------ the customer's account
def card_holder(api) -> tuple[str, str]:
    """A fresh customer who will save cards: (sub, token)."""
    sub = f"cards-{uuid.uuid4().hex[:8]}"
    return sub, api.token([], sub=sub, email=f"{sub}@example.com", name="Card Holder")


def account_key(sub: str) -> str:
    """The account id the API files a customer's Stripe customer under (its metadata's `account`)."""
    return hashlib.sha256(sub.encode()).hexdigest()[:32]


def save_card(api, stack, token: str, number: str = VISA) -> str:
    """What the front end does: a SetupIntent from us, then Stripe.js with the publishable key.
    Answers the saved PaymentMethod's id."""
    key = stack.stripe_keys["publishable_key"]
    setup = api.post(f"{CARDS}setup/", token=token)
    assert setup.status_code == 201, setup.text
    body = setup.json()
    method = requests.post(f"{stack.stripe_url}/v1/payment_methods", timeout=10, data={
        "key": key, "type": "card", "card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2034", "card[cvc]": "123"})
    assert method.status_code == 200, method.text
    confirmed = requests.post(f"{stack.stripe_url}/v1/setup_intents/{body['setup_intent_id']}/confirm", timeout=10, data={
        "key": key, "payment_method": method.json()["id"], "client_secret": body["client_secret"]})
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded", confirmed.text
    return method.json()["id"]


# ------------------------------------------------------------------ Stripe, as Stripe
def stripe_client(stack) -> stripe.StripeClient:
    """Stripe with the API's own secret key, for reading (and changing) what Stripe holds."""
    return stripe.StripeClient(stack.stripe_keys["secret_key"], base_addresses={"api": stack.stripe_url})


def stripe_customers(stack, sub: str) -> list[str]:
    """The ids of the Stripe customers filed under this customer's account."""
    listed = stripe_client(stack).v1.customers.list(params={"limit": 100}).auto_paging_iter()
    return [c.id for c in listed if (c.to_dict().get("metadata") or {}).get("account") == account_key(sub)]


def signed(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for `payload`, as Stripe signs it."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"


def event_for(intent_id: str, kind: str = "payment_intent.succeeded", obj: dict | None = None) -> str:
    """A Stripe event in today's shape (fixtures3.json's envelope) for `intent_id`."""
    return json.dumps(
        {
            "id": f"evt_test_{uuid.uuid4().hex[:16]}", "object": "event", "api_version": "2024-06-20",
            "created": int(time.time()), "livemode": False, "pending_webhooks": 1, "type": kind,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": obj or {"id": intent_id, "object": "payment_intent"}},
        }
    )


def deliver(api, payload: str, signature: str | None):
    """A webhook delivery as Stripe makes it (no signature header for None): the answer."""
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return api.post(WEBHOOK, data=payload, headers=headers)


def dispute(stack, charge_id: str, intent_id: str, status: str, dispute_id: str) -> dict:
    """The dispute at the Stripe stand-in (opened, or moved to `status`) and an event's
    object for it, shaped like Stripe's own fixture."""
    at_stripe = requests.post(f"{stack.stripe_url}/_config/disputes", json={
        "id": dispute_id, "charge": charge_id, "payment_intent": intent_id, "status": status, "amount": 6000}, timeout=10)
    assert at_stripe.status_code == 200, at_stripe.text
    made = copy.deepcopy(json.loads(DISPUTE_FIXTURE.read_text())["dispute"])
    made.update({"id": dispute_id, "charge": charge_id, "payment_intent": intent_id, "status": status, "amount": 6000})
    return made


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


def holder_count(stack, sub: str, event_id: str) -> int:
    """The seats a customer holds (not yet paid) for an event, by the table's count."""
    item = stack.client("dynamodb").get_item(
        TableName=stack.table, Key={"PK": {"S": f"HOLDER#{sub}"}, "SK": {"S": f"EVENT#{event_id}"}}, ConsistentRead=True
    ).get("Item")
    return int(item["held"]["N"]) if item else 0


def lapse(stack, order_id: str) -> None:
    """Move an order's hold into the past, as if its 15 minutes had gone by."""
    past = "2000-01-01T00:00:00Z"
    stack.client("dynamodb").update_item(
        TableName=stack.table, Key={"PK": {"S": f"ORDER#{order_id}"}, "SK": {"S": "META"}},
        UpdateExpression="SET expires_at = :e, GSI2SK = :s",
        ExpressionAttributeValues={":e": {"S": past}, ":s": {"S": f"{past}#{order_id}"}},
    )


def stripe_events(stack, *object_ids: str) -> list[dict[str, str]]:
    """The Stripe events the webhook has recorded about these objects (any state)."""
    from ticketing.table import stripe_events_partitions

    ddb, found = stack.client("dynamodb"), []
    for partition in stripe_events_partitions():
        start = None
        while True:
            page = ddb.query(TableName=stack.table, IndexName="GSI1", KeyConditionExpression="GSI1PK = :p",
                             ExpressionAttributeValues={":p": {"S": partition}}, **({"ExclusiveStartKey": start} if start else {}))
            found += [{k: next(iter(v.values())) for k, v in item.items()}
                      for item in page["Items"] if item.get("object_id", {}).get("S") in object_ids]
            start = page.get("LastEvaluatedKey")
            if not start:
                break
    return found


def payment_processed(stack, order: dict) -> bool:
    """True once every Stripe event about the order's payment is processed (and there is one)."""
    events = stripe_events(stack, order["payment_intent_id"])
    return bool(events) and all(e["state"] == "processed" for e in events)


def receipts_for(stack, order_id: str) -> list[email.message.EmailMessage]:
    """The receipts SES has accepted for an order (parsed MIME messages)."""
    found = []
    for message in stack.mail():
        parsed = email.message_from_string(message["raw"], policy=email.policy.default)
        if parsed.get("X-Ticketing-Order") == order_id and str(parsed["Subject"]).startswith("Your tickets"):
            found.append(parsed)
    return found


def refund_notices(stack, order_id: str) -> list[dict[str, str]]:
    """The refund notices SES has accepted for an order (raw)."""
    return [m for m in stack.mail() if f"Subject: Refund for order {order_id}" in m["raw"]]


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


def refund(api, ctx: dict, body: dict | None = None, token: str | None = None, **headers: str):
    """A refund of `paid_for_refund`'s order (all of it unless `body` says), by its owner unless `token`."""
    return api.post(f"/api/orders/{ctx['order']['order_id']}/refund/", token=token or ctx["token"], json=body or {}, headers=headers)


def order_state(api, ctx: dict) -> dict:
    """`paid_for_refund`'s order as its owner sees it."""
    return order_of(api, ctx["token"], ctx["order"]["order_id"])


def stripe_refunds(stack, ctx: dict) -> list:
    """The refunds Stripe holds for `paid_for_refund`'s payment."""
    return stripe_client(stack).v1.refunds.list(params={"payment_intent": ctx["order"]["payment_intent_id"]}).data


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


def decode_qr(png: bytes) -> str:
    """The text of the one QR code in a PNG image. QR codes only, as the gate's scanners
    read them: with every format on, zxing finds a 4-digit ITF barcode in the modules of
    about one QR code in 200."""
    import io

    import zxingcpp
    from PIL import Image

    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) == 1, found
    return found[0].text


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
