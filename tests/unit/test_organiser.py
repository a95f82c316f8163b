"""Organiser rules in process: capacity resizing plans, CSV cells, the scatter-gather
cursor over GSI3's ten partitions (moto), and roles before validation."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketing import inventory, pages, reports
from ticketing.table import OrderItem, Payment, event_index_partitions, event_orders_index
from tests.conftest import load_function
from tests.unit.conftest import ADMIN, CUSTOMER, Invoker


@given(
    remaining=st.lists(st.integers(0, 60), min_size=1, max_size=16),
    committed=st.integers(0, 200),
    target=st.integers(1, 2000),
    shard_size=st.integers(1, 60),
)
def test_a_resize_plan_keeps_the_books_and_never_takes_committed_seats(remaining, committed, target, shard_size):
    shards = dict(enumerate(remaining))
    current = sum(remaining) + committed
    if current == 0:
        return
    if target < current and sum(remaining) < current - target:
        with pytest.raises(inventory.BelowCommitted) as caught:
            inventory.resize_plan(shards, current, target, shard_size, 16)
        assert caught.value.committed == committed
        return
    deltas = inventory.resize_plan(shards, current, target, shard_size, 16)
    assert sum(deltas.values()) == target - current
    for index, delta in deltas.items():
        if index < len(remaining):
            assert remaining[index] + delta >= 0  # a cut takes only free seats
        else:
            assert delta > 0 and index < max(16, len(remaining))  # new shards, up to the limit
    assert sorted(i for i in deltas if i >= len(remaining)) == list(range(len(remaining), len(remaining) + sum(i >= len(remaining) for i in deltas)))


@pytest.mark.parametrize("value, cell", [
    ("=SUM(A1)", "'=SUM(A1)"), ("+1", "'+1"), ("-1", "'-1"), ("@cmd", "'@cmd"), ("\tx", "'\tx"),
    ("O'Brien, \"Jo\"", "O'Brien, \"Jo\""), (None, ""), ("a-b", "a-b"),
])
def test_csv_cells_defuse_formulas_and_nothing_else(value, cell):
    assert reports.csv_cell(value) == cell
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([reports.csv_cell(value)])
    assert next(csv.reader(io.StringIO(out.getvalue(), newline=""))) == [cell]


def _order(event_id: str, n: int, status: str) -> OrderItem:
    order_id = f"or_{n:04d}"
    created = f"2030-01-01T00:{n // 60:02d}:{n % 60:02d}Z"
    item = OrderItem(
        *OrderItem.key(order_id), GSI1PK="CUSTOMER#x", GSI1SK=f"ORDER#{created}#{order_id}",
        **event_orders_index(event_id, order_id, created), order_id=order_id, event_id=event_id, customer_sub="x",
        status=status, total_cents=100, currency="usd", lines=[], ticket_ids=[], payment=Payment(),
        created_at=created, expires_at=created, updated_at=created,
    )
    item.save()
    return item


def test_the_scatter_gather_cursor_pages_every_partition_newest_first_without_repeats(aws):
    made = [_order("ev_1", n, "paid" if n % 3 else "pending") for n in range(47)]
    _order("ev_2", 99, "paid")  # another event's order never shows
    partitions = event_index_partitions("ev_1", "ORDERS")
    assert len({o.GSI3PK for o in made}) > 5  # spread over the partitions
    for limit, condition, expected in (
        (7, None, made), (1, None, made), (5, OrderItem.status == "pending", [o for o in made if o.status == "pending"]),
    ):
        seen, cursor = [], None
        while True:
            page, after = pages.gather(OrderItem, partitions, limit, cursor, condition)
            assert len(page) <= limit
            seen += [o.order_id for o in page]
            cursor = after(len(page))
            if cursor is None:
                break
        assert seen == [o.order_id for o in sorted(expected, key=lambda o: o.GSI3SK, reverse=True)]
    # A prefix: resuming after the first 2 of a page of 5 hands out the 3rd next.
    page, after = pages.gather(OrderItem, partitions, 5, None)
    again, _ = pages.gather(OrderItem, partitions, 5, after(2))
    assert again[0].order_id == page[2].order_id


@pytest.fixture(scope="module")
def organiser_fn():
    return load_function("organiser")


def test_customers_get_403_before_their_input_is_validated(aws, organiser_fn):
    call = Invoker(organiser_fn)
    for method, path, query in (
        ("GET", "/api/events/ev_x/orders/", {"limit": "0"}), ("GET", "/api/events/ev_x/attendees/", {"format": "xls"}),
        ("GET", "/api/events/ev_x/stats/", None), ("POST", "/api/events/ev_x/cancel/", None), ("GET", "/api/events/ev_x/cancel", None),
    ):
        status, body, _ = call(method, path, query=query, claims=CUSTOMER)
        assert status == 403 and body["error"] == "Permission denied"
    status, body, _ = call("GET", "/api/events/ev_missing/stats/", claims=ADMIN)
    assert status == 404
