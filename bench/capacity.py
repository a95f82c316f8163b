"""The capacity model: a scripted on-sale in process, every DynamoDB request recorded with
the partition keys it touches (`bench.recorder`), scaled to a target rate.

The sale: checkouts on one ticket type (the functions' own handlers, moto in process, Stripe
answered in process by `FakeStripe`), payments and their webhooks (receipts included), holds
that lapse and are expired, then doors-open check-ins. Each phase's units per key are divided
by its requests and multiplied by its rate:

- on-sale: CHECKOUTS_PER_SECOND checkout requests on one type. The Stripe budget admits what
  it allows for PaymentIntent creation (`admitted`); the rest are answered 503 before any hold.
  Every admitted order is both paid (webhook) and, separately, counted as lapsing and expired,
  so the figures overstate both.
- the same with Stripe's limit raised so that STRESS_ADMITTED checkouts a second are admitted
  (what the keys of orders, holds and indexes must carry if Stripe raises the limits);
- doors-open: SCANS_PER_SECOND check-ins by code;
- hold release: LAPSED_AT_ONCE holds lapsing at once, released (no Stripe call) by the expiry
  job's workers, their PaymentIntents canceled afterwards at the background budget's rate;
- faults: a few checkouts with Stripe answering 429 to everything, DynamoDB throttling the
  hottest key (the budget's counters), a transaction conflict storm on the shards: the calls
  each costs per request (`bench.faults` injects them).

Keys that stand for one logical partition over time (the budget's per-second counters) are
counted as one. moto in process runs as the local stand-in runs it (a transaction backs up
its own items, not the whole table; a Query reads its partition), so the run grows with the
sample, not with its square; the recorder reads its item images from moto directly.
`python -m bench.capacity` prints the tables; `make bench` includes them.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bench.recorder import PARTITION_RCU, PARTITION_WCU, Recorder, Units, hottest, recording

CHECKOUTS_PER_SECOND = 5000
STRESS_ADMITTED = 1000
SCANS_PER_SECOND = 1000
TABLE_WCU_QUOTA = 40_000
TOP = 3  # keys shown per table/index
LAPSED_AT_ONCE = 10_000
# DynamoDB's latency inside AWS (single-digit ms a request; a transaction of several items
# more): an assumption, not measured here (moto is far slower). The local stack's figure
# (`python -m bench.release`) is measured.
LATENCY_MS = {"PutItem": 8, "UpdateItem": 8, "TransactWriteItems": 25, "Query": 10}
WEBHOOK_SECRET = "whsec_b"


class FakeStripe:
    """PaymentIntents answered in process, in the shapes `ticketing.payments` reads."""

    def __init__(self) -> None:
        self.intents: dict[str, dict[str, Any]] = {}
        self.requests: Counter = Counter()
        self._ids = itertools.count(1)
        self.v1 = self
        self.payment_intents = self
        self.throttled = False  # True: every request answered 429, as Stripe past its rate

    def _request(self, name: str) -> None:
        self.requests[name] += 1
        if self.throttled:
            import stripe

            raise stripe.RateLimitError("Too many requests", http_status=429)

    def create(self, params: dict[str, Any], options: dict[str, Any] | None = None) -> dict[str, Any]:
        self._request("payment_intents.create")
        key = (options or {}).get("idempotency_key")
        for intent in self.intents.values():
            if key and intent["_key"] == key:
                return intent
        intent_id = f"pi_{next(self._ids):08d}"
        self.intents[intent_id] = {
            "id": intent_id, "object": "payment_intent", "status": "requires_payment_method", "amount": params["amount"],
            "currency": params["currency"], "client_secret": f"{intent_id}_secret", "metadata": dict(params["metadata"]),
            "created": int(time.time()), "_key": key, "payment_method_types": ["card"],
        }
        return self.intents[intent_id]

    def retrieve(self, intent_id: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self._request("payment_intents.retrieve")
        return self.intents[intent_id]

    def cancel(self, intent_id: str, params: Any = None, options: Any = None) -> dict[str, Any]:
        self._request("payment_intents.cancel")
        intent = self.intents[intent_id]
        if intent["status"] not in ("succeeded", "canceled"):
            intent["status"] = "canceled"
        return intent

    def pay(self, intent_id: str) -> dict[str, Any]:
        intent = self.intents[intent_id]
        intent.update(status="succeeded", latest_charge=f"ch_{intent_id[3:]}")
        return intent


def signed(event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> tuple[str, str]:
    """A webhook body and its `Stripe-Signature`, made as Stripe makes them."""
    body = json.dumps(event)
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return body, f"t={stamp},v1={mac}"


PER_SECOND = re.compile(r"#\d{9,}(?=#|$)")


def one_partition_over_time(key: str) -> str:
    """`RATE#...#<epoch second>#<shard>` -> `RATE#...#<second>#<shard>`: the same counter."""
    return PER_SECOND.sub("#<second>", key)


@dataclass
class Phase:
    name: str
    requests: int
    units: dict[tuple[str, str], Units]
    calls: Counter


@dataclass
class Model:
    phases: dict[str, Phase] = field(default_factory=dict)
    admitted_per_second: float = 0.0
    inventory_shards: int = 0  # the ticket type's seat shards
    cancels_per_second: float = 0.0  # released holds' PaymentIntents canceled per second of budget
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> statuses, calls per request
    stripe_requests: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)

    def load(self, rates: dict[str, float]) -> dict[tuple[str, str], Units]:
        """Units a second per key with each phase at its rate (requests a second)."""
        total: dict[tuple[str, str], Units] = {}
        for name, rate in rates.items():
            phase = self.phases.get(name)
            if phase is None or rate <= 0:
                continue
            for key, used in phase.units.items():
                scaled = Units(used.wcu * rate / phase.requests, used.rcu * rate / phase.requests, 0)
                total.setdefault(key, Units()).add(scaled)
        return total

    def on_sale(self, requests_per_second: float, admitted_per_second: float) -> dict[str, float]:
        return {
            "checkout": admitted_per_second,
            "checkout_over_budget": requests_per_second - admitted_per_second,
            "webhook": admitted_per_second,
            "expiry": admitted_per_second,
            "expiry_cancel": admitted_per_second,
        }

    @staticmethod
    def doors_open(scans_per_second: float) -> dict[str, float]:
        return {"scan": scans_per_second}


# Keys that each stand for one order, ticket, buyer, Stripe event or idempotency record: at
# scale a second's requests touch as many different ones as there are requests.
ONE_PER_ENTITY = re.compile(r"^(ORDER|TICKET|EXPIRY|STRIPE_EVENT|CHARGE|HOLDER|INBOX|CUSTOMER|UNREAD)#|idempotency")
ENTITY_ID = re.compile(r"#.*$")


def spread_families(model: Model) -> list[tuple[re.Pattern[str], int]]:
    """Key families spread over a fixed number of partitions by a hash of an id, at random or
    by room (the last `#<k>`), and that number."""
    from ticketing import stripe_budget, table

    return [
        (re.compile(r"^EVENT#[^#]+#(ORDERS|TICKETS)#\d+$"), table.EVENT_INDEX_PARTITIONS),
        (re.compile(r"^(HOLDS|UNCANCELED)#\d+$"), table.HOLD_PARTITIONS),
        (re.compile(r"^STRIPE_EVENTS#\d+$"), table.STRIPE_EVENT_PARTITIONS),
        (re.compile(r"^SCANS#.+#\d+$"), table.SCAN_PARTITIONS),
        (re.compile(r"^RATE#.+#<second>#\d+$"), stripe_budget.SHARDS),  # the deployed limits are all over SHARDS
        (re.compile(r"^INV#[^#]+#\d+$"), model.inventory_shards),
    ]


def averaged(model: Model, load: dict[tuple[str, str], Units], entities_per_second: float) -> dict[tuple[str, str], Units]:
    """`load` with each family of keys replaced by its average key: what each of them carries
    at scale, which a small sample's busiest key does not tell (with 18 orders over 32 GSI3
    partitions the busiest holds 2 or 3 of them, a sixth of the load, not a 32nd; an order's own
    key stands for 1/18 of all orders). A spread family's total is divided by its partition
    count (`spread_families`); a family of one key per entity (`ONE_PER_ENTITY`) by the entities
    of a second at scale (`entities_per_second`, at least the keys the sample has); any other
    key is one shared partition (the event, a ticket type) and stays as it is. Keyed
    `(target, family)`."""
    families = spread_families(model)
    found: dict[tuple[str, str], Units] = {}
    keys: dict[tuple[str, str], set[str]] = {}
    divisor: dict[tuple[str, str], float] = {}
    for (target, key), used in load.items():
        family, count = key, 1.0
        for pattern, partitions in families:
            if pattern.match(key):
                family, count = key.rsplit("#", 1)[0] + "#<k>", float(partitions)
                break
        else:
            if ONE_PER_ENTITY.search(key):
                family, count = ENTITY_ID.sub("#<id>", key) if "#" in key else "<id>", 0.0
        name = (target, family)
        found.setdefault(name, Units()).add(Units(used.wcu, used.rcu, 0))
        keys.setdefault(name, set()).add(key)
        divisor[name] = count
    shares = {name: divisor[name] or max(entities_per_second, len(keys[name])) for name in found}
    return {name: Units(used.wcu / shares[name], used.rcu / shares[name], 0) for name, used in found.items()}


def _hottest(load: dict[tuple[str, str], Units]) -> dict[str, tuple[str, float, float]]:
    return hottest(load, 1, 1)


def _top(load: dict[tuple[str, str], Units], n: int) -> list[tuple[str, str, float, float]]:
    """The `n` hottest keys of each target (by their share of the partition limits)."""
    rows = []
    for target in sorted({target for target, _ in load}):
        keys = [(key, used.wcu, used.rcu) for (t, key), used in load.items() if t == target]
        keys.sort(key=lambda row: max(row[1] / PARTITION_WCU, row[2] / PARTITION_RCU), reverse=True)
        rows += [(target, key, wcu, rcu) for key, wcu, rcu in keys[:n]]
    return rows


def deployed_budget() -> dict[str, str]:
    """The Stripe budget's settings as template.yaml deploys them (its parameters' defaults)."""
    from bench.common import ROOT
    from local.template import load_template

    parameters = load_template(ROOT / "template.yaml").parameters
    names = {"STRIPE_RATE_TOTAL": "StripeRateTotal", "STRIPE_RATE_PER_ENDPOINT": "StripeRatePerEndpoint",
             "STRIPE_RATE_BACKGROUND_PERCENT": "StripeRateBackgroundPercent"}
    return {env: str(parameters[name]) for env, name in names.items() if name in parameters}


def run_model(checkouts: int = 100, over_budget: int = 300, lapses: int = 40, scans: int = 100) -> Model:
    """Play the sale once and record it. Ids are random, so the sharded keys land a little
    differently each run; with these sample sizes the hottest shard is overstated, not under."""
    import boto3
    from moto import mock_aws

    from bench.common import create_table_and_secrets, environment, moto_item
    from local.aws import like_the_stand_in
    from local.stack import _new_qr_keys
    from tests.conftest import load_function
    from tests.unit.conftest import ADMIN, Invoker
    from ticketing import checkout as checkout_domain
    from ticketing import clock, config, mail, payments, qr
    from ticketing.table import TicketTypeItem

    fake = FakeStripe()
    model = Model()
    rec = Recorder(read_item=moto_item)
    original_client = payments.client
    payments.client = lambda: fake
    settings = {
        "QR_SIGNING_SECRET_NAME": "bench/qr", "QR_PUBLIC_KEYS_PARAMETER": "/bench/qr-public", "SENDER_EMAIL": "tickets@bench.example",
        "POWERTOOLS_PARAMETERS_MAX_AGE": "300", "MAX_HELD_PER_CUSTOMER": "40",
        **deployed_budget(),
    }
    try:
        with mock_aws(), like_the_stand_in(), environment(settings):
            mail.reset_client()
            create_table_and_secrets()
            keys = _new_qr_keys()
            boto3.client("secretsmanager").create_secret(Name="bench/qr", SecretString=json.dumps(keys))
            boto3.client("ssm").put_parameter(Name="/bench/qr-public", Value=json.dumps(qr.public_document(keys)), Type="String")
            boto3.client("ses").verify_email_identity(EmailAddress="tickets@bench.example")
            catalogue = Invoker(load_function("catalogue"))
            buy = Invoker(load_function("checkout"))
            webhook = Invoker(load_function("webhook"))
            gate = Invoker(load_function("verify"))
            expire = load_function("expire_holds")
            _, event, _ = catalogue(
                "POST", "/api/events/",
                {"name": "On sale", "venue": "Arena", "currency": "usd", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T22:00:00Z"},
                claims=ADMIN,
            )
            _, ticket_type, _ = catalogue(
                "POST", f"/api/events/{event['id']}/ticket-types/", {"name": "GA", "price_cents": 2500, "capacity": 100_000}, claims=ADMIN,
            )
            basket = {"event_id": event["id"], "items": [{"ticket_type_id": ticket_type["id"], "qty": 2}]}
            model.inventory_shards = int(TicketTypeItem.get(*TicketTypeItem.key(event["id"], ticket_type["id"])).shards)
            counter = itertools.count()

            def checkout(expect: int) -> dict[str, Any]:
                n = next(counter)
                who = {"sub": f"buyer-{n}", "email": f"buyer{n}@example.com", "name": f"Buyer {n}", "email_verified": "true"}
                status, answer, headers = buy("POST", "/api/tickets/stripe/checkout/", basket, claims=who,
                                              headers={"idempotency-key": f"key-{n}"})
                model.statuses[status] += 1
                assert status == expect or (expect == 503 and status == 201), (status, answer)
                return answer

            def phase(name: str, requests: int) -> None:
                model.phases[name] = Phase(name, requests, rec.units(name, one_partition_over_time), rec.calls(name))

            checkout(201)  # warm: settings, secrets, clients
            with recording(rec):
                # Admitted checkouts, one a second (the budget admits each).
                start = clock.now().replace(microsecond=200_000)  # early in a second: no checkout at a second's edge
                paid: list[dict[str, Any]] = []
                lapsing: list[dict[str, Any]] = []
                with rec.phase("checkout"):
                    for n in range(checkouts + lapses):
                        clock.freeze(start + timedelta(seconds=n))
                        (paid if n < checkouts else lapsing).append(checkout(201))
                clock.freeze(None)
                # Payments and their webhooks (receipts sent inline).
                with rec.phase("webhook"):
                    for n, order in enumerate(paid):
                        intent = fake.pay(order["payment_intent_id"])
                        body, signature = signed({
                            "id": f"evt_{n:08d}", "object": "event", "type": "payment_intent.succeeded",
                            "data": {"object": {k: v for k, v in intent.items() if not k.startswith("_")}},
                        })
                        status, answer, _ = webhook("POST", "/api/tickets/webhook", raw_body=body, headers={"stripe-signature": signature})
                        assert status == 200 and answer["outcome"] == "paid", answer
                # Lapsed holds, released by the scheduled job (no Stripe call), then their
                # PaymentIntents canceled, paced by the background budget.
                # after the last hold's time (the checkouts' clock ran ahead of the real one)
                last_hold = start + timedelta(seconds=checkouts + lapses)
                lapsed_at = max(clock.now(), last_hold) + timedelta(minutes=config.settings().hold_minutes + 1)
                clock.freeze(lapsed_at)
                with rec.phase("expiry"):  # the job's own call, one worker (moto in process is not thread-safe)
                    released = checkout_domain.expire_lapsed(limit=expire.BATCH, time_left=lambda: 50)
                    assert released >= lapses, f"only {released} of {lapses} lapsed holds released"  # and the warm-up's
                with rec.phase("expiry_cancel"):
                    canceled = 0
                    for second in itertools.count():
                        if canceled >= released:
                            break
                        clock.freeze(lapsed_at.replace(microsecond=200_000) + timedelta(seconds=second))
                        done = checkout_domain.cancel_released(limit=expire.CANCEL_BATCH, time_left=lambda: 5.5)
                        assert done, f"only {canceled} of {released} PaymentIntents canceled"
                        canceled += done
                    model.cancels_per_second = canceled / (second or 1)
                clock.freeze(None)
                # Doors open: every paid ticket scanned once.
                codes = [_code(t) for order in paid for t in order["tickets"]][:scans]
                with rec.phase("scan"):
                    for code in codes:
                        status, answer, _ = gate("POST", "/api/tickets/checkin/", {"code": code, "gate": "North"},
                                                 claims={"sub": "scanner-1", "cognito:groups": "[scanner]"})
                        assert status == 200, answer
                # Over budget: every request of one second is spent, then the rest are turned away.
                clock.freeze(clock.now() + timedelta(minutes=1))
                model.admitted_per_second = _admitted_per_second()
                if model.admitted_per_second < CHECKOUTS_PER_SECOND:
                    for _ in range(4 * int(model.admitted_per_second)):  # every shard of the counters spent
                        checkout(503)
                    with rec.phase("checkout_over_budget"):
                        for _ in range(over_budget):
                            checkout(503)
                # Faults: what a checkout costs when Stripe answers 429 to everything, when the
                # budget's counters (the hottest key) are throttled, in a conflict storm.
                model.faults = _faults(rec, fake, checkout, phase)
                clock.freeze(None)
            phase("checkout", checkouts + lapses)
            if model.admitted_per_second < CHECKOUTS_PER_SECOND:
                phase("checkout_over_budget", over_budget)
            phase("webhook", len(paid))
            phase("expiry", released)
            phase("expiry_cancel", canceled)
            phase("scan", len(codes))
            model.stripe_requests = fake.requests
    finally:
        payments.client = original_client
        clock.freeze(None)
        mail.reset_client()
    return model


FAULT_REQUESTS = 5


def _faults(rec: Recorder, fake: FakeStripe, checkout: Any, phase: Any) -> dict[str, dict[str, Any]]:
    """Each fault for FAULT_REQUESTS checkouts (each in a second of its own, within the
    budget): the answers and the calls per request, DynamoDB's and Stripe's."""
    from bench.faults import CONFLICT, THROTTLED, dynamodb_fault
    from ticketing import clock
    from ticketing.lifecycle import writes

    pause, writes._pause = writes._pause, lambda attempt: None
    found: dict[str, dict[str, Any]] = {}
    scenarios = {
        "Stripe answers 429 to everything": None,
        "DynamoDB throttles the budget's counters (the hottest key)": (("BatchGetItem", "UpdateItem"), "RATE#", THROTTLED),
        "DynamoDB throttles the inventory shards": (("TransactWriteItems",), "INV#", THROTTLED),
        "transaction conflict storm on the shards": (("TransactWriteItems",), "INV#", CONFLICT),
    }
    try:
        for name, fault in scenarios.items():
            before = Counter(fake.requests)
            statuses: Counter = Counter()
            with rec.phase(f"fault: {name}"):
                for _ in range(FAULT_REQUESTS):
                    clock.freeze(clock.now() + timedelta(seconds=1))
                    fake.throttled = fault is None
                    try:
                        if fault is None:
                            answer = checkout(503)
                        else:
                            with dynamodb_fault(*fault):
                                answer = checkout(503)
                    finally:
                        fake.throttled = False
                    statuses[f"503 {answer.get('code')}"] += 1
            phase(f"fault: {name}", FAULT_REQUESTS)
            stripe_calls = {k: v - before[k] for k, v in fake.requests.items() if v - before[k]}
            found[name] = {"answers": dict(statuses), "stripe": {k: v / FAULT_REQUESTS for k, v in stripe_calls.items()}}
    finally:
        writes._pause = pause
    return found


def _code(ticket: dict[str, Any]) -> str:
    from ticketing.table import TicketItem

    return TicketItem.get(*TicketItem.key(ticket["id"])).qr_payload


def _admitted_per_second() -> float:
    try:
        from ticketing import stripe_budget
    except ImportError:  # before the budget existed: every checkout reached Stripe
        return CHECKOUTS_PER_SECOND
    return stripe_budget.allowance("payment_intents.create")


def _rows(load: dict[tuple[str, str], Units]) -> list[tuple[str, str, float, float]]:
    return [(target, key, wcu, rcu) for target, (key, wcu, rcu) in sorted(_hottest(load).items())]


def table_total(load: dict[tuple[str, str], Units]) -> float:
    """Write units a second on the table itself (indexes have their own throughput)."""
    return sum(used.wcu for (target, _), used in load.items() if "/" not in target)


def worst(load: dict[tuple[str, str], Units]) -> tuple[float, float]:
    """The hottest key's write and read units a second, over every target."""
    rows = _rows(load)
    return max((r[2] for r in rows), default=0.0), max((r[3] for r in rows), default=0.0)


