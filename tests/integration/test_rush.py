"""A rush through the local gateway, as a front end's load test makes one: every client
is answered (none reset), checkouts all succeed while seats last, and the seats add up."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.integration.test_checkout import CHECKOUT, available, shards

# The rush and the soak load the machine: on one test worker, one after the other.
pytestmark = pytest.mark.xdist_group("load")


def at_once(count: int, call):
    """`call(i)` from `count` threads released together; the answers (or exceptions) in order."""
    barrier = threading.Barrier(count)

    def one(index: int):
        barrier.wait()
        try:
            return call(index)
        except requests.RequestException as exc:  # a reset connection is a failed answer, kept to report
            return exc

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_64_customers_checking_out_at_once_are_all_answered_201(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 100)})
    tokens = [api.token([]) for _ in range(64)]
    body = {"event_id": event_id, "items": [{"ticket_type_id": types["GA"], "qty": 1}]}
    answers = at_once(64, lambda i: requests.post(stack.api_url + CHECKOUT, json=body, timeout=30,
                                                  headers={"Authorization": f"Bearer {tokens[i]}"}))
    failed = [a if isinstance(a, Exception) else (a.status_code, a.text[:200]) for a in answers
              if isinstance(a, Exception) or a.status_code != 201]
    assert failed == [], failed
    assert len({a.json()["order_id"] for a in answers}) == 64
    assert available(api, event_id, types["GA"]) == 100 - 64
    remaining, held, sold, capacity = shards(stack, types["GA"])
    assert (remaining, held, sold, capacity) == (36, 64, 0, 100)


def test_256_concurrent_reads_of_an_event_are_all_answered_200(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 100), "VIP": (9000, 20)})
    answers = at_once(256, lambda _: requests.get(f"{stack.api_url}/api/events/{event_id}/", timeout=30))
    failed = [a if isinstance(a, Exception) else (a.status_code, a.text[:200]) for a in answers
              if isinstance(a, Exception) or a.status_code != 200]
    assert failed == [], failed
    assert {tuple(t["available"] for t in a.json()["ticket_types"]) for a in answers} == {(100, 20)}
