"""The catalogue: in-process latency and AWS calls per request."""

from __future__ import annotations

from bench.common import calls_text, count_aws_calls, median_ms, table


def run() -> str:
    from moto import mock_aws

    from bench.common import create_table_and_secrets
    from tests.conftest import load_function
    from tests.unit.conftest import ADMIN, Invoker

    rows = []
    with count_aws_calls() as calls, mock_aws():
        create_table_and_secrets()
        call = Invoker(load_function("catalogue"))
        status, event, _ = call(
            "POST", "/api/events/",
            {"name": "Bench", "venue": "Hall", "currency": "usd", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T22:00:00Z"},
            claims=ADMIN,
        )
        assert status == 201, event
        for index in range(5):
            call("POST", f"/api/events/{event['id']}/ticket-types/", {"name": f"T{index}", "price_cents": 1000, "capacity": 800}, claims=ADMIN)

        def measure(label: str, method: str, path: str, **kwargs) -> None:
            calls.clear()
            call(method, path, **kwargs)
            counted = dict(calls)
            rows.append((f"{label}: AWS calls per request", calls_text(counted)))
            rows.append((f"{label}: median in process (moto)", f"{median_ms(lambda: call(method, path, **kwargs), repeat=30):.1f} ms"))

        measure("GET event (5 types, 80 shards)", "GET", f"/api/events/{event['id']}/")
        measure("GET events list", "GET", "/api/events/")
        measure(
            "POST ticket type (800 seats)", "POST", f"/api/events/{event['id']}/ticket-types/",
            body={"name": "X", "price_cents": 100, "capacity": 800}, claims=ADMIN,
        )

    return table(rows, "Catalogue")
