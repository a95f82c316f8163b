"""The gate: DynamoDB calls per scan (counted) and time per verify in process (the verify
function's cold start is in the cold-start table)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from bench.common import calls_text, count_aws_calls, environment, median_ms, table

QR_SECRET = "bench/qr-signing"
QR_PUBLIC = "/bench/qr-public-keys"
SCANNER = {"sub": "bench-scanner", "cognito:groups": "[scanner]"}
OFFLINE_BATCH = 100


def _tickets(n: int, event_id: str) -> list[tuple[str, str]]:
    """n valid tickets of one event in the table, with their signed codes."""
    from ticketing import ids, qr
    from ticketing.table import TicketItem

    made = []
    ends = (datetime.now(timezone.utc) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with TicketItem.batch_write() as batch:
        for _ in range(n):
            ticket_id = ids.new_id("tk")
            batch.save(TicketItem(
                *TicketItem.key(ticket_id), GSI1PK="CUSTOMER#bench", GSI1SK=f"TICKET#{ticket_id}", ticket_id=ticket_id,
                serial="TKT-BENCH001", order_id="or_bench", event_id=event_id, type_id="tt_bench", type_name="GA",
                price_cents=2500, currency="usd", status="valid", customer_sub="bench", created_at="2026-01-01T00:00:00Z",
                issued_at="2026-01-01T00:00:00Z", event_name="Bench", event_ends_at=ends,
            ))
            made.append((ticket_id, qr.sign(ticket_id, event_id)))
    return made


def run() -> str:
    import boto3
    from moto import mock_aws

    from bench.common import create_table_and_secrets
    from tests.conftest import load_function
    from tests.unit.conftest import Invoker
    from ticketing import ids, qr

    rows = []
    deployed = {"QR_SIGNING_SECRET_NAME": QR_SECRET, "QR_PUBLIC_KEYS_PARAMETER": QR_PUBLIC, "POWERTOOLS_PARAMETERS_MAX_AGE": "300"}
    with environment(deployed), count_aws_calls() as calls, mock_aws():
        create_table_and_secrets()
        keys = {"active": "kbench", "keys": {"kbench": qr.new_private_key()}}
        boto3.client("secretsmanager").create_secret(Name=QR_SECRET, SecretString=json.dumps(keys))
        boto3.client("ssm").put_parameter(Name=QR_PUBLIC, Value=json.dumps(qr.public_document(keys)), Type="String")
        gate = Invoker(load_function("verify"))
        event_id = ids.new_id("ev")
        tickets = _tickets(60 + OFFLINE_BATCH, event_id)
        _, code = tickets[0]
        forged = code[:-4] + ("AAAA" if not code.endswith("AAAA") else "BAAA")

        def verify(scanned: str) -> None:
            status, body, _ = gate("GET", "/api/tickets/verify/", query={"code": scanned}, claims=SCANNER)
            assert status == 200, body

        verify(code)  # warm: keys, connections
        for label, scanned in (("verify, valid code", code), ("verify, forged code", forged)):
            calls.clear()
            verify(scanned)
            rows.append((f"DynamoDB calls per {label}", calls_text(calls, "dynamodb")))

        fresh = iter(tickets[1:60])

        def check_in() -> None:
            ticket_id, _ = next(fresh)
            status, body, _ = gate("POST", f"/api/tickets/{ticket_id}/checkin/", {"gate": "North"}, claims=SCANNER)
            assert status == 200, body

        calls.clear()
        check_in()
        rows.append(("DynamoDB calls per check-in (one write + the audit record)", calls_text(calls, "dynamodb")))
        calls.clear()
        status, _, _ = gate("POST", f"/api/tickets/{tickets[1][0]}/checkin/", {"gate": "South"}, claims=SCANNER)
        assert status == 409
        rows.append(("DynamoDB calls per second scan (409 with the first gate)", calls_text(calls, "dynamodb")))
        batch = [{"code": c, "scanned_at": "2026-01-01T10:00:00Z", "gate": "North"} for _, c in tickets[60:]]
        calls.clear()
        status, _, _ = gate("POST", "/api/scanner/checkins/", batch, claims=SCANNER)
        assert status == 200
        rows.append((f"DynamoDB calls per offline upload of {OFFLINE_BATCH} scans", calls_text(calls, "dynamodb")))

        rows.append(("verify median in process (moto), valid code", f"{median_ms(lambda: verify(code), repeat=50):.1f} ms"))
        rows.append(("verify median in process (moto), forged code", f"{median_ms(lambda: verify(forged), repeat=50):.1f} ms"))
        rows.append(("check-in median in process (moto)", f"{median_ms(check_in, repeat=40, warmup=2):.1f} ms"))
        rows.append(("signature check alone (qr.verify_with), median", f"{median_ms(lambda: qr.verify_with(code, qr.public_keys()), repeat=200) * 1000:.0f} µs"))

    return table(rows, "Gate")
