"""Least privilege, measured: every function's policy in template.yaml is exactly what its
code needs, nothing missing and nothing extra.

The local gateway gives each function its own access key (`AKLOCAL<FunctionLogicalId>`)
and the AWS stand-in records, for every signed request, the IAM authorizations AWS would
check (a transaction as PutItem / UpdateItem / DeleteItem / ConditionCheckItem per item, a
Query on an index as the index's ARN, an S3 read of a missing object as s3:ListBucket too,
SES v2 SendEmail as ses:SendEmail on the identity and the configuration set): see
local/aws.py. A scenario drives every function through the code paths that need each
permission (checkout, a free order, pay, webhook, receipt and its retry, a bounce, refund, dispute,
an event's change told to its ticket holders, event cancel, tickets and QR codes, verify,
check-in, offline upload, expiry, organiser reports, vouchers, waiting lists and their offers), then
each function's record is compared with its policy. SAM's own additions (the SQS event
sources' polling, the scheduled function's dead-letter queue) are made by the Lambda
service, not the code, and are not part of `Policies`.
"""

from __future__ import annotations

import csv
import io
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import requests

from local import stack as stack_module
from local.template import build_context, load_template, resolve
from tests.conftest import ROOT
from tests.integration.test_checkout import CHECKOUT, buy, lapse
from tests.integration.test_gate import sign
from tests.integration.test_refunds import _dispute
from tests.integration.test_webhook import deliver, event_for, pay, receipts_for, signed, table_item, wait_for
from tests.ses_events import notification, sns_event

# Its module fixture (the scenario) runs once: every test of the module on one worker.
pytestmark = pytest.mark.xdist_group("least_privilege")

TEMPLATE = load_template(ROOT / "template.yaml")
KEY_PREFIX = "AKLOCAL"

# What the template's resources are called in the local stack.
LOCAL_NAMES = {
    "Table": stack_module.TABLE,
    "QrBucket": stack_module.BUCKET,
    "StripeSecret": stack_module.STRIPE_SECRET,
    "QrSigningSecret": stack_module.QR_SECRET,
    "AdmissionSecret": stack_module.ADMISSION_SECRET,
    "AppleWalletSecret": stack_module.APPLE_WALLET_SECRET,
    "GoogleWalletSecret": stack_module.GOOGLE_WALLET_SECRET,
    "QrPublicKeysParameter": stack_module.QR_PUBLIC_KEYS,
    "MailConfigurationSet": stack_module.MAIL_CONFIGURATION_SET,
}
PARAMETERS = {"SenderEmail": stack_module.SENDER, "StripePublishableKey": stack_module.STRIPE_KEYS["publishable_key"]}


def allowed(function_id: str) -> set[tuple[str, str]]:
    """(IAM action, resource pattern) pairs of the function's policy, resolved locally."""
    context = build_context(TEMPLATE, PARAMETERS, physical_names=LOCAL_NAMES, region=stack_module.REGION)
    for logical_id, resource in TEMPLATE.resources.items():
        if resource.get("Type") == "AWS::SecretsManager::Secret":
            context[logical_id] = context[f"{logical_id}.Arn"]  # in CloudFormation a secret's Ref is its ARN
    pairs = set()
    for policy in TEMPLATE.functions[function_id].properties.get("Policies", []):
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = resolve(statement["Resource"], context)
            for action in actions:
                for pattern in resources if isinstance(resources, list) else [resources]:
                    pairs.add((action, pattern))
    return pairs


def recorded(stack) -> dict[str, set[tuple[str, str]]]:
    """Function logical id -> the (IAM action, resource) pairs its code needed."""
    calls = requests.get(f"{stack.aws_url}/_local/calls", timeout=30).json()["calls"]
    found: dict[str, set[tuple[str, str]]] = {}
    for call in calls:
        if call["access_key"].startswith(KEY_PREFIX):
            found.setdefault(call["access_key"][len(KEY_PREFIX):], set()).add((call["action"], call["resource"]))
    return found


def covers(pattern: tuple[str, str], call: tuple[str, str]) -> bool:
    return pattern[0] == call[0] and fnmatchcase(call[1], pattern[1])