@dataclass
class Release:
    """How fast LAPSED_AT_ONCE lapsed holds come back (`release_figures`)."""

    calls: dict[str, float]  # DynamoDB calls per release
    latency_ms: float  # per release, one worker, at LATENCY_MS
    workers: int
    job_per_second: float  # the job's workers at that latency
    dynamodb_per_second: float  # what the hottest key a release writes allows
    hottest: str
    per_second: float  # the lesser
    seconds: float  # to release LAPSED_AT_ONCE
    grace: int
    worst_seconds: float  # from lapsing to released, at worst: grace + a minute's wait for the run + seconds
    cancels_per_second: float  # what the budget allows the cancels at most
    cancel_seconds: float
    cancels_measured: float  # what the model's run got through a second (its budget samples leave some unused)


def release_figures(model: Model) -> Release:
    from ticketing import checkout
    from tests.conftest import load_function

    from ticketing import stripe_budget
    from ticketing.table import HOLD_PARTITIONS

    workers = load_function("expire_holds").WORKERS
    phase = model.phases["expiry"]
    calls = {k.split(".")[1]: v / phase.requests for k, v in phase.calls.items() if k.startswith("dynamodb.")}
    # The sample's few orders need a Query of every partition; at LAPSED_AT_ONCE it is a page of PAGE.
    calls["Query"] = (HOLD_PARTITIONS + LAPSED_AT_ONCE / checkout.PAGE) / LAPSED_AT_ONCE
    latency = sum(LATENCY_MS.get(op, 10) * n for op, n in calls.items())
    job = workers * 1000 / latency
    bound, hottest_key = float("inf"), ""
    for (target, key), used in phase.units.items():
        wcu, rcu = used.wcu / phase.requests, used.rcu / phase.requests
        limit = min(PARTITION_WCU / wcu if wcu else float("inf"), PARTITION_RCU / rcu if rcu else float("inf"))
        if limit < bound:
            bound, hottest_key = limit, f"{target} `{key}`"
    rate = min(job, bound)
    seconds = LAPSED_AT_ONCE / rate
    cancels = stripe_budget.allowance("payment_intents.cancel", stripe_budget.BACKGROUND)
    return Release(
        calls=calls, latency_ms=latency, workers=workers, job_per_second=job, dynamodb_per_second=bound,
        hottest=hottest_key, per_second=rate, seconds=seconds, grace=checkout.GRACE_SECONDS,
        worst_seconds=checkout.GRACE_SECONDS + 60 + seconds, cancels_per_second=cancels,
        cancel_seconds=LAPSED_AT_ONCE / cancels, cancels_measured=model.cancels_per_second,
    )


