"""Integration tests: HTTP against the real local stack (moto server, localstripe, the
gateway), started once per test worker on free ports (so a running `make dev` does not
clash) and shared by every module that worker runs, then stopped whatever happens.

How a test uses it:

- `stack`, `api`: the worker's stack and a client for it (`api.get(path, token=...)`).
  Tests isolate themselves by data, never by stack: `make_event(...)` makes a fresh event,
  `api.token([])` a fresh customer. Never assume the table, the mailbox or Stripe hold only
  your own things: find yours by id.
- The stand-ins have global state. Change it only through these fixtures, which put it
  back when the test ends (pass or fail):
    `stripe_faults(status, count=5, path=..., method=..., delay=...)` and
    `stripe_faults.clear()`  — the Stripe stand-in answering 500/429, dropping or slow;
    `aws_faults(service=..., operation=..., status=..., code=..., count=...)` and
    `aws_faults.clear()`, `aws_faults.hits()` — the AWS stand-in failing (SES down, throttling);
    `webhook_retries([])` — the Stripe stand-in's retry schedule ([] loses failed webhooks).
- Never sleep for a fixed time: `wait_for(check)` until what you expect is observable; to
  show something did NOT happen, first wait for a marker proving the system had its
  chance (the webhook's event recorded, the fault hit, the queue drained), then assert.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.integration.support import Api, StackUnderTest, StandIn


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[StackUnderTest]:
    with StackUnderTest.running(
        tmp_path_factory.mktemp("stack"), quiet=True, schedule_seconds=15,
        # Small shards so small test capacities spread over several; a low hold cap to reach it;
        # secrets read afresh on every call, so a test that changes one (a key rotation) and
        # puts it back leaves no function holding the changed value for the tests after it.
        # A Stripe budget well above what any test asks for (test_stripe_budget has a stack of its own at 20/s).
        extra_env={"INVENTORY_SHARD_SIZE": "10", "MAX_HELD_PER_CUSTOMER": "12", "POWERTOOLS_PARAMETERS_MAX_AGE": "0",
                   "STRIPE_RATE_TOTAL": "10000", "STRIPE_RATE_PER_ENDPOINT": "10000"},
    ) as instance:
        yield instance


@pytest.fixture(scope="session")
def api(stack) -> Api:
    return Api(stack)


@pytest.fixture
def stripe_faults(stack) -> Iterator[StandIn]:
    """`stripe_faults(500)`: the next 5 POSTs to /v1/payment_intents fail with 500 (or 429,
    "drop", "slow" with `delay=`); cleared when the test ends."""

    def inject(status, count=5, path="/v1/payment_intents", method="POST", delay=0):
        body = {"status": status, "count": count, "path": path, "method": method, "delay": delay}
        requests.post(f"{stack.stripe_url}/_config/faults", json=body, timeout=5).raise_for_status()

    faults = StandIn(inject, f"{stack.stripe_url}/_config/faults")
    yield faults
    faults.clear()


@pytest.fixture
def aws_faults(stack) -> Iterator[StandIn]:
    """`aws_faults(service="ses", status=503, code="ServiceUnavailable", count=-1)`: matching
    AWS calls fail (count -1: until cleared); cleared when the test ends."""

    def inject(**fault):
        requests.post(f"{stack.aws_url}/_local/faults", json=fault, timeout=5).raise_for_status()

    faults = StandIn(inject, f"{stack.aws_url}/_local/faults")
    yield faults
    faults.clear()


@pytest.fixture
def webhook_retries(stack) -> Iterator:
    """`webhook_retries([])`: the Stripe stand-in delivers each webhook once (a lost webhook
    stays lost); its usual schedule comes back when the test ends."""
    url = f"{stack.stripe_url}/_config/webhook-retries"

    def configure(delays: list[float]) -> None:
        requests.post(url, json={"retry_delays": delays}, timeout=5).raise_for_status()

    yield configure
    requests.post(url, json={}, timeout=5).raise_for_status()