def compare(function_id: str, used: set[tuple[str, str]]) -> tuple[list, list]:
    """(calls no statement allows, statement pairs no call used)."""
    policy = allowed(function_id)
    missing = sorted(call for call in used if not any(covers(pair, call) for pair in policy))
    extra = sorted(pair for pair in policy if not any(covers(pair, call) for call in used))
    return missing, extra


# -------------------------------------------------------------- the scenario
def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ok(answer, *statuses):
    assert answer.status_code in (statuses or (200,)), f"{answer.request.method} {answer.request.url}: {answer.status_code} {answer.text}"
    return answer.json() if "json" in answer.headers.get("Content-Type", "") else answer


def customer(api, label):
    sub = f"{label}-{uuid.uuid4().hex[:6]}"
    return api.token([], sub=sub, email=f"{sub}@example.com")


def paid_order(api, stack, token, event_id, items):
    order = ok(buy(api, token, event_id, items), 201)
    pay(stack, order)
    assert wait_for(lambda: api.get(f"/api/orders/{order['order_id']}/", token=token).json()["status"] == "paid"), order
    return order


@contextmanager
def stripe_failing(stack, path: str, count: int = 5):
    """The Stripe stand-in answers 500 to the next `count` POSTs to `path`."""
    fault = {"path": path, "method": "POST", "status": 500, "count": count}
    requests.post(f"{stack.stripe_url}/_config/faults", json=fault, timeout=5).raise_for_status()
    try:
        yield
    finally:
        requests.delete(f"{stack.stripe_url}/_config/faults", timeout=5)


