"""Inventory rules in process: the shard plan, and holds and releases against DynamoDB
(moto) under any sequence of operations."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketing import checkout, inventory, orders
from ticketing.lifecycle import orders as lifecycle
from ticketing.auth import Caller


@given(
    remaining=st.dictionaries(st.integers(0, 15), st.integers(0, 30), min_size=1, max_size=16),
    qty=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_a_plan_takes_exactly_the_quantity_from_shards_that_have_it(remaining, qty, seed):
    total = sum(remaining.values())
    if qty > total:
        with pytest.raises(inventory.SoldOut) as caught:
            inventory.plan(remaining, qty, random.Random(seed))
        assert caught.value.remaining == total
        return
    taken = inventory.plan(remaining, qty, random.Random(seed))
    assert sum(taken.values()) == qty
    assert all(0 < take <= remaining[shard] for shard, take in taken.items())
    if any(left >= qty for left in remaining.values()):
        assert len(taken) == 1  # one shard, one write, when one shard can serve it


def test_single_shard_plans_spread_over_the_shards():
    chosen = {next(iter(inventory.plan({n: 50 for n in range(16)}, 2, random.Random(i)))) for i in range(200)}
    assert len(chosen) == 16


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("hold"), st.integers(0, 4), st.integers(1, 6), st.integers(1, 6)),
        st.tuples(st.just("release"), st.integers(0, 30), st.just(0), st.just(0)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_any_sequence_of_holds_and_releases_keeps_the_books(aws, catalogue, ops):
    """sold + held + remaining == capacity per type, remaining never negative, held equals
    what the pending orders say, and a release happens once however often it is asked."""
    from tests.unit.test_catalogue import make_event
    from tests.unit.conftest import ADMIN
    event = make_event(catalogue)
    types = []
    for name, capacity in (("A", 23), ("B", 7)):
        status, created, _ = catalogue(
            "POST", f"/api/events/{event['id']}/ticket-types/", {"name": name, "price_cents": 100, "capacity": capacity}, claims=ADMIN
        )
        assert status == 201
        types.append((created["id"], capacity))
    event_item, type_items = checkout.catalogue.load_event(event["id"])
    by_id = {t.type_id: t for t in type_items}
    placed: list[orders.OrderItem] = []
    for op, who, qty_a, qty_b in ops:
        if op == "hold":
            buyer = Caller(sub=f"buyer-{who}", email_verified=True)
            chosen = [(by_id[types[0][0]], qty_a), (by_id[types[1][0]], qty_b)]
            try:
                hold = checkout._hold(event_item, None, chosen, buyer)
            except Exception as exc:  # sold out or too many holds: nothing may change
                assert getattr(exc, "error", "") in ("Not enough tickets available", "Too many requests"), exc
                continue
            placed.append(hold.order)
        elif placed:
            order = placed[who % len(placed)]
            lifecycle.release(order, "canceled", "test")
            assert lifecycle.release(order, "canceled", "test") is False  # a second release changes nothing
    pending = [o for o in placed if (orders.get(o.order_id).status == "pending")]
    from ticketing.table import InventoryShard

    for type_id, capacity in types:
        shards = [s for s in InventoryShard.scan(InventoryShard.PK.startswith(f"INV#{type_id}#"))]
        assert all(int(s.remaining) >= 0 for s in shards)
        held_by_orders = sum(int(line.qty) for o in pending for line in o.lines if line.type_id == type_id)
        assert sum(int(s.held) for s in shards) == held_by_orders
        assert sum(int(s.remaining) for s in shards) + held_by_orders == capacity
