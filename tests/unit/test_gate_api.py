"""The gate in process (tests/unit/world.py): paid tickets, every verify reason, refusals,
who may scan, retried check-ins, the offline upload and the keys document an offline
scanner uses. Four gates scanning one ticket at once go through the local stack
(tests/integration/test_gate.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import ROOT
from tests.shop import buy, paid_tickets, table_item
from tests.unit.world import QR_SECRET, TABLE
from ticketing import clock, ids, qr
from ticketing.offline import verify_offline
from ticketing.table import scan_partitions


VERIFY = "/api/tickets/verify/"
DENIED = {"error": "Permission denied", "detail": "You do not have permission to verify this ticket"}


# ------------------------------------------------------------------ helpers
@pytest.fixture
def paid(api, stack):
    """`paid(n)`: n valid tickets of a fresh event, bought and paid through Stripe:
    (event_id, types, [(ticket_id, code)]) (tests/shop.py)."""
    return lambda n: paid_tickets(api, stack, n)


def sign(stack, ticket_id: str, event_id: str) -> str:
    """A correctly signed code, made with the local stack's own QR signing key."""
    secret = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=QR_SECRET)["SecretString"])
    return qr.sign_with(secret["keys"][secret["active"]], secret["active"], ticket_id, event_id)


def set_ticket(stack, ticket_id: str, expression: str, values: dict[str, str], names: dict[str, str] | None = None) -> None:
    stack.client("dynamodb").update_item(
        TableName=TABLE, Key={"PK": {"S": f"TICKET#{ticket_id}"}, "SK": {"S": "META"}},
        UpdateExpression=expression, ExpressionAttributeValues={k: {"S": v} for k, v in values.items()},
        **({"ExpressionAttributeNames": names} if names else {}),
    )