@pytest.fixture(scope="module")
def scenario(api, stack):
    admin, scanner = api.token(["admin"]), api.token(["scanner"])
    faults = f"{stack.aws_url}/_local/faults"
    start = datetime.now(timezone.utc) + timedelta(days=10)

    # catalogue: create, edit, list, read; the publishable key; the docs
    event = ok(api.post("/api/events/", token=admin, json={
        "name": "Least privilege", "venue": "Hall", "currency": "usd", "starts_at": iso(start),
        "ends_at": iso(start + timedelta(hours=4)),
        "fixtures": [{"name": "Day one", "starts_at": iso(start), "ends_at": iso(start + timedelta(hours=2))}],
    }), 201)
    event_id = event["id"]
    ga = ok(api.post(f"/api/events/{event_id}/ticket-types/", token=admin,
                     json={"name": "GA", "price_cents": 2500, "capacity": 40, "max_per_order": 10}), 201)["id"]
    ok(api.request("PATCH", f"/api/events/{event_id}/", token=admin, json={"venue": "Main Hall"}))
    ok(api.request("PATCH", f"/api/events/{event_id}/ticket-types/{ga}/", token=admin, json={"capacity": 60, "price_cents": 3000}))
    ok(api.request("PATCH", f"/api/events/{event_id}/ticket-types/{ga}/", token=admin, json={"capacity": 50}))
    ok(api.get("/api/events/"))
    ok(api.get(f"/api/events/{event_id}/"))
    ok(api.get("/api/payment/config/"))
    ok(api.get("/api/docs/?format=json"))

    # checkout with a retry-safe key, replayed; the order; an abandoned order; a lapsed hold
    buyer = customer(api, "buyer")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = ok(buy(api, buyer, event_id, [(ga, 3)], **key), 201)
    assert ok(buy(api, buyer, event_id, [(ga, 3)], **key), 201)["order_id"] == first["order_id"]
    with stripe_failing(stack, "/v1/payment_intents"):  # 502: its key is forgotten
        ok(buy(api, buyer, event_id, [(ga, 1)], **{"Idempotency-Key": uuid.uuid4().hex}), 502)
    ok(api.get(f"/api/orders/{first['order_id']}/", token=buyer))
    quitter = customer(api, "quitter")
    abandoned = ok(buy(api, quitter, event_id, [(ga, 1)]), 201)
    ok(api.post(f"/api/orders/{abandoned['order_id']}/cancel/", token=quitter))
    sleeper = customer(api, "sleeper")
    lapsed = ok(buy(api, sleeper, event_id, [(ga, 1)]), 201)
    lapse(stack, lapsed["order_id"])
    ok(requests.post(f"{stack.api_url}/_local/invoke/ExpireHoldsFunction", json={}, timeout=60))
    assert api.get(f"/api/orders/{lapsed['order_id']}/", token=sleeper).json()["status"] == "expired"
    # sold out but for a lapsed hold: checkout reclaims it (the expiry's index query) and sells
    last_seat = ok(api.post(f"/api/events/{event_id}/ticket-types/", token=admin,
                            json={"name": "Last seat", "price_cents": 1000, "capacity": 1}), 201)["id"]
    holder = customer(api, "holder")
    held = ok(buy(api, holder, event_id, [(last_seat, 1)]), 201)
    lapse(stack, held["order_id"])
    ok(buy(api, customer(api, "reclaimer"), event_id, [(last_seat, 1)]), 201)
    assert api.get(f"/api/orders/{held['order_id']}/", token=holder).json()["status"] == "expired"
    # a free order: paid at checkout (its tickets signed there, its receipt queued), canceled
    free = ok(api.post(f"/api/events/{event_id}/ticket-types/", token=admin,
                       json={"name": "Free", "price_cents": 0, "capacity": 5}), 201)["id"]
    taker = customer(api, "free")
    free_order = ok(buy(api, taker, event_id, [(free, 2)]), 201)
    assert free_order["order_status"] == "paid"
    ok(api.post(f"/api/orders/{free_order['order_id']}/cancel/", token=taker))

    # pay: the webhook fulfils (signs the QR payloads) and sends the receipt
    pay(stack, first)
    assert wait_for(lambda: api.get(f"/api/orders/{first['order_id']}/", token=buyer).json()["status"] == "paid")
    assert wait_for(lambda: receipts_for(stack, first["order_id"]))
    ok(api.post(f"/api/orders/{first['order_id']}/resend-receipt/", token=buyer))
    ok(api.get("/api/webhooks/health/"))

    # SES down at payment: the webhook queues the receipt, the receipts function sends it
    late = customer(api, "late-mail")
    ok(requests.post(faults, json={"service": "ses", "status": 503, "code": "ServiceUnavailable", "count": -1}, timeout=5))
    try:
        queued = paid_order(api, stack, late, event_id, [(ga, 1)])
        assert wait_for(lambda: any(action == "sqs:SendMessage" for action, _ in recorded(stack).get("WebhookFunction", ()))), \
            "the webhook did not queue the receipt SES refused"
    finally:
        requests.delete(faults, timeout=5)
    assert wait_for(lambda: receipts_for(stack, queued["order_id"]), timeout=90), "the queued receipt never went out"

    # SES reports (through SNS) that this receipt bounced for good: recorded on the order
    sent = wait_for(lambda: table_item(stack, f"ORDER#{queued['order_id']}").get("receipt_message_id"))
    bounce = notification(order_id=queued["order_id"], message_id=sent, timestamp=iso(datetime.now(timezone.utc)))
    assert ok(requests.post(f"{stack.api_url}/_local/invoke/MailEventsFunction", json=sns_event(bounce), timeout=60)) == {
        "outcomes": ["recorded"]}
    assert api.get(f"/api/orders/{queued['order_id']}/", token=late).json()["receipt"]["status"] == "undeliverable"

    # tickets and QR codes: listings, data (presigned URLs), images rendered once then read
    ok(api.get("/api/me/tickets/", token=buyer))
    ok(api.get("/api/me/orders/", token=buyer))
    ticket_ids = [t["id"] for t in first["tickets"]]
    data = ok(api.get(f"/api/tickets/{ticket_ids[0]}/qr/data/", token=buyer))
    assert requests.get(data["qr_png_url"], timeout=10).status_code == 200
    for _ in range(2):
        ok(api.get(f"/api/tickets/{ticket_ids[0]}/qr/image/?format=svg&size=300", token=buyer))

    # the gate: verify, check in by id and by code (retry-safe), keys, an offline upload
    code = sign(stack, ticket_ids[0], event_id)
    assert ok(api.get(f"/api/tickets/verify/?code={code}&event_id={event_id}", token=scanner))["is_valid"]
    ok(api.post(f"/api/tickets/{ticket_ids[0]}/checkin/", token=scanner, json={"gate": "North"}))
    ok(api.post("/api/tickets/checkin/", token=scanner, json={"code": sign(stack, ticket_ids[1], event_id), "gate": "South"},
                headers={"Idempotency-Key": uuid.uuid4().hex}))
    ok(api.post(f"/api/tickets/{ticket_ids[1]}/checkin/", token=scanner, json={"gate": "East"},
                headers={"Idempotency-Key": uuid.uuid4().hex}), 409)  # a failure: its key is forgotten
    ok(api.get(f"/api/scanner/keys/?event_id={event_id}", token=scanner))
    ok(api.post("/api/scanner/checkins/", token=scanner, json=[
        {"code": sign(stack, ticket_ids[2], event_id), "scanned_at": iso(datetime.now(timezone.utc)), "gate": "West"}]))

    # transfer (issue 19): refused (own address: its retry key is forgotten), then given away with a
    # key; the new holder's listing claims it; the wallet passes of a ticket still held
    ok(api.request("PATCH", f"/api/events/{event_id}/", token=admin, json={"transfers": {"enabled": True}}))
    giver_sub = f"giver-{uuid.uuid4().hex[:6]}"
    giver = api.token([], sub=giver_sub, email=f"{giver_sub}@example.com")
    given = paid_order(api, stack, giver, event_id, [(ga, 2)])
    kept, gone = (t["id"] for t in given["tickets"])
    ok(api.post(f"/api/tickets/{gone}/transfer/", token=giver, json={"to_email": f"{giver_sub}@example.com", "to_name": "Me"},
                headers={"Idempotency-Key": uuid.uuid4().hex}), 422)
    taker_sub = f"taker-{uuid.uuid4().hex[:6]}"
    ok(api.post(f"/api/tickets/{gone}/transfer/", token=giver, json={"to_email": f"{taker_sub}@example.com", "to_name": "Taker"},
                headers={"Idempotency-Key": uuid.uuid4().hex}))
    taker = api.token([], sub=taker_sub, email=f"{taker_sub}@example.com")
    assert [t["id"] for t in ok(api.get("/api/me/tickets/", token=taker))["tickets"]] == [gone]
    assert ok(api.get(f"/api/tickets/{kept}/wallet/apple/", token=giver)).content[:2] == b"PK"
    assert ok(api.get(f"/api/tickets/{kept}/wallet/google/", token=giver))["save_url"]

    # refunds: a customer's partial refund by ticket, and a dispute opened and won
    refunder = customer(api, "refunder")
    refundable = paid_order(api, stack, refunder, event_id, [(ga, 2)])
    one_ticket = {"ticket_ids": [refundable["tickets"][0]["id"]]}
    with stripe_failing(stack, "/v1/refunds"):  # 502: the reservation is undone, the key forgotten
        ok(api.post(f"/api/orders/{refundable['order_id']}/refund/", token=refunder, json=one_ticket,
                    headers={"Idempotency-Key": uuid.uuid4().hex}), 502)
    ok(api.post(f"/api/orders/{refundable['order_id']}/refund/", token=refunder, json=one_ticket,
                headers={"Idempotency-Key": uuid.uuid4().hex}), 201)
    disputer = customer(api, "disputer")
    disputed = paid_order(api, stack, disputer, event_id, [(ga, 1)])
    intent = disputed["payment_intent_id"]
    charge = api.get(f"/api/orders/{disputed['order_id']}/", token=disputer).json()["payment"]["charge_id"]
    dispute_id = f"dp_{uuid.uuid4().hex[:14]}"
    for status, kind in (("needs_response", "charge.dispute.created"), ("won", "charge.dispute.closed")):
        payload = event_for(intent, kind=kind, obj=_dispute(stack, charge, intent, status, dispute_id))
        ok(deliver(api, payload, signed(payload)))

    # the account: a saved card (Stripe down first: the retry key is forgotten), the payment
    # history with its refunds, the inbox the receipts and refund notices went to
    from tests.integration.test_account import save_card

    with stripe_failing(stack, "/v1/customers"):
        ok(api.post("/api/me/payment-methods/setup/", token=refunder, headers={"Idempotency-Key": uuid.uuid4().hex}), 502)
    card = save_card(api, stack, refunder)
    ok(api.get("/api/me/payment-methods/", token=refunder))
    ok(api.post(f"/api/me/payment-methods/{card}/default/", token=refunder))
    ok(api.request("DELETE", f"/api/me/payment-methods/{card}/", token=refunder))
    assert ok(api.get("/api/me/payments/", token=refunder))["payments"][0]["refunds"]
    assert wait_for(lambda: ok(api.get("/api/me/notifications/?unread=true", token=refunder))["notifications"])
    note = ok(api.get("/api/me/notifications/?unread=true", token=refunder))["notifications"][0]
    ok(api.post(f"/api/me/notifications/{note['id']}/read/", token=refunder))
    ok(api.post("/api/me/notifications/read-all/", token=refunder))

    # the organiser moves the event's end: the receipts function tells each valid ticket's holder
    # once (the event's tickets in batches: the next batch queued), by email and in the inbox
    ok(api.request("PATCH", f"/api/events/{event_id}/", token=admin, json={"ends_at": iso(start + timedelta(hours=5))}))
    assert wait_for(lambda: [n for n in ok(api.get("/api/me/notifications/", token=refunder))["notifications"]
                             if n["kind"] == "event_changed"], timeout=90), "the ticket holder was never told"


    # the waiting room: one join before opening, one after; the admission job opens it (closing the
    # pre-opening counters), admits and publishes; a poll for the token, a checkout with it
    # (checked with the admission key, spent in the hold), the organiser's view; turned off,
    # the job takes it off its list
    opens = datetime.now(timezone.utc) + timedelta(seconds=3)
    room_id = ok(api.post("/api/events/", token=admin, json={
        "name": "Queue", "venue": "Hall", "currency": "usd", "starts_at": iso(start), "ends_at": iso(start + timedelta(hours=4)),
        "waiting_room": {"opens_at": iso(opens), "admit_per_minute": 600}}), 201)["id"]
    room_seats = ok(api.post(f"/api/events/{room_id}/ticket-types/", token=admin,
                             json={"name": "GA", "price_cents": 1000, "capacity": 10}), 201)["id"]
    early, later = customer(api, "early"), customer(api, "later")
    ok(api.post(f"/api/events/{room_id}/queue/", token=early), 201)
    assert wait_for(lambda: datetime.now(timezone.utc) > opens + timedelta(seconds=1), timeout=10)
    ok(requests.post(f"{stack.api_url}/_local/invoke/QueueTickFunction", json={"steps": 1}, timeout=60))
    ok(api.post(f"/api/events/{room_id}/queue/", token=later), 201)

    def admitted():
        requests.post(f"{stack.api_url}/_local/invoke/QueueTickFunction", json={"steps": 1}, timeout=60)
        return ok(api.get(f"/api/events/{room_id}/queue/me/", token=early))["admission_token"]

    admission = wait_for(admitted, timeout=30)
    assert admission
    ok(api.post("/api/tickets/stripe/checkout/", token=early, headers={"Admission-Token": admission},
                json={"event_id": room_id, "items": [{"ticket_type_id": room_seats, "qty": 1}]}), 201)
    assert ok(api.get(f"/api/events/{room_id}/queue/", token=admin))["spent"] == 1
    # turned off: the admission job's next step takes the room off its list
    assert table_item(stack, "QUEUE_ROOMS", f"EVENT#{room_id}")
    ok(api.patch(f"/api/events/{room_id}/", token=admin, json={"waiting_room": {"enabled": False}}))
    ok(requests.post(f"{stack.api_url}/_local/invoke/QueueTickFunction", json={"steps": 1}, timeout=60))
    assert not table_item(stack, "QUEUE_ROOMS", f"EVENT#{room_id}")
    # vouchers (organiser's routes, a checkout with one); a waiting list: join, the expiry job's
    # offer (email and inbox), its lapse passing the seats to the next in line, a checkout
    # with the offer, the caller's places, leaving
    voucher = ok(api.post(f"/api/events/{event_id}/vouchers/", token=admin,
                          json={"kind": "percent", "value": 10, "max_uses": 3}), 201)
    ok(api.get(f"/api/events/{event_id}/vouchers/", token=admin))
    ok(api.request("PATCH", f"/api/events/{event_id}/vouchers/{voucher['id']}/", token=admin, json={"max_uses": 4}))
    ok(api.post(CHECKOUT, token=customer(api, "voucher"), json={
        "event_id": event_id, "voucher_code": voucher["code"], "items": [{"ticket_type_id": ga, "qty": 1}]}), 201)
    ok(api.request("DELETE", f"/api/events/{event_id}/vouchers/{voucher['id']}/", token=admin))
    ok(api.request("PATCH", f"/api/events/{event_id}/", token=admin, json={"waiting_list": {"enabled": True, "offer_minutes": 5}}))
    few = ok(api.post(f"/api/events/{event_id}/ticket-types/", token=admin,
                      json={"name": "Few", "price_cents": 1000, "capacity": 1}), 201)["id"]
    seat_holder = customer(api, "seat-holder")
    taken = ok(buy(api, seat_holder, event_id, [(few, 1)]), 201)
    waitlist = f"/api/events/{event_id}/ticket-types/{few}/waitlist/"
    waiters = [customer(api, "waiter") for _ in range(3)]
    for waiter in waiters:
        ok(api.post(waitlist, token=waiter, json={"qty": 1}), 201)
    ok(api.post(f"/api/orders/{taken['order_id']}/cancel/", token=seat_holder))
    ok(requests.post(f"{stack.api_url}/_local/invoke/ExpireHoldsFunction", json={}, timeout=60))
    assert wait_for(lambda: api.get("/api/me/waitlist/", token=waiters[0]).json()["entries"][0]["offer"], timeout=60)
    stack.client("dynamodb").update_item(  # the offer's time is up
        TableName=stack_module.TABLE, Key={"PK": {"S": f"WAIT#{few}"}, "SK": {"S": "ENTRY#0000000001"}},
        UpdateExpression="SET offer_expires_at = :e, GSI2SK = :s",
        ExpressionAttributeValues={":e": {"S": "2000-01-01T00:00:00Z"}, ":s": {"S": "2000-01-01T00:00:00Z#lapsed"}},
    )
    ok(requests.post(f"{stack.api_url}/_local/invoke/ExpireHoldsFunction", json={}, timeout=60))
    offer = wait_for(lambda: api.get("/api/me/waitlist/", token=waiters[1]).json()["entries"][0]["offer"], timeout=60)
    ok(api.post(CHECKOUT, token=waiters[1], json={
        "event_id": event_id, "offer_code": offer["offer_code"], "items": [{"ticket_type_id": few, "qty": 1}]}), 201)
    ok(api.request("DELETE", waitlist, token=waiters[2]))

    # organiser reports, then cancel the event: paid orders refunded, pending canceled
    pending = ok(buy(api, customer(api, "pending"), event_id, [(ga, 1)]), 201)
    ok(api.get(f"/api/events/{event_id}/orders/", token=admin))
    ok(api.get(f"/api/events/{event_id}/attendees/", token=admin))
    attendees = ok(api.get(f"/api/events/{event_id}/attendees/?format=csv", token=admin))
    assert len(list(csv.reader(io.StringIO(attendees.text)))) > 1
    link = ok(api.get(f"/api/events/{event_id}/attendees/?format=csv&delivery=link", token=admin))  # as a large export
    assert requests.get(link["export_url"], timeout=10).text == attendees.text
    ok(api.get(f"/api/events/{event_id}/stats/", token=admin))
    # Stripe refuses the first refunds: the job undoes their reservations and resumes later
    with stripe_failing(stack, "/v1/refunds", count=4):
        ok(api.post(f"/api/events/{event_id}/cancel/", token=admin, json={"batch_size": 2}), 202)
        done = wait_for(lambda: api.get(f"/api/events/{event_id}/cancel/", token=admin).json()["state"] == "completed", timeout=150)
    assert done, api.get(f"/api/events/{event_id}/cancel/", token=admin).text
    assert api.get(f"/api/orders/{pending['order_id']}/", token=admin).json()["status"] == "canceled"
    return recorded(stack)


