"""Tickets: QR render times (PNG and SVG, 200 and 1024 px), the image route rendered and
served from S3, and a listing page for a customer with 200 tickets (latency, AWS calls)."""

from __future__ import annotations

import json
from datetime import timedelta

from bench.common import calls_text, count_aws_calls, environment, median_ms, table

CUSTOMER_TICKETS = 200
ORDERS = 20  # 200 tickets over 20 orders of 10


def run() -> str:
    import boto3
    from moto import mock_aws

    from bench.common import create_table_and_secrets
    from local.stack import _new_qr_keys
    from tests.conftest import load_function
    from tests.unit.conftest import Invoker
    from ticketing import qr

    rows = []
    key = qr.new_private_key()
    payload = qr.sign_with(key, "k20261122", "tk_m81yryynw8s0yewh4x84", "ev_m81yryynw8s0yewh4x84")
    for size in (200, 1024):
        for kind, render in (("PNG", qr.render_png), ("SVG", qr.render_svg)):
            body = render(payload, size)
            rows.append((f"render {kind} {size} px: median (size)", f"{median_ms(lambda: render(payload, size), repeat=30):.1f} ms ({len(body):,} bytes)"))

    from tests.unit.test_tickets import T0, seed_order

    with environment({"QR_BUCKET": "bench-qr", "QR_SIGNING_SECRET_NAME": "bench/qr"}), count_aws_calls() as calls, mock_aws():
        create_table_and_secrets()
        boto3.client("s3").create_bucket(Bucket="bench-qr")
        boto3.client("secretsmanager").create_secret(Name="bench/qr", SecretString=json.dumps(_new_qr_keys()))
        call = Invoker(load_function("tickets"))
        sign = lambda ticket_id, event_id: qr.sign_with(key, "k20261122", ticket_id, event_id)  # noqa: E731
        made = []
        for n in range(ORDERS):
            made += seed_order("bench-fan", CUSTOMER_TICKETS // ORDERS, start=T0 + timedelta(minutes=n), sign=sign)[1]
        claims = {"sub": "bench-fan"}

        def page(limit: int, **query) -> None:
            status, answer, _ = call("GET", "/api/me/tickets/", claims=claims, query={"limit": limit, **query})
            assert status == 200 and answer["count"] == limit, answer

        for limit in (50, 100):
            page(limit)
            calls.clear()
            page(limit)
            rows.append((f"my tickets, {CUSTOMER_TICKETS} owned, page of {limit}: AWS calls", calls_text(calls)))
            rows.append((f"my tickets, page of {limit}: median in process (moto)", f"{median_ms(lambda: page(limit), repeat=20):.1f} ms"))
        calls.clear()
        status, answer, _ = call("GET", "/api/me/tickets/", claims=claims, query={"limit": 50, "status": "valid", "event_id": made[0].event_id})
        rows.append(("my tickets filtered (event, status), page of 50: AWS calls", calls_text(calls)))
        calls.clear()
        call("GET", "/api/me/orders/", claims=claims, query={"limit": 20})
        rows.append((f"my orders, {ORDERS} owned, page of 20: AWS calls", calls_text(calls)))

        ticket_id = made[0].ticket_id
        path = f"/api/tickets/{ticket_id}/qr/image/"
        calls.clear()
        call("GET", path, claims=claims, query={"size": 1024})
        rows.append(("QR image 1024 px PNG, first request: AWS calls", calls_text(calls)))
        calls.clear()
        call("GET", path, claims=claims, query={"size": 1024})
        rows.append(("QR image, later requests: AWS calls (no render)", calls_text(calls)))
        rows.append(("QR image 1024 px PNG from S3: median in process (moto)", f"{median_ms(lambda: call('GET', path, claims=claims, query={'size': 1024}), repeat=20):.1f} ms"))
        calls.clear()
        call("GET", f"/api/tickets/{made[1].ticket_id}/qr/data/", claims=claims)
        rows.append(("QR data, first request (renders 2 images): AWS calls", calls_text(calls)))
        calls.clear()
        call("GET", f"/api/tickets/{made[1].ticket_id}/qr/data/", claims=claims)
        rows.append(("QR data, later requests: AWS calls", calls_text(calls)))
    return table(rows, "Tickets and QR codes")
