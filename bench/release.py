"""Hold release on the local stack: N holds lapse at once, then one run of the expiry job
(`ExpireHoldsFunction`, invoked as the schedule invokes it) releases them; prints how long the
release took and the holds returned per second, then the PaymentIntent cancels that followed.

    python -m bench.release --holds 1000        (starts its own stack; a few minutes here)

The holds are made through the API (checkout, 32 at a time), then their `expires_at` is moved
into the past in the table, as the integration tests do. The stack's own schedule is off, so
only the timed run touches them. The Stripe budget is raised so the checkouts are all admitted
(the release itself makes no Stripe call; the cancels then run at the stand-in's speed, not at
Stripe's rate). moto's server is much slower than DynamoDB (it copies the table in every
transaction), so this is a floor for what AWS does, not an estimate of it.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

AT_ONCE = 32


def run(stack: Any, holds: int) -> dict[str, float]:
    from local import stack as stack_module
    from tests.integration.support import Api  # the tests' API client: tokens as the authorizer wants them

    api = Api(stack)
    admin = api.token(["admin"])
    event = api.post("/api/events/", token=admin, json={
        "name": "Release", "venue": "Hall", "currency": "usd", "starts_at": "2031-01-01T18:00:00Z", "ends_at": "2031-01-01T22:00:00Z",
    }).json()
    ticket_type = api.post(f"/api/events/{event['id']}/ticket-types/", token=admin,
                           json={"name": "GA", "price_cents": 1000, "capacity": holds * 2}).json()

    def hold(_: int) -> str:
        answer = api.post("/api/tickets/stripe/checkout/", token=api.token([], sub=f"lapser-{uuid.uuid4().hex[:10]}"),
                          json={"event_id": event["id"], "items": [{"ticket_type_id": ticket_type["id"], "qty": 2}]})
        assert answer.status_code == 201, answer.text
        return answer.json()["order_id"]

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        order_ids = list(pool.map(hold, range(holds)))
    made_in = time.monotonic() - began
    ddb = stack.client("dynamodb")
    past = "2000-01-01T00:00:00Z"

    def lapse(order_id: str) -> None:
        ddb.update_item(
            TableName=stack_module.TABLE, Key={"PK": {"S": f"ORDER#{order_id}"}, "SK": {"S": "META"}},
            UpdateExpression="SET expires_at = :e, GSI2SK = :s",
            ExpressionAttributeValues={":e": {"S": past}, ":s": {"S": f"{past}#{order_id}"}},
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lapse, order_ids))
    released = canceled = 0
    release_seconds = 0.0
    runs = 0
    began = time.monotonic()
    while released < holds and runs < 20:  # one run should do; a slow machine may need the next
        answer = requests.post(f"{stack.api_url}/_local/invoke/ExpireHoldsFunction", json={}, timeout=120)
        assert answer.status_code == 200, answer.text
        result = answer.json()
        released += result["expired"]
        canceled += result["canceled"]
        release_seconds += result["release_seconds"]
        runs += 1
    job_seconds = time.monotonic() - began
    while canceled < released and runs < 40:
        result = requests.post(f"{stack.api_url}/_local/invoke/ExpireHoldsFunction", json={}, timeout=120).json()
        canceled += result["canceled"]
        runs += 1
    remaining = sum(int(item["remaining"]["N"]) for item in ddb.scan(
        TableName=stack_module.TABLE, FilterExpression="begins_with(PK, :p)",
        ExpressionAttributeValues={":p": {"S": f"INV#{ticket_type['id']}#"}})["Items"])
    assert remaining == holds * 2, f"{remaining} seats on sale of {holds * 2}"
    return {"holds": holds, "made_seconds": made_in, "released": released, "release_seconds": release_seconds,
            "per_second": released / release_seconds if release_seconds else float("inf"), "runs": runs,
            "job_seconds": job_seconds, "canceled": canceled}


def main(argv: list[str] | None = None) -> int:
    from bench.common import setup
    from local.ports import free_port
    from local.stack import Stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holds", type=int, default=1000)
    args = parser.parse_args(argv)
    setup()
    stack = Stack(api_port=free_port(), stripe_port=free_port(), aws_port=free_port(), quiet=True, seed_demo=False,
                  state_dir=Path(".local/release"), schedule_seconds=86_400,
                  extra_env={"STRIPE_RATE_TOTAL": "10000", "STRIPE_RATE_PER_ENDPOINT": "10000"}).start()
    try:
        found = run(stack, args.holds)
    finally:
        stack.stop()
    print(f"hold release on the local stack: {found['holds']:,} holds (made in {found['made_seconds']:.0f} s) lapsed at once;"
          f" the expiry job released {found['released']:,} in {found['release_seconds']:.1f} s of release work"
          f" ({found['per_second']:.0f} a second; {found['runs']} run(s), {found['job_seconds']:.0f} s with the cancels);"
          f" {found['canceled']:,} PaymentIntents canceled after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