def imported(stack) -> dict[str, set[str]]:
    """Function logical id -> the distributions its workers imported (local/lambda_site reports
    each on stderr, which the quiet stack's gateway log keeps)."""
    from local.packages import _modules_by_distribution

    distribution_of = {module: name for name, modules in _modules_by_distribution().items() for module in modules}
    found: dict[str, set[str]] = {}
    for line in (stack.state_dir / "gateway.log").read_text(errors="replace").splitlines():
        if "] lambda-imports: " in line:
            function, module = line[1:].split("] lambda-imports: ", 1)
            found.setdefault(function, set()).add(distribution_of[module.strip()])
    return found


FUNCTIONS = sorted(TEMPLATE.functions)


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_each_function_needs_exactly_its_policy(scenario, function_id):
    used = scenario.get(function_id, set())
    assert used, f"the scenario never made {function_id} call AWS"
    missing, extra = compare(function_id, used)
    assert not missing, f"{function_id} made calls its policy does not allow: {missing}"
    assert not extra, f"{function_id}'s policy allows what its code never needed: {extra}; it used {sorted(used)}"


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_each_function_carries_only_what_it_imports(stack, scenario, function_id):
    """What a function imports beyond its requirements.txt cannot be imported locally (as in
    Lambda): the scenario would have failed. Here the other way round: every package its
    requirements.in names was imported by the scenario's code paths."""
    from local.packages import pinned

    direct = pinned(Path(TEMPLATE.functions[function_id].code_uri) / "requirements.in")
    unused = direct - imported(stack).get(function_id, set())
    assert not unused, f"{function_id} carries {sorted(unused)} and never imported them"


