"""Soak: a whole sale on the local stack, then the invariants that must hold.

    make soak                       (2,000 buyers for 500 seats; starts its own stack)
    python -m bench.soak --buyers 200 --seats 60

64 buyers at a time (`--workers`) check out over three ticket types, each waiting at
most API Gateway's 30 s; some cards decline, some buyers
abandon (their holds lapse), webhooks are delivered again and out of order, some orders
are partly refunded, one is disputed, and the tickets are scanned at several gates (some
twice, at two gates at once). At the end it checks and prints:
  0. every checkout answered 201 or 409 (anything else, a timeout included, is a failure);
  1. no type oversold: remaining + held + sold == capacity per type, nothing negative;
  2. every paid order has valid tickets or a refund;
  3. money taken minus money refunded (Stripe) == the paid orders' value (ours);
  4. every ticket checked in at most once;
  5. one receipt per paid order.
It exits non-zero on any violation. A smaller run is part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests

PK_CARD_OK, PK_CARD_DECLINE = "4242424242424242", "4000000000000341"
# Longer than the stand-in's webhook retries take to pass a 60 s lease (about two minutes).
SETTLE_SECONDS = 180
CLIENT_TIMEOUT = 30  # API Gateway's own integration timeout: no client waits longer
BUYERS_AT_ONCE = 64


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    invariants: dict[str, bool] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(self.invariants.values())

    def render(self) -> str:
        lines = ["| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(self.counts.items())]
        lines += [f"| invariant: {k} | {'holds' if v else 'VIOLATED'} |" for k, v in self.invariants.items()]
        return "\n".join(lines + self.details[:20])


class Sale:
    def __init__(self, stack: Any, rng: random.Random) -> None:
        self.stack, self.rng = stack, rng
        self.http = requests.Session()
        self.http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=256))

    def call(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.stack.api_url + path, headers=headers, timeout=CLIENT_TIMEOUT, **kwargs)

    def pay(self, order: dict, card: str) -> None:
        from local.stack import STRIPE_KEYS

        pk = STRIPE_KEYS["publishable_key"]
        method = self.http.post(
            f"{self.stack.stripe_url}/v1/payment_methods", auth=(pk, ""), timeout=CLIENT_TIMEOUT,
            data={"type": "card", "card[number]": card, "card[exp_month]": "12", "card[exp_year]": "2034", "card[cvc]": "123"},
        ).json()
        self.http.post(
            f"{self.stack.stripe_url}/v1/payment_intents/{order['payment_intent_id']}/confirm", auth=(pk, ""), timeout=CLIENT_TIMEOUT,
            data={"payment_method": method["id"], "client_secret": order["client_secret"]},
        )


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _signed(payload: str) -> str:
    import hashlib
    import hmac

    from local.stack import STRIPE_KEYS

    timestamp = int(time.time())
    digest = hmac.new(STRIPE_KEYS["webhook_secret"].encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def run(stack: Any, buyers: int, seats: int, gates: int = 3, seed: int = 7, workers: int = BUYERS_AT_ONCE) -> Report:
    from local import stack as stack_module

    rng = random.Random(seed)
    sale = Sale(stack, rng)
    report = Report()
    admin = stack.token(f"soak-admin-{uuid.uuid4().hex[:4]}", ["admin"])
    start = datetime.now(timezone.utc) + timedelta(days=10)
    event = sale.call("POST", "/api/events/", admin, json={
        "name": f"Soak {uuid.uuid4().hex[:6]}", "venue": "Arena", "currency": "usd",
        "starts_at": _iso(start), "ends_at": _iso(start + timedelta(hours=5)),
    }).json()
    split = [seats // 2, seats * 3 // 10, seats - seats // 2 - seats * 3 // 10]
    types = []
    for name, capacity, price in zip(("Floor", "Stands", "Box"), split, (3000, 2000, 9000)):
        made = sale.call("POST", f"/api/events/{event['id']}/ticket-types/", admin,
                         json={"name": name, "price_cents": price, "capacity": capacity, "max_per_order": 4}).json()
        types.append((made["id"], capacity))

    plans = [(rng.choice(types)[0], rng.randint(1, 3), rng.random()) for _ in range(buyers)]

    def buyer(index: int) -> dict | None:
        type_id, qty, fate = plans[index]
        token = stack.token(f"soak-{index}-{uuid.uuid4().hex[:4]}", [])
        try:
            answer = sale.call("POST", "/api/tickets/stripe/checkout/", token, json={"event_id": event["id"], "items": [{"ticket_type_id": type_id, "qty": qty}]})
        except requests.RequestException as exc:  # no answer within API Gateway's 30 s, or none at all: a failure
            report.counts[f"checkout failed: {type(exc).__name__}"] += 1
            return None
        if answer.status_code in (201, 409):
            report.counts[f"checkout {answer.status_code}"] += 1
        else:
            report.counts[f"checkout failed: {answer.status_code}"] += 1
            report.details.append(f"checkout answered {answer.status_code}: {answer.text[:200]}")
        if answer.status_code != 201:
            return None
        order = answer.json()
        if fate < 0.1:
            sale.pay(order, PK_CARD_DECLINE)
            kind = "declined"
        elif fate < 0.2:
            kind = "abandoned"
        else:
            sale.pay(order, PK_CARD_OK)
            kind = "paid"
        report.counts[f"orders {kind}"] += 1
        return {**order, "kind": kind, "token": token}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        orders = [o for o in pool.map(buyer, range(buyers)) if o]
    paid = [o for o in orders if o["kind"] == "paid"]

    def settled(order: dict) -> bool:
        return sale.call("GET", f"/api/orders/{order['order_id']}/", order["token"]).json()["status"] != "pending"

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(settled(o) for o in paid):
        time.sleep(1)

    # Duplicate and reordered webhooks: stale failures and repeated successes.
    replays = []
    for order in rng.sample(paid, min(20, len(paid))):
        for kind in ("payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.succeeded"):
            replays.append(json.dumps({"id": f"evt_soak_{uuid.uuid4().hex[:12]}", "object": "event", "type": kind,
                                       "created": int(time.time()), "data": {"object": {"id": order["payment_intent_id"], "object": "payment_intent"}}}))
    rng.shuffle(replays)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for answer in pool.map(lambda p: sale.call("POST", "/api/tickets/webhook/", data=p, headers={"Stripe-Signature": _signed(p), "Content-Type": "application/json"}), replays + replays[:10]):
            report.counts[f"webhook replays {answer.status_code}"] += 1

    # Abandoned and declined holds lapse: move their time on, then run the expiry job.
    ddb = stack.client("dynamodb")
    past = "2000-01-01T00:00:00Z"
    for order in orders:
        if order["kind"] == "paid":
            continue
        try:
            ddb.update_item(
                TableName=stack_module.TABLE, Key={"PK": {"S": f"ORDER#{order['order_id']}"}, "SK": {"S": "META"}},
                UpdateExpression="SET expires_at = :e, GSI2SK = :s", ConditionExpression="#st = :p",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues={":e": {"S": past}, ":s": {"S": f"{past}#{order['order_id']}"}, ":p": {"S": "pending"}},
            )
        except ddb.exceptions.ConditionalCheckFailedException:
            pass  # already closed
    for _ in range(3):
        sale.call("POST", "/_local/invoke/ExpireHoldsFunction", json={})

    # Partial refunds and a dispute.
    for order in rng.sample(paid, max(1, len(paid) // 20)):
        answer = sale.call("POST", f"/api/orders/{order['order_id']}/refund/", admin, json={"amount_cents": order["total_cents"] // 2, "reason": "other"})
        report.counts[f"partial refunds {answer.status_code}"] += 1
    disputed = rng.choice(paid) if paid else None
    if disputed:
        charge = sale.call("GET", f"/api/orders/{disputed['order_id']}/", disputed["token"]).json()["payment"]["charge_id"]
        payload = json.dumps({"id": f"evt_soak_dp_{uuid.uuid4().hex[:8]}", "object": "event", "type": "charge.dispute.created", "created": int(time.time()),
                              "data": {"object": {"id": f"dp_soak_{uuid.uuid4().hex[:8]}", "object": "dispute", "charge": charge,
                                                  "payment_intent": disputed["payment_intent_id"], "status": "needs_response", "amount": disputed["total_cents"]}}})
        report.counts[f"dispute {sale.call('POST', '/api/tickets/webhook/', data=payload, headers={'Stripe-Signature': _signed(payload)}).status_code}"] += 1

    # Scanning at several gates; a tenth of the tickets at two gates at once.
    scanner = stack.token("soak-scanner", ["scanner"])
    tickets = _tickets(stack, event["id"])
    admissions: Counter = Counter()
    scans = []
    for ticket in tickets:
        if ticket.get("qr_payload"):
            scans.append((ticket, f"gate-{rng.randint(1, gates)}"))
            if rng.random() < 0.1:
                scans.append((ticket, f"gate-{rng.randint(1, gates)}"))
    rng.shuffle(scans)

    def scan(item: tuple[dict, str]) -> None:
        ticket, gate = item
        answer = sale.call("POST", "/api/tickets/checkin/", scanner, json={"code": ticket["qr_payload"], "gate": gate})
        report.counts[f"scans {answer.status_code}"] += 1
        if answer.status_code == 200:
            admissions[ticket["ticket_id"]] += 1

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(scan, scans))

    _check(stack, sale, report, event, types, orders, admissions)
    return report


def _tickets(stack: Any, event_id: str) -> list[dict]:
    """Every ticket of the event, from its GSI3 partitions (as the attendee list reads them)."""
    from local import stack as stack_module
    from ticketing.table import event_index_partitions

    items = []
    ddb = stack.client("dynamodb")
    for partition in event_index_partitions(event_id, "TICKETS"):
        start = None
        while True:
            page = ddb.query(TableName=stack_module.TABLE, IndexName="GSI3", KeyConditionExpression="GSI3PK = :p",
                             ExpressionAttributeValues={":p": {"S": partition}},
                             **({"ExclusiveStartKey": start} if start else {}))
            items += [{k: next(iter(v.values())) for k, v in item.items()} for item in page["Items"]]
            start = page.get("LastEvaluatedKey")
            if not start:
                break
    return items


def _receipts(stack: Any) -> Counter:
    """order id -> receipts the AWS stand-in has accepted for it."""
    receipts: Counter = Counter()
    for message in requests.get(f"{stack.aws_url}/_local/mail", timeout=30).json()["messages"]:
        raw = message.get("raw") or ""
        if "Subject: Your tickets" in raw:
            for line in raw.splitlines():
                if line.startswith("X-Ticketing-Order:"):
                    receipts[line.split(":", 1)[1].strip()] += 1
    return receipts


def _check(stack: Any, sale: Sale, report: Report, event: dict, types: list, orders: list[dict], admissions: Counter) -> None:
    # A webhook delivery cut off mid-way (a function timing out under load) is finished by
    # Stripe's next retry once its lease ends: wait for that before judging.
    paid_ids = [o["order_id"] for o in orders if o["kind"] == "paid"]
    deadline = time.monotonic() + SETTLE_SECONDS
    receipts = _receipts(stack)
    while any(receipts[oid] == 0 for oid in paid_ids) and time.monotonic() < deadline:
        time.sleep(2)
        receipts = _receipts(stack)
    oversold = False
    for type_id, capacity in types:
        shards = stack.shards(type_id)
        remaining, held, sold = (sum(s[name] for s in shards) for name in ("remaining", "held", "sold"))
        report.counts[f"type {type_id[-6:]}: sold/held/remaining of {capacity}"] = f"{sold}/{held}/{remaining}"
        if remaining + held + sold != capacity or min(s["remaining"] for s in shards) < 0 or sold + held > capacity:
            oversold = True
    report.invariants["no type oversold"] = not oversold
    report.invariants["every checkout answered 201 or 409 within 30 s"] = not any(k.startswith("checkout failed") for k in report.counts)

    tickets = {t["ticket_id"]: t for t in _tickets(stack, event["id"])}
    money_ours, money_stripe, missing = 0, 0, []
    from local.stack import STRIPE_KEYS
    import stripe

    client = stripe.StripeClient(STRIPE_KEYS["secret_key"], base_addresses={"api": stack.stripe_url})
    for order in orders:
        state = sale.call("GET", f"/api/orders/{order['order_id']}/", order["token"]).json()
        status = state["status"]
        report.counts[f"final orders {status}"] += 1
        mine = [tickets[t["id"]] for t in state["tickets"]]
        if status in ("paid", "partially_refunded"):
            if not all(t["status"] in ("valid", "used") for t in mine):
                missing.append(order["order_id"])
        if status in ("paid", "partially_refunded", "refunded", "disputed"):
            money_ours += state["total_cents"] - state["refunded_cents"]
        intent = client.v1.payment_intents.retrieve(order["payment_intent_id"])
        if intent.status == "succeeded":
            refunded = sum(r.amount for r in client.v1.refunds.list(params={"payment_intent": intent.id}).data)
            money_stripe += intent.amount - refunded
    report.invariants["every paid order has valid tickets or a refund"] = not missing
    report.counts["money kept: Stripe / orders (cents)"] = f"{money_stripe} / {money_ours}"
    report.invariants["money taken minus refunded equals the paid orders"] = money_stripe == money_ours
    report.invariants["every ticket checked in at most once"] = all(n <= 1 for n in admissions.values()) and all(
        (t["status"] == "used") == (admissions[t["ticket_id"]] == 1) for t in tickets.values() if t["status"] in ("valid", "used")
    )
    report.invariants["one receipt per paid order"] = all(receipts[oid] == 1 for oid in paid_ids)
    from local.stack import TABLE
    from tests import invariants

    shared = invariants.problems(stack.client("dynamodb"), TABLE, invariants.stripe_kept(client),
                                 orders=[o["order_id"] for o in orders], types=[t for t, _ in types], only=True)
    report.invariants["the race tests' invariants (tests/invariants.py): seats, money, admissions"] = not shared
    report.details += shared[:5]
    report.counts["receipts sent"] = sum(receipts[oid] for oid in paid_ids)
    if missing:
        report.details.append(f"orders without valid tickets: {missing[:5]}")


def main(argv: list[str] | None = None) -> int:
    from local.ports import free_port
    from local.stack import Stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buyers", type=int, default=2000)
    parser.add_argument("--seats", type=int, default=500)
    parser.add_argument("--workers", type=int, default=BUYERS_AT_ONCE, help="buyers at once")
    args = parser.parse_args(argv)
    stack = Stack(api_port=free_port(), stripe_port=free_port(), aws_port=free_port(), quiet=True, seed_demo=False, state_dir=Path(".local/soak"),
                  extra_env={"MAX_HELD_PER_CUSTOMER": "20", "STRIPE_RATE_TOTAL": "10000", "STRIPE_RATE_PER_ENDPOINT": "10000"}).start()
    began = time.monotonic()
    try:
        report = run(stack, args.buyers, args.seats, workers=args.workers)
    finally:
        stack.stop()
    print(f"soak: {args.buyers} buyers for {args.seats} seats, {args.workers} at once, in {time.monotonic() - began:.0f} s")
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
