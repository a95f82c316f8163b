"""Organiser rules in process: capacity resizing plans, CSV cells, the scatter-gather
cursor over GSI3's partitions (moto), and roles before validation."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import unquote, urlparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketing import inventory, pages, reports
from ticketing.pages import BadCursor, encode_cursor
from ticketing.table import OrderItem, Payment, TicketItem, event_index_partitions, event_orders_index
from tests.conftest import load_function
from tests.unit.conftest import ADMIN, CUSTOMER, Invoker, _Context


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


def test_a_forged_scatter_gather_cursor_is_refused(aws):
    partitions = event_index_partitions("ev_1", "ORDERS")
    good = {"p": {"3": "2031-01-01T00:00:00Z#or_1"}, "x": [0, 1]}
    assert pages._positions(encode_cursor(good), len(partitions)) == good
    for forged in (
        {"p": {"3": "x"}, "x": []},  # not a sort key
        {"p": {str(len(partitions)): "2031-01-01T00:00:00Z#or_1"}, "x": []},  # no such partition
        {"p": {}, "x": list(range(len(partitions)))},  # all exhausted: no cursor is handed out for that
        {"p": {"3": "2031-01-01T00:00:00Z#or_1"}, "x": [3]},
        {"p": {}, "x": ["1"]}, {"p": {}, "x": [1, 1]}, {"p": {}}, {"p": [], "x": []},
        {"PK": {"S": "EVENT#ev_1"}, "SK": {"S": "META"}, "GSI1PK": {"S": "EVENTS"}, "GSI1SK": {"S": "2031#ev_1"}},
    ):
        with pytest.raises(BadCursor):
            pages.gather(OrderItem, partitions, 5, encode_cursor(forged))


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


LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024  # bytes of a synchronous invocation's answer


def test_an_attendee_export_of_50000_tickets_is_a_link_within_lambdas_response_limit(aws, organiser_fn, monkeypatch):
    """Through the handler, the CSV writer and S3 (moto), the answer stays far inside 6 MB.
    The 50,000 tickets come from the table's reader in process: through moto's DynamoDB
    they took 55 s to write and 285 s to read back here (moto scans its table on every
    page), which the suite cannot afford; reading the table is what the CSV tests through
    the local stack check."""
    import boto3

    from ticketing import config, exports
    from ticketing.table import EventItem, event_tickets_index

    monkeypatch.setenv("QR_BUCKET", "exports-test")
    config.settings.cache_clear()
    exports.reset_client()
    boto3.client("s3").create_bucket(Bucket="exports-test")
    event_id, created = "ev_big", "2031-01-01T00:00:00Z"
    EventItem(*EventItem.key(event_id), GSI1SK=f"{created}#{event_id}", event_id=event_id, name="Big", venue="Stadium",
              starts_at=created, ends_at=created, currency="usd", created_at=created, created_by="x").save()
    tickets = [
        TicketItem(
            *TicketItem.key(f"tk_{n:020d}"), **event_tickets_index(event_id, f"tk_{n:020d}", created), ticket_id=f"tk_{n:020d}",
            serial=f"S{n:06d}", order_id=f"or_{n // 4:020d}", type_name="General admission", status="used",
            holder_name=f"Holder Number {n}, Jr.", holder_email=f"holder.number{n}@example.com", used_at=created, gate="North gate 1",
        )
        for n in range(50_000)
    ]
    partitions = event_index_partitions(event_id, "TICKETS")
    monkeypatch.setattr(reports, "_every", lambda model, asked, condition=None, attributes=None: iter(tickets) if asked == partitions else iter(()))
    try:
        answer = organiser_fn.lambda_handler(_attendees_event(event_id), _Context())
        assert answer["statusCode"] == 200
        assert len(json.dumps(answer).encode()) < LAMBDA_RESPONSE_LIMIT
        body = json.loads(answer["body"])
        assert set(body) == {"export_url", "expires_at"}
        url = urlparse(body["export_url"])
        assert "X-Amz-Signature=" in url.query and url.hostname.startswith("exports-test.")
        stored = boto3.client("s3").get_object(Bucket="exports-test", Key=unquote(url.path.lstrip("/")))
        text = stored["Body"].read().decode()
        assert len(text.encode()) > LAMBDA_RESPONSE_LIMIT  # inline, it would not have fitted
        rows = list(csv.reader(io.StringIO(text, newline="")))
        assert len(rows) == 50_001 and len({row[0] for row in rows[1:]}) == 50_000
        assert stored["ContentType"].startswith("text/csv")
    finally:
        monkeypatch.delenv("QR_BUCKET")
        config.settings.cache_clear()
        exports.reset_client()


def _attendees_event(event_id: str) -> dict:
    path = f"/api/events/{event_id}/attendees/"
    return {
        "version": "2.0", "routeKey": "GET /api/events/{event_id}/attendees/", "rawPath": path, "rawQueryString": "format=csv",
        "queryStringParameters": {"format": "csv"}, "headers": {}, "isBase64Encoded": False,
        "requestContext": {"accountId": "123456789012", "apiId": "unit", "domainName": "unit.test", "requestId": "r",
                           "routeKey": "GET /api/events/{event_id}/attendees/", "stage": "$default", "time": "x", "timeEpoch": 0,
                           "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "pytest"},
                           "authorizer": {"jwt": {"claims": ADMIN, "scopes": None}}},
    }