def test_the_comparison_fails_on_a_missing_and_on_an_unused_permission():
    function_id = "CatalogueFunction"
    policy = allowed(function_id)
    used = {(action, pattern.replace("*", "x")) for action, pattern in policy}
    assert compare(function_id, used) == ([], [])
    dropped = sorted(used)[0]
    assert compare(function_id, used - {dropped})[1] == [next(p for p in sorted(policy) if covers(p, dropped))]
    stray = ("dynamodb:DeleteItem", f"arn:aws:dynamodb:{stack_module.REGION}:123456789012:table/{stack_module.TABLE}")
    assert compare(function_id, used | {stray})[0] == [stray]


def test_private_qr_keys_only_where_tickets_are_signed_and_public_keys_where_the_gate_reads(scenario):
    secret = f"arn:aws:secretsmanager:{stack_module.REGION}:123456789012:secret:{stack_module.QR_SECRET}"
    signers = {"WebhookFunction", "TransferFunction", "CheckoutFunction"}  # issue, re-issue on a transfer, a free order's
    readers = {fid for fid, used in scenario.items() if ("secretsmanager:GetSecretValue", secret) in used}
    assert readers == signers
    assert not any(covers(pair, ("secretsmanager:GetSecretValue", secret)) for fid in FUNCTIONS if fid not in signers
                   for pair in allowed(fid))
    public = f"arn:aws:ssm:{stack_module.REGION}:123456789012:parameter{stack_module.QR_PUBLIC_KEYS}"
    assert ("ssm:GetParameter", public) in scenario["VerifyFunction"]


def test_the_wallet_keys_only_where_passes_are_made(scenario):
    for name in (stack_module.APPLE_WALLET_SECRET, stack_module.GOOGLE_WALLET_SECRET):
        secret = f"arn:aws:secretsmanager:{stack_module.REGION}:123456789012:secret:{name}"
        assert {fid for fid, used in scenario.items() if ("secretsmanager:GetSecretValue", secret) in used} == {"WalletFunction"}
        assert not any(covers(pair, ("secretsmanager:GetSecretValue", secret)) for fid in FUNCTIONS if fid != "WalletFunction"
                       for pair in allowed(fid))


def test_the_publishable_key_is_served_without_access_to_the_stripe_secret(scenario):
    secret = f"arn:aws:secretsmanager:{stack_module.REGION}:123456789012:secret:{stack_module.STRIPE_SECRET}"
    assert not any(covers(pair, ("secretsmanager:GetSecretValue", secret)) for pair in allowed("CatalogueFunction"))
    assert not any(action.startswith("secretsmanager:") for action, _ in scenario["CatalogueFunction"])
