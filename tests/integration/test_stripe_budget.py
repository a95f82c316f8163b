"""Stripe's rate as a budget on a real local stack (localstripe, moto server, the gateway):
200 customers checking out at once with the budget at 20 PaymentIntents a second. Counts, not
timings: localstripe's own `created` times show at most 20 PaymentIntents in any calendar
second, and every customer is either within the budget (201) or told to come back (503 with
Retry-After) holding nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from tests.integration.support import Api, StackUnderTest
from tests.integration.test_checkout import CHECKOUT, holder_count, shards, stripe_client
from tests.integration.test_rush import at_once

pytestmark = pytest.mark.xdist_group("load")

RATE = 20
CUSTOMERS = 200
WORKERS = 16  # execution environments of the checkout function, all started before the rush


@pytest.fixture(scope="module")
def budget_stack(tmp_path_factory) -> Iterator[StackUnderTest]:
    """A stack of its own whose Stripe budget is 20 PaymentIntents a second (the shared one's
    is far above what the other tests ask for)."""
    with StackUnderTest.running(
        tmp_path_factory.mktemp("budget"), quiet=True, seed_demo=False, schedule_seconds=600, concurrency=WORKERS,
        extra_env={"STRIPE_RATE_PER_ENDPOINT": str(RATE), "STRIPE_RATE_TOTAL": "100", "INVENTORY_SHARD_SIZE": "10"},
    ) as instance:
        yield instance


def test_200_checkouts_at_once_never_pass_20_payment_intents_a_second(budget_stack):
    api = Api(budget_stack)
    admin = api.token(["admin"])
    event = api.post("/api/events/", token=admin, json={
        "name": "Budget rush", "venue": "Hall", "currency": "usd", "starts_at": "2031-01-01T18:00:00Z", "ends_at": "2031-01-01T22:00:00Z",
    }).json()
    ticket_type = api.post(f"/api/events/{event['id']}/ticket-types/", token=admin,
                           json={"name": "GA", "price_cents": 1500, "capacity": 1000}).json()
    subs = [f"budget-{i}" for i in range(CUSTOMERS)]
    tokens = [api.token([], sub=sub) for sub in subs]
    # The checkout function's execution environments started before the rush (a 404 each),
    # so the rush measures the budget, not cold starts.
    warm = at_once(WORKERS, lambda i: requests.get(f"{budget_stack.api_url}/api/orders/or_warm{i}/", timeout=60,
                                                   headers={"Authorization": f"Bearer {tokens[i]}"}))
    assert [a.status_code for a in warm] == [404] * WORKERS
    # One seat each: the local AWS stand-in copies the table for every item of a transaction
    # under one lock, so smaller holds keep the rush inside API Gateway's 30 s on a busy machine.
    body = {"event_id": event["id"], "items": [{"ticket_type_id": ticket_type["id"], "qty": 1}]}
    answers = at_once(CUSTOMERS, lambda i: requests.post(budget_stack.api_url + CHECKOUT, json=body, timeout=60,
                                                         headers={"Authorization": f"Bearer {tokens[i]}"}))
    broken = [a for a in answers if isinstance(a, Exception) or a.status_code not in (201, 503)]
    assert broken == [], [a if isinstance(a, Exception) else (a.status_code, a.text[:200]) for a in broken]
    admitted = [a.json() for a in answers if a.status_code == 201]
    refused = [(sub, a) for sub, a in zip(subs, answers, strict=True) if a.status_code == 503]
    assert admitted and refused  # the budget admitted some and turned the rest away
    for _, answer in refused:
        assert int(answer.headers["Retry-After"]) >= 1, answer.text
    assert Counter(answer.json()["code"] for _, answer in refused)["stripe_budget"] > 0
    # Nothing held for those turned away; the seats add up to what was admitted.
    assert all(holder_count(budget_stack, sub, event["id"]) == 0 for sub, _ in refused)
    remaining, held, sold, capacity = shards(budget_stack, ticket_type["id"])
    assert (held, remaining + held + sold) == (len(admitted), capacity)
    # Stripe's own clock: at most RATE PaymentIntents created in any second.
    intents = list(stripe_client(budget_stack).v1.payment_intents.list(params={"limit": 100}).auto_paging_iter())
    assert sorted(i.id for i in intents) == sorted(order["payment_intent_id"] for order in admitted)
    created = Counter(int(intent.created) for intent in intents)
    assert max(created.values()) <= RATE, sorted(created.items())
