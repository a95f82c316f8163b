"""The gate in process (moto): DynamoDB calls per scan counted exactly, every reason, the
offline upload's rules, the offline verifier, and what the verify function imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from bench.common import count_aws_calls
from tests.conftest import ROOT, load_function
from tests.unit.conftest import CUSTOMER, Invoker
from ticketing import clock, config, ids, qr
from ticketing.lifecycle import orders as lifecycle
from ticketing.offline import verify_offline
from ticketing.table import ScanItem, TicketItem, scan_partitions

PUBLIC = "/ticketing/test/qr-gate-public"
SCANNER = {"sub": "scanner-1", "email": "gate@example.com", "cognito:groups": "[scanner]"}
KID = "kgate"
KEY = qr.new_private_key()
VERIFY = "/api/tickets/verify/"
READS = ("dynamodb.GetItem", "dynamodb.BatchGetItem", "dynamodb.Query", "dynamodb.Scan", "dynamodb.TransactGetItems")


@pytest.fixture(scope="module")
def verify_fn():
    return load_function("verify")


@pytest.fixture
def gate(aws, verify_fn, monkeypatch):
    from aws_lambda_powertools.utilities import parameters

    # The gate reads only the published public keys (no access to the private ones in AWS).
    document = qr.public_document({"active": KID, "keys": {KID: KEY}})
    boto3.client("ssm").put_parameter(Name=PUBLIC, Value=json.dumps(document), Type="String")
    monkeypatch.setenv("QR_PUBLIC_KEYS_PARAMETER", PUBLIC)
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "300")  # as deployed: the keys are cached per container
    config.settings.cache_clear()
    parameters.clear_caches()
    yield Invoker(verify_fn)
    config.settings.cache_clear()
    parameters.clear_caches()
    clock.freeze(None)


def ticket(status="valid", event_id=None, ends_in=timedelta(days=1), **fields) -> tuple[TicketItem, str]:
    """A ticket in the table and its correctly signed code."""
    ticket_id, event_id = ids.new_id("tk"), event_id or ids.new_id("ev")
    now = clock.now()
    item = TicketItem(
        *TicketItem.key(ticket_id), GSI1PK="CUSTOMER#c", GSI1SK=f"TICKET#x#{ticket_id}", ticket_id=ticket_id,
        serial="TKT-ABC12345", order_id=ids.new_id("or"), event_id=event_id, type_id="tt_1", type_name="General Admission",
        price_cents=2500, currency="usd", status=status, customer_sub="c", created_at=clock.iso(now),
        issued_at=clock.iso(now), event_name="Championship Game", event_ends_at=clock.iso(now + ends_in),
        holder_email="user@example.com", holder_name="John Doe", **fields,
    )
    item.save()
    return item, qr.sign_with(KEY, KID, ticket_id, event_id)


def db(calls) -> dict[str, int]:
    return {name: n for name, n in calls.items() if name.startswith("dynamodb.")}


def scans(event_id: str | None) -> list[ScanItem]:
    day = clock.iso(clock.now())[:10]
    return [scan for partition in scan_partitions(event_id, day) for scan in ScanItem.query(partition)]


# ----------------------------------------------------------------- verify
def test_a_valid_scan_is_one_getitem_and_answers_the_seed_fields(gate):
    item, code = ticket()
    gate("GET", VERIFY, query={"code": code}, claims=SCANNER)  # warm: keys cached, connections open
    with count_aws_calls() as calls:
        status, body, _ = gate("GET", VERIFY, query={"code": code}, claims=SCANNER)
    assert status == 200
    assert db(calls) == {"dynamodb.GetItem": 1, "dynamodb.PutItem": 1}  # the read, and the audit record
    assert body == {
        "ticket_id": item.ticket_id, "serial": "TKT-ABC12345", "status": "valid", "is_valid": True, "reason": "ok",
        "event_id": item.event_id, "event_name": "Championship Game", "ticket_type_name": "General Admission",
        "issued_at": item.issued_at, "used_at": None, "gate": None, "order_id": item.order_id,
        "user_email": "user@example.com", "user_name": "John Doe",
    }


@pytest.mark.parametrize("how", ["forged", "altered_id", "altered_signature", "garbage", "empty", "huge"])
def test_forged_and_altered_codes_cost_zero_reads(gate, how):
    item, code = ticket()
    other = qr.new_private_key()
    bad = {
        "forged": qr.sign_with(other, KID, item.ticket_id, item.event_id),
        "altered_id": code.replace(item.ticket_id, item.ticket_id[:-1] + ("0" if item.ticket_id[-1] != "0" else "1")),
        "altered_signature": code[:-3] + ("AAA" if code[-3:] != "AAA" else "BAA"),
        "garbage": "TKT:456:123:TKT-ABC12345:hash",
        "empty": "",
        "huge": "A" * 5000,
    }[how]
    gate("GET", VERIFY, query={"code": code}, claims=SCANNER)  # warm
    with count_aws_calls() as calls:
        status, body, _ = gate("GET", VERIFY, query={"code": bad}, claims=SCANNER)
    assert status == 200 and body["reason"] == "bad_signature" and body["is_valid"] is False and body["ticket_id"] is None
    assert not any(name in READS for name in calls), calls
    assert db(calls) == {"dynamodb.PutItem": 1}  # the audit record, written without a read
    [record] = scans(None)
    assert record.reason == "bad_signature" and record.scanner == "scanner-1" and len(record.code or "") <= 64


def test_every_reason(gate):
    _, ok = ticket()
    _, used = ticket("used", used_at="2026-01-01T10:00:00Z", gate="North")
    _, void = ticket("void")
    _, pending = ticket("pending")
    _, over = ticket(ends_in=-timedelta(hours=1))
    unknown = qr.sign_with(KEY, KID, ids.new_id("tk"), ids.new_id("ev"))
    cases = {ok: "ok", used: "already_used", void: "void", pending: "unpaid", over: "event_over",
             unknown: "unknown_ticket", "TKT1:nope": "bad_signature"}
    for code, reason in cases.items():
        status, body, _ = gate("GET", VERIFY, query={"code": code}, claims=SCANNER)
        assert (status, body["reason"], body["is_valid"]) == (200, reason, reason == "ok"), (code, body)
    status, body, _ = gate("GET", VERIFY, query={"code": ok, "event_id": ids.new_id("ev")}, claims=SCANNER)
    assert body["reason"] == "wrong_event" and not body["is_valid"]
    used_body = gate("GET", VERIFY, query={"code": used}, claims=SCANNER)[1]
    assert used_body["used_at"] == "2026-01-01T10:00:00Z" and used_body["gate"] == "North"


def test_only_scanners_and_admins(gate):
    _, code = ticket()
    for path, method, body in ((VERIFY, "GET", None), ("/api/scanner/checkins/", "POST", [{"x": 1}]),
                               ("/api/tickets/checkin/", "POST", {}), ("/api/scanner/keys/", "GET", None)):
        status, answer, _ = gate(method, path, body, query={"code": code} if method == "GET" else None, claims=CUSTOMER)
        assert status == 403 and answer == {"error": "Permission denied", "detail": "You do not have permission to verify this ticket"}
    admin = {"sub": "a", "cognito:groups": "[admin]"}
    assert gate("GET", VERIFY, query={"code": code}, claims=admin)[0] == 200


# --------------------------------------------------------------- check-in
def test_check_in_is_one_conditional_update_and_a_second_scan_is_409_with_the_first(gate):
    item, code = ticket()
    gate("GET", VERIFY, query={"code": code}, claims=SCANNER)  # warm
    path = f"/api/tickets/{item.ticket_id}/checkin/"
    with count_aws_calls() as calls:
        status, body, _ = gate("POST", path, {"gate": "North"}, claims=SCANNER)
    assert status == 200, body
    assert db(calls) == {"dynamodb.UpdateItem": 1, "dynamodb.PutItem": 1}
    assert body["message"] == "Ticket checked in successfully" and body["ticket"]["gate"] == "North"
    assert body["ticket"]["id"] == item.ticket_id and body["ticket"]["serial"] == "TKT-ABC12345"
    stored = TicketItem.get(*TicketItem.key(item.ticket_id))
    assert (stored.status, stored.gate, stored.scanner, stored.used_at) == ("used", "North", "scanner-1", body["ticket"]["used_at"])

    with count_aws_calls() as calls:
        status, again, _ = gate("POST", path, {"gate": "South"}, claims=SCANNER)
    assert db(calls) == {"dynamodb.UpdateItem": 1, "dynamodb.PutItem": 1}  # no read: the failed write says why
    assert status == 409 and again["reason"] == "already_used" and again["error"] == "Ticket already used"
    assert again["first_used_at"] == body["ticket"]["used_at"] and again["gate"] == "North"
    records = scans(item.event_id)
    assert sorted((r.action, r.result, r.gate) for r in records if r.action == "checkin") == [
        ("checkin", "accepted", "North"), ("checkin", "rejected", "South")]


def test_check_in_refusals(gate):
    void, _ = ticket("void")
    pending, _ = ticket("pending")
    over, _ = ticket(ends_in=-timedelta(minutes=1))
    valid, _ = ticket()
    for item, status, reason in ((void, 409, "void"), (pending, 409, "unpaid"), (over, 409, "event_over")):
        code, body, _ = gate("POST", f"/api/tickets/{item.ticket_id}/checkin/", {"gate": "A"}, claims=SCANNER)
        assert (code, body["reason"]) == (status, reason) and body["error"] and body["detail"]
        assert TicketItem.get(*TicketItem.key(item.ticket_id)).status == item.status
    code, body, _ = gate("POST", f"/api/tickets/{ids.new_id('tk')}/checkin/", {"gate": "A"}, claims=SCANNER)
    assert (code, body["reason"]) == (404, "unknown_ticket")
    code, body, _ = gate("POST", f"/api/tickets/{valid.ticket_id}/checkin/", {"gate": "A", "event_id": ids.new_id("ev")}, claims=SCANNER)
    assert (code, body["reason"]) == (409, "wrong_event")
    # A seed-era client sends no body: admitted at gate "unnamed".
    code, body, _ = gate("POST", f"/api/tickets/{valid.ticket_id}/checkin/", claims=SCANNER)
    assert code == 200 and body["ticket"]["gate"] == "unnamed"


def test_check_in_by_code(gate):
    item, code = ticket()
    status, body, _ = gate("POST", "/api/tickets/checkin/", {"code": code, "gate": "East"}, claims=SCANNER)
    assert status == 200 and body["ticket"]["id"] == item.ticket_id
    status, body, _ = gate("POST", "/api/tickets/checkin/", {"code": code, "gate": "West"}, claims=SCANNER)
    assert (status, body["reason"], body["gate"]) == (409, "already_used", "East")
    with count_aws_calls() as calls:
        status, body, _ = gate("POST", "/api/tickets/checkin/", {"code": code[:-2] + "xx", "gate": "East"}, claims=SCANNER)
    assert (status, body["reason"], body["field"]) == (422, "bad_signature", "code")
    assert db(calls) == {"dynamodb.PutItem": 1}
    other, other_code = ticket()
    with count_aws_calls() as calls:
        status, body, _ = gate("POST", "/api/tickets/checkin/", {"code": other_code, "gate": "E", "event_id": ids.new_id("ev")}, claims=SCANNER)
    assert (status, body["reason"]) == (409, "wrong_event") and db(calls) == {"dynamodb.PutItem": 1}


def test_idempotency_key_replays_a_check_in(gate):
    item, _ = ticket()
    path = f"/api/tickets/{item.ticket_id}/checkin/"
    key = {"idempotency-key": "scan-1"}
    first = gate("POST", path, {"gate": "N"}, claims=SCANNER, headers=key)
    again = gate("POST", path, {"gate": "N"}, claims=SCANNER, headers=key)
    assert first[0] == again[0] == 200 and first[1] == again[1]
    assert gate("POST", path, {"gate": "N"}, claims=SCANNER)[0] == 409
    assert gate("POST", path, {"gate": "S"}, claims=SCANNER, headers=key)[0] == 422  # same key, another body


# ---------------------------------------------------------- offline upload
def test_offline_upload_duplicates_conflicts_voids_and_the_earliest_admission(gate):
    clock.freeze(datetime(2026, 11, 22, 18, 0, tzinfo=timezone.utc))  # the tickets are issued at 18:00
    a, code_a = ticket()
    b, code_b = ticket(event_id=a.event_id)
    c, code_c = ticket("used", event_id=a.event_id, used_at="2026-11-22T19:30:00Z", gate="North")
    v, code_v = ticket("void", event_id=a.event_id)
    p, code_p = ticket("pending", event_id=a.event_id)
    unknown = qr.sign_with(KEY, KID, ids.new_id("tk"), a.event_id)
    clock.freeze(datetime(2026, 11, 22, 20, 0, tzinfo=timezone.utc))
    batch = [
        {"code": code_a, "scanned_at": "2026-11-22T19:05:00Z", "gate": "North"},  # 0 second scan, same gate
        {"code": code_a, "scanned_at": "2026-11-22T19:01:00Z", "gate": "North"},  # 1 first (sent out of order)
        {"code": code_b, "scanned_at": "2026-11-22T19:02:00Z", "gate": "North"},  # 2 first
        {"code": code_b, "scanned_at": "2026-11-22T19:03:00Z", "gate": "South"},  # 3 another gate: conflict
        {"code": code_c, "scanned_at": "2026-11-22T19:10:00Z", "gate": "South"},  # 4 earlier than North's online scan
        {"code": code_v, "scanned_at": "2026-11-22T19:04:00Z", "gate": "North"},  # 5 void
        {"code": code_p, "scanned_at": "2026-11-22T19:04:00Z", "gate": "North"},  # 6 unpaid
        {"code": unknown, "scanned_at": "2026-11-22T19:04:00Z", "gate": "North"},  # 7 unknown
        {"code": code_a[:-1] + "B", "scanned_at": "2026-11-22T19:04:00Z", "gate": "North"},  # 8 altered
    ]
    status, body, _ = gate("POST", "/api/scanner/checkins/", batch, claims=SCANNER)
    assert status == 200, body
    got = {r["index"]: r for r in body["results"]}
    assert [got[i]["result"] for i in range(9)] == [
        "duplicate", "accepted", "accepted", "conflict", "conflict", "void", "invalid", "invalid", "invalid"]
    assert [got[i]["reason"] for i in (6, 7, 8)] == ["unpaid", "unknown_ticket", "bad_signature"]
    assert (got[0]["first_used_at"], got[0]["gate"]) == ("2026-11-22T19:01:00Z", "North")
    assert got[3]["admissions"] == [{"gate": "North", "used_at": "2026-11-22T19:02:00Z"}, {"gate": "South", "used_at": "2026-11-22T19:03:00Z"}]
    assert got[4]["admissions"] == [{"gate": "South", "used_at": "2026-11-22T19:10:00Z"}, {"gate": "North", "used_at": "2026-11-22T19:30:00Z"}]
    assert body["summary"] == {"duplicate": 1, "accepted": 2, "conflict": 2, "void": 1, "invalid": 3}
    stored = {t.ticket_id: t for t in TicketItem.batch_get([TicketItem.key(x.ticket_id) for x in (a, b, c, v, p)])}
    assert (stored[a.ticket_id].used_at, stored[a.ticket_id].gate) == ("2026-11-22T19:01:00Z", "North")
    assert (stored[b.ticket_id].used_at, stored[b.ticket_id].gate) == ("2026-11-22T19:02:00Z", "North")
    # An upload never rewrites an online admission, even claiming an earlier time.
    assert (stored[c.ticket_id].used_at, stored[c.ticket_id].gate) == ("2026-11-22T19:30:00Z", "North")
    assert stored[v.ticket_id].status == "void" and stored[p.ticket_id].status == "pending"
    assert len([s for s in scans(a.event_id) if s.action == "offline"]) == 8
    assert len([s for s in scans(None) if s.action == "offline"]) == 1  # the altered code (unknown_ticket is signed)

    # Uploading the same scans again admits nobody twice.
    again = gate("POST", "/api/scanner/checkins/", batch[:3], claims=SCANNER)[1]
    assert [r["result"] for r in again["results"]] == ["duplicate", "duplicate", "duplicate"]

    # Between offline uploads the earliest admission is kept; a scan before the ticket was issued is invalid.
    earlier = [{"code": code_b, "scanned_at": "2026-11-22T18:30:00Z", "gate": "West"},
               {"code": code_b, "scanned_at": "2001-01-01T00:00:00Z", "gate": "West"}]
    later = gate("POST", "/api/scanner/checkins/", earlier, claims=SCANNER)[1]["results"]
    assert [(r["result"], r["reason"]) for r in later] == [("conflict", "already_used"), ("invalid", "before_issue")]
    assert later[0]["admissions"] == [{"gate": "West", "used_at": "2026-11-22T18:30:00Z"}, {"gate": "North", "used_at": "2026-11-22T19:02:00Z"}]
    assert (TicketItem.get(*TicketItem.key(b.ticket_id)).used_at, TicketItem.get(*TicketItem.key(b.ticket_id)).gate) == (
        "2026-11-22T18:30:00Z", "West")


def test_offline_upload_limits(gate):
    _, code = ticket()
    future = clock.iso(clock.now() + timedelta(hours=1))
    status, body, _ = gate("POST", "/api/scanner/checkins/", [{"code": code, "scanned_at": future, "gate": "A"}], claims=SCANNER)
    assert (status, body["field"]) == (422, "0.scanned_at")
    too_many = [{"code": code, "scanned_at": "2026-01-01T00:00:00Z", "gate": "A"}] * 201
    assert gate("POST", "/api/scanner/checkins/", too_many, claims=SCANNER)[0] == 422
    no_zone = [{"code": code, "scanned_at": "2026-01-01T00:00:00", "gate": "A"}]
    assert gate("POST", "/api/scanner/checkins/", no_zone, claims=SCANNER)[1]["field"] == "0.scanned_at"


# ----------------------------------------------------------- keys document
def test_keys_document_and_the_offline_verifier(gate, tmp_path):
    from ticketing import orders
    from ticketing.table import EventItem

    event_id = ids.new_id("ev")
    EventItem(*EventItem.key(event_id), GSI1SK="x", event_id=event_id, name="Gig", venue="Hall", starts_at="2026-11-22T18:00:00Z",
              ends_at="2099-01-01T00:00:00Z", currency="usd", created_at="x", created_by="x").save()
    good, good_code = ticket(event_id=event_id)
    gone, gone_code = ticket(event_id=event_id)
    gone.update(actions=lifecycle.void_actions(gone, clock.iso(clock.now())))
    status, keys_only, _ = gate("GET", "/api/scanner/keys/", claims=SCANNER)
    assert status == 200 and keys_only["keys"] == {KID: qr.public_key_of(KEY)}
    assert keys_only["event_id"] is None and keys_only["voided"] == [] and keys_only["restored"] == []
    assert gate("GET", "/api/scanner/keys/", query={"event_id": ids.new_id("ev")}, claims=SCANNER)[0] == 404
    with count_aws_calls() as calls:
        status, document, _ = gate("GET", "/api/scanner/keys/", query={"event_id": event_id}, claims=SCANNER)
    assert status == 200 and db(calls) == {"dynamodb.GetItem": 1, "dynamodb.Query": 1}
    assert document["keys"] == {KID: qr.public_key_of(KEY)} and document["event_ends_at"] == "2099-01-01T00:00:00Z"
    assert [v["ticket_id"] for v in document["voided"]] == [gone.ticket_id]
    later = gate("GET", "/api/scanner/keys/", query={"event_id": event_id, "since": "2099-01-01T00:00:00Z"}, claims=SCANNER)[1]
    assert later["voided"] == [] and later["generated_at"].endswith("Z")
    assert gate("GET", "/api/scanner/keys/", query={"event_id": event_id, "since": "yesterday"}, claims=SCANNER)[1]["field"] == "since"

    assert verify_offline(document, good_code) == {"valid": True, "reason": "ok", "ticket_id": good.ticket_id, "event_id": event_id}
    assert verify_offline(document, gone_code)["reason"] == "void"
    assert verify_offline(document, _altered(good_code))["reason"] == "bad_signature"
    assert verify_offline(document, qr.sign_with(KEY, KID, ids.new_id("tk"), ids.new_id("ev")))["reason"] == "wrong_event"
    assert verify_offline(document, good_code, now="2099-01-02T00:00:00Z")["reason"] == "event_over"

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(document))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers/common/python")}
    ok = subprocess.run([sys.executable, "-m", "ticketing.offline", str(keys), good_code], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["reason"] == "ok"
    bad = subprocess.run([sys.executable, "-m", "ticketing.offline", str(keys), gone_code], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and json.loads(bad.stdout)["reason"] == "void"
    other = subprocess.run([sys.executable, "-m", "ticketing.offline", str(keys), good_code, "--event-id", ids.new_id("ev")],
                           capture_output=True, text=True, env=env)
    assert other.returncode == 1 and json.loads(other.stdout)["reason"] == "wrong_event"


# ------------------------------------------------------------------ imports
def test_the_verify_function_imports_neither_stripe_nor_pil_nor_qrcode():
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('app', {str(ROOT / 'functions/verify/app.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert callable(module.lambda_handler)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('stripe', 'PIL', 'qrcode')))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers/common/python")]),
           "TABLE_NAME": "t", "QR_PUBLIC_KEYS_PARAMETER": "p", "POWERTOOLS_METRICS_NAMESPACE": "Ticketing"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT / "functions/verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _altered(code: str) -> str:
    """The code with one signature character changed (never a no-op)."""
    index = len(code) - 10
    return code[:index] + ("B" if code[index] != "B" else "C") + code[index + 1:]