def void(stack, ticket_id: str, event_id: str) -> str:
    """What lifecycle.orders.void_actions writes: void, and onto the event's voided list (GSI2)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    set_ticket(stack, ticket_id, "SET #s = :v, voided_at = :t, GSI2PK = :pk, GSI2SK = :sk",
               {":v": "void", ":t": now, ":pk": f"VOIDED#{event_id}", ":sk": f"{now}#{ticket_id}"}, {"#s": "status"})
    return now


# -------------------------------------------------------------------- tests
def test_every_verify_reason(api, stack, paid, make_event, scanner):
    event_id, types, tickets = paid(5)
    (ok, ok_code), (used, used_code), (gone, gone_code), (late, late_code), (_, other_code) = tickets

    def reason(code, **query):
        answer = api.get(VERIFY, token=scanner, params={"code": code, **query})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["is_valid"] is (body["reason"] == "ok")
        return body

    shown = reason(ok_code)
    assert shown["reason"] == "ok" and shown["ticket_id"] == ok and shown["status"] == "valid"
    assert shown["event_name"].startswith("Test ") and shown["ticket_type_name"] == "GA" and shown["serial"].startswith("TKT-")
    assert shown["user_email"] == "fan@example.com" and shown["user_name"] == "Fan" and shown["issued_at"] and shown["order_id"]

    assert api.post(f"/api/tickets/{used}/checkin/", token=scanner, json={"gate": "North"}).status_code == 200
    seen = reason(used_code)
    assert (seen["reason"], seen["status"], seen["gate"]) == ("already_used", "used", "North") and seen["used_at"]

    void(stack, gone, event_id)
    assert reason(gone_code)["reason"] == "void"

    # The gate judges by the event's end now (a copy on the ticket from checkout is only a hint).
    set_ticket(stack, late, "SET event_ends_at = :e", {":e": "2000-01-01T00:00:00Z"})
    assert reason(late_code)["reason"] == "ok"
    over_event, _, [(_, over_code)] = paid(1)
    stack.client("dynamodb").update_item(
        TableName=TABLE, Key={"PK": {"S": f"EVENT#{over_event}"}, "SK": {"S": "META"}},
        UpdateExpression="SET ends_at = :e", ExpressionAttributeValues={":e": {"S": "2000-01-01T00:00:00Z"}},
    )  # an event over (edits refuse past ends; written directly, before any scan of it)
    assert reason(over_code)["reason"] == "event_over"

    assert reason(other_code, event_id=ids.new_id("ev"))["reason"] == "wrong_event"

    unpaid_order = buy(api, api.token([]), event_id, [(types["GA"], 1)]).json()
    pending_id = unpaid_order["tickets"][0]["id"]
    assert reason(sign(stack, pending_id, event_id))["reason"] == "unpaid"

    unknown = reason(sign(stack, ids.new_id("tk"), event_id))
    assert unknown["reason"] == "unknown_ticket" and unknown["serial"] is None

    for forged in (ok_code[:-4] + "AAAA", ok_code.replace(ok, ids.new_id("tk")), "TKT:456:123:TKT-ABC12345:hash", ""):
        assert reason(forged)["reason"] == "bad_signature"


def test_check_in_refusals_over_http(api, stack, paid, scanner):
    event_id, _, [(gone, gone_code), (fine, fine_code)] = paid(2)
    void(stack, gone, event_id)
    answer = api.post(f"/api/tickets/{gone}/checkin/", token=scanner, json={"gate": "A"})
    assert answer.status_code == 409 and answer.json()["reason"] == "void"
    answer = api.post(f"/api/tickets/{ids.new_id('tk')}/checkin", token=scanner, json={"gate": "A"})
    assert answer.status_code == 404 and answer.json()["reason"] == "unknown_ticket"
    answer = api.post("/api/tickets/checkin/", token=scanner, json={"code": _altered(fine_code), "gate": "A"})
    assert answer.status_code == 422 and answer.json()["reason"] == "bad_signature" and answer.json()["field"] == "code"
    answer = api.post("/api/tickets/checkin/", token=scanner, json={"code": fine_code, "gate": "A"})
    assert answer.status_code == 200 and answer.json()["ticket"]["id"] == fine
    answer = api.post("/api/tickets/checkin", token=scanner, json={"code": fine_code, "gate": "B"})
    assert answer.status_code == 409 and (answer.json()["reason"], answer.json()["gate"]) == ("already_used", "A")


def test_only_scanners_and_admins_may_use_the_gate(api, paid):
    _, _, [(ticket_id, code)] = paid(1)
    customer = api.token([])
    for method, path, kwargs in (
        ("GET", VERIFY, {"params": {"code": code}}),
        ("POST", f"/api/tickets/{ticket_id}/checkin/", {"json": {"gate": "A"}}),
        ("POST", "/api/tickets/checkin/", {"json": {"code": code, "gate": "A"}}),
        ("GET", "/api/scanner/keys/", {"params": {"event_id": "ev_x"}}),
        ("POST", "/api/scanner/checkins/", {"json": [{"code": code, "gate": "A", "scanned_at": "2026-01-01T00:00:00Z"}]}),
    ):
        answer = api.request(method, path, token=customer, **kwargs)
        assert answer.status_code == 403 and answer.json() == DENIED, (path, answer.text)
    assert api.get(VERIFY, params={"code": code}).status_code == 401
    assert api.get(VERIFY, token=api.token(["admin"]), params={"code": code}).json()["reason"] == "ok"


def test_a_retried_check_in_with_its_idempotency_key_answers_200_again(api, paid, scanner):
    _, _, [(ticket_id, _)] = paid(1)
    path = f"/api/tickets/{ticket_id}/checkin/"
    key = {"Idempotency-Key": f"scan-{uuid.uuid4().hex}"}
    first = api.post(path, token=scanner, json={"gate": "North"}, headers=dict(key))
    again = api.post(path, token=scanner, json={"gate": "North"}, headers=dict(key))
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert api.post(path, token=scanner, json={"gate": "North"}).status_code == 409  # no key: a second scan


def test_offline_upload_answers_each_scan(api, stack, paid, scanner):
    event_id, _, [(a, code_a), (b, code_b), (c, code_c), (gone, gone_code)] = paid(4)
    void(stack, gone, event_id)
    issued = table_item(stack, f"TICKET#{c}")["issued_at"]
    t0 = datetime.strptime(issued, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    clock.freeze(t0 + timedelta(seconds=1, milliseconds=100))  # the online admission comes a second after the ticket was issued
    online = api.post(f"/api/tickets/{c}/checkin/", token=scanner, json={"gate": "Online"})
    assert online.status_code == 200
    online_at = online.json()["ticket"]["used_at"]
    at = lambda steps: (t0 + timedelta(seconds=10 * steps)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    unknown = sign(stack, ids.new_id("tk"), event_id)
    batch = [
        {"code": code_a, "scanned_at": at(5), "gate": "North"},   # 0 a re-scan at the same gate
        {"code": code_a, "scanned_at": at(1), "gate": "North"},   # 1 a's first admission
        {"code": code_b, "scanned_at": at(2), "gate": "North"},   # 2 b admitted at North ...
        {"code": code_b, "scanned_at": at(3), "gate": "South"},   # 3 ... and at South: conflict
        {"code": code_c, "scanned_at": at(0), "gate": "Online"},  # 4 claims to be earlier than c's online admission
        {"code": gone_code, "scanned_at": at(4), "gate": "North"},  # 5 void
        {"code": unknown, "scanned_at": at(4), "gate": "North"},  # 6 unknown ticket
        {"code": code_a[:-3] + "AAA", "scanned_at": at(4), "gate": "North"},  # 7 altered
        {"code": code_b, "scanned_at": "2001-01-01T00:00:00Z", "gate": "North"},  # 8 before the ticket was issued
    ]
    answer = api.post("/api/scanner/checkins/", token=scanner, json=batch)
    assert answer.status_code == 200, answer.text
    results = {r["index"]: r for r in answer.json()["results"]}
    assert [results[i]["result"] for i in range(9)] == [
        "duplicate", "accepted", "accepted", "conflict", "conflict", "void", "invalid", "invalid", "invalid"]
    assert (results[0]["first_used_at"], results[0]["gate"]) == (at(1), "North")
    assert results[3]["admissions"] == [{"gate": "North", "used_at": at(2)}, {"gate": "South", "used_at": at(3)}]
    assert results[4]["admissions"] == [{"gate": "Online", "used_at": at(0)}, {"gate": "Online", "used_at": online_at}]
    assert [results[i]["reason"] for i in (6, 7, 8)] == ["unknown_ticket", "bad_signature", "before_issue"]
    # Each ticket keeps its earliest offline admission; an online admission is never rewritten.
    assert (table_item(stack, f"TICKET#{a}")["used_at"], table_item(stack, f"TICKET#{a}")["gate"]) == (at(1), "North")
    assert table_item(stack, f"TICKET#{b}")["gate"] == "North"
    assert (table_item(stack, f"TICKET#{c}")["used_at"], table_item(stack, f"TICKET#{c}")["admission"]) == (online_at, "online")
    # A second upload from another gate after the fact is a conflict, not a silent merge.
    late = api.post("/api/scanner/checkins/", token=scanner, json=[{"code": code_a, "scanned_at": at(6), "gate": "East"}]).json()
    assert late["results"][0]["result"] == "conflict"
    assert late["results"][0]["admissions"] == [{"gate": "North", "used_at": at(1)}, {"gate": "East", "used_at": at(6)}]
    # Every attempt is audited, forgeries included.
    day = at(1)[:10]
    scans = [
        item for partition in scan_partitions(event_id, day)
        for item in stack.client("dynamodb").query(
            TableName=TABLE, KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": partition}},
        )["Items"]
    ]
    assert len([s for s in scans if s["action"]["S"] == "offline"]) >= 8  # 7 signed today + the late one (2001's: its own day)


def test_keys_document_verifies_real_codes_offline_and_lists_voided_tickets(api, stack, paid, scanner, tmp_path):
    event_id, _, [(ok, ok_code), (gone, gone_code)] = paid(2)
    before = api.get("/api/scanner/keys/", token=scanner, params={"event_id": event_id}).json()
    assert before["voided"] == [] and before["generated_at"].endswith("Z")
    void(stack, gone, event_id)
    document = api.get("/api/scanner/keys/", token=scanner, params={"event_id": event_id, "since": before["generated_at"]}).json()
    assert [v["ticket_id"] for v in document["voided"]] == [gone]
    assert document["event_id"] == event_id and document["format"] == "TKT1" and document["keys"]
    keys_only = api.get("/api/scanner/keys/", token=scanner)  # no event_id: the keys alone
    assert keys_only.status_code == 200, keys_only.text
    assert keys_only.json()["keys"] == document["keys"] and keys_only.json()["event_id"] is None
    assert keys_only.json()["voided"] == [] and keys_only.json()["restored"] == []
    forged = api.get("/api/scanner/keys/", token=scanner, params={"event_id": event_id, "cursor": "zz"})
    assert forged.status_code == 400 and forged.json()["code"] == "bad_cursor"

    assert verify_offline(document, ok_code)["reason"] == "ok"
    assert verify_offline(document, gone_code)["reason"] == "void"
    assert verify_offline(document, _altered(ok_code))["reason"] == "bad_signature"
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(document))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers/common/python")}
    run = lambda code, *extra: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "ticketing.offline", str(keys), code, *extra], capture_output=True, text=True, env=env)
    assert run(ok_code).returncode == 0
    assert run(gone_code).returncode == 1 and json.loads(run(gone_code).stdout)["reason"] == "void"
    assert run(ok_code, "--event-id", ids.new_id("ev")).returncode == 1


def _altered(code: str) -> str:
    """The code with one signature character changed (never a no-op)."""
    index = len(code) - 10
    return code[:index] + ("B" if code[index] != "B" else "C") + code[index + 1:]