def scenarios(model: Model) -> dict[str, dict[tuple[str, str], Units]]:
    admitted = model.admitted_per_second
    release = release_figures(model)
    return {
        f"on-sale: {CHECKOUTS_PER_SECOND}/s checkouts, {admitted:.0f}/s admitted by the Stripe budget":
            model.load(model.on_sale(CHECKOUTS_PER_SECOND, admitted)),
        f"on-sale with Stripe's limit raised: {CHECKOUTS_PER_SECOND}/s checkouts, {STRESS_ADMITTED}/s admitted":
            model.load(model.on_sale(CHECKOUTS_PER_SECOND, STRESS_ADMITTED)),
        f"doors open: {SCANS_PER_SECOND}/s check-ins": model.load(Model.doors_open(SCANS_PER_SECOND)),
        f"hold release: {LAPSED_AT_ONCE:,} lapsed at once, released at {release.per_second:,.0f}/s, canceled at"
        f" {release.cancels_per_second:.0f}/s": model.load({"expiry": release.per_second, "expiry_cancel": release.cancels_per_second}),
    }


def report(model: Model) -> str:
    lines = ["\nCapacity model (`python -m bench.capacity`): the hottest partition keys per table/index, units a second",
             f"(limits per partition: {PARTITION_WCU} WCU/s, {PARTITION_RCU} RCU/s; table quota {TABLE_WCU_QUOTA} WCU/s)"]
    for title, load in scenarios(model).items():
        lines += [f"\n{title}", "| table/index | hottest key | WCU/s | RCU/s |", "|---|---|---|---|"]
        for target, key, wcu, rcu in _top(load, TOP):
            flag = " OVER" if wcu > PARTITION_WCU or rcu > PARTITION_RCU else ""
            lines.append(f"| {target} | `{key}` | {wcu:,.0f} | {rcu:,.0f}{flag} |")
        total = table_total(load)
        flag = " OVER (raise the table's quota)" if total > TABLE_WCU_QUOTA else ""
        lines.append(f"| table total | | {total:,.0f} of {TABLE_WCU_QUOTA:,}{flag} | |")
    stress = averaged(model, model.load(model.on_sale(CHECKOUTS_PER_SECOND, STRESS_ADMITTED)), STRESS_ADMITTED)
    lines += [f"\non-sale with Stripe's limit raised ({STRESS_ADMITTED}/s admitted), each family of keys averaged over its partitions (`averaged`;"
              " the unit test's figure, under half the limits)", "| table/index | key family | WCU/s | RCU/s |", "|---|---|---|---|"]
    for (target, family), used in sorted(stress.items(), key=lambda kv: max(kv[1].wcu / PARTITION_WCU, kv[1].rcu / PARTITION_RCU),
                                         reverse=True)[:2 * TOP]:
        lines.append(f"| {target} | `{family}` | {used.wcu:,.0f} | {used.rcu:,.0f} |")
    release = release_figures(model)
    calls = ", ".join(f"{op} x{n:.2f}" for op, n in sorted(release.calls.items()))
    lines += [
        f"\nHold release, {LAPSED_AT_ONCE:,} lapsed at once (seats first, no Stripe call; PaymentIntents canceled after):",
        f"- DynamoDB calls per release (Query: at that scale): {calls}: about {release.latency_ms:.0f} ms at AWS's latency (assumed:"
        f" {', '.join(f'{k} {v} ms' for k, v in LATENCY_MS.items())})",
        f"- the expiry job's {release.workers} workers: {release.job_per_second:,.0f} releases a second; DynamoDB allows"
        f" {release.dynamodb_per_second:,.0f} a second (hottest key {release.hottest}, the sample's busiest)",
        f"- lapsed holds returned: {release.per_second:,.0f} a second: {LAPSED_AT_ONCE:,} in {release.seconds:.0f} s; at worst"
        f" {release.worst_seconds:.0f} s after lapsing ({release.grace} s grace + up to 60 s to the next run + {release.seconds:.0f} s)"
        f" {'UNDER' if release.worst_seconds < 120 else 'OVER'} 2 minutes",
        f"- their PaymentIntents canceled at up to {release.cancels_per_second:.0f} a second (the cancel endpoint's rate within"
        f" the Stripe budget's background share; {release.cancels_measured:.0f} a second in this run): {release.cancel_seconds:.0f} s"
        " for all; a payment meanwhile is a late payment",
    ]
    if model.faults:
        lines += ["\nFaults (per checkout request; each answered 503 with Retry-After, nothing held)",
                  "| fault | answers | DynamoDB calls | Stripe calls |", "|---|---|---|---|"]
        for name, found in model.faults.items():
            phase = model.phases[f"fault: {name}"]
            dynamo = ", ".join(f"{k.split('.')[1]} x{v / phase.requests:.2f}" for k, v in sorted(phase.calls.items())
                               if k.startswith("dynamodb."))
            stripe_calls = ", ".join(f"{k} x{v:.2f}" for k, v in sorted(found["stripe"].items())) or "none"
            answers = ", ".join(f"{k} x{v}" for k, v in sorted(found["answers"].items()))
            lines.append(f"| {name} | {answers} | {dynamo} | {stripe_calls} |")
    lines.append("\nDynamoDB calls per request (recorded)")
    for phase in model.phases.values():
        if phase.name.startswith("fault: "):
            continue
        shown = ", ".join(f"{k.split('.')[1]} x{v / phase.requests:.2f}" for k, v in sorted(phase.calls.items()) if k.startswith("dynamodb."))
        lines.append(f"- {phase.name}: {shown}")
    return "\n".join(lines)


def run() -> str:
    import contextlib
    import io

    # About 50 s of CPU (two to four minutes on this shared machine): moto in process as the
    # local stand-in runs it (`local.aws.like_the_stand_in`), the recorder's item images
    # read from moto directly (`moto_item`). The functions' metrics lines are kept off the report.
    with contextlib.redirect_stdout(io.StringIO()):
        model = run_model(checkouts=100, over_budget=300, lapses=40, scans=100)
    return report(model)


if __name__ == "__main__":
    from bench.common import setup

    setup()
    print(run())
