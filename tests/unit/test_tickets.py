"""My tickets, my orders and QR codes in process (moto): one Query a page, filters and
cursors, 404 for someone else's ticket, images rendered once and then read back, key
rotation that leaves old tickets working."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from bench.common import count_aws_calls
from local.stack import _new_qr_keys
from tests.shop import decode_qr
from tests.unit.conftest import ADMIN, Invoker, load_function
from ticketing import clock, config, qr, tickets
from ticketing.ids import new_id
from ticketing.table import EventItem, OrderItem, OrderLine, TicketItem, customer_partition

BUCKET = "ticketing-qr-test"
QR_SECRET = "ticketing/test/qr-tickets"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def seed_order(sub: str, n: int, *, status: str = "paid", event_id: str | None = None, event_name: str = "Gig",
               start: datetime = T0, fixture: tuple[str, str, str] | None = None, sign=None) -> tuple[OrderItem, list[TicketItem]]:
    """An order of `n` tickets written straight to the table (what checkout and the
    webhook would have left), created one second apart from `start`. `sign(ticket_id,
    event_id)` makes the payloads of a paid order (default: `qr.sign`, the secret's key)."""
    event_id = event_id or new_id("ev")
    order_id = new_id("or")
    ticket_status = {"paid": "valid", "pending": "pending"}.get(status, "void")
    tickets_made = []
    for i in range(n):
        created = clock.iso(start + timedelta(seconds=i))
        ticket_id = new_id("tk")
        payload = (sign or qr.sign)(ticket_id, event_id) if ticket_status == "valid" else None
        ticket = TicketItem(
            *TicketItem.key(ticket_id), GSI1PK=customer_partition(sub), GSI1SK=f"TICKET#{created}#{ticket_id}",
            ticket_id=ticket_id, serial=f"TKT-{i:08d}", order_id=order_id, event_id=event_id,
            fixture_id=fixture[0] if fixture else None, type_id="tt_1", type_name="General Admission",
            price_cents=2500, currency="usd", status=ticket_status, customer_sub=sub, created_at=created,
            issued_at=created if ticket_status == "valid" else None, qr_payload=payload, event_name=event_name,
            fixture_starts_at=fixture[1] if fixture else None, fixture_ends_at=fixture[2] if fixture else None,
        )
        ticket.save()
        tickets_made.append(ticket)
    created = clock.iso(start)
    order = OrderItem(
        *OrderItem.key(order_id), GSI1PK=customer_partition(sub), GSI1SK=f"ORDER#{created}#{order_id}",
        order_id=order_id, event_id=event_id, customer_sub=sub, status=status, total_cents=2500 * n, currency="usd",
        lines=[OrderLine(type_id="tt_1", name="General Admission", qty=n, price_cents=2500)],
        ticket_ids=[t.ticket_id for t in tickets_made], created_at=created, expires_at=clock.iso(start + timedelta(minutes=15)),
        updated_at=created, paid_at=created if status == "paid" else None,
    )
    order.save()
    return order, tickets_made


@pytest.fixture
def qr_env(aws, monkeypatch):
    """The bucket, a QR signing secret, and the settings naming them."""
    from aws_lambda_powertools.utilities import parameters

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    boto3.client("secretsmanager").create_secret(Name=QR_SECRET, SecretString=json.dumps(_new_qr_keys()))
    monkeypatch.setenv("QR_BUCKET", BUCKET)
    monkeypatch.setenv("QR_SIGNING_SECRET_NAME", QR_SECRET)
    config.settings.cache_clear()
    parameters.clear_caches()
    tickets.reset_client()
    yield
    config.settings.cache_clear()
    parameters.clear_caches()
    tickets.reset_client()


@pytest.fixture
def call(qr_env):
    return Invoker(load_function("tickets"))


def me(sub: str) -> dict:
    return {"sub": sub, "email": f"{sub}@example.com", "name": sub}


@pytest.fixture
def renders(monkeypatch):
    """Counts calls of the receipt's renderers (ticketing.qr.render_png/render_svg)."""
    counted = {"png": 0, "svg": 0}
    for kind in counted:
        original = getattr(qr, f"render_{kind}")

        def wrapper(payload, size=200, _kind=kind, _original=original):
            counted[_kind] += 1
            return _original(payload, size)

        monkeypatch.setattr(qr, f"render_{kind}", wrapper)
    return counted


# ---------------------------------------------------------------- listings
def test_my_tickets_lists_the_callers_tickets_newest_first_with_the_seed_fields(call):
    fixture = ("fx_1", "2026-05-01T18:00:00Z", "2026-05-01T20:00:00Z")
    order, made = seed_order("alice", 3, event_name="Championship Game", fixture=fixture)
    seed_order("bob", 2)
    status, page, _ = call("GET", "/api/me/tickets/", claims=me("alice"))
    assert status == 200, page
    assert page["count"] == 3 and page["next_cursor"] is None
    assert [t["id"] for t in page["tickets"]] == [t.ticket_id for t in reversed(made)]
    first = page["tickets"][0]
    assert first == {
        "id": made[-1].ticket_id, "serial": made[-1].serial, "ticket_type_id": "tt_1", "ticket_type_name": "General Admission",
        "event_id": order.event_id, "event_name": "Championship Game", "order_id": order.order_id, "order_status": "paid",
        "status": "valid", "price_cents": 2500, "currency": "usd", "issued_at": made[-1].issued_at, "used_at": None,
        "fixture_info": {"id": "fx_1", "starts_at": "2026-05-01T18:00:00Z", "ends_at": "2026-05-01T20:00:00Z"},
        "code_version": 0,
    }
    assert call("GET", "/api/me/tickets", claims=me("alice"))[1] == page  # without the trailing slash too


def test_filters_by_event_and_status(call):
    event_a = new_id("ev")
    seed_order("carol", 2, event_id=event_a, start=T0)
    seed_order("carol", 3, event_id=event_a, status="pending", start=T0 + timedelta(minutes=1))
    seed_order("carol", 4, start=T0 + timedelta(minutes=2))
    seed_order("carol", 1, status="expired", start=T0 + timedelta(minutes=3))

    def listed(**query):
        status, page, _ = call("GET", "/api/me/tickets/", claims=me("carol"), query=query)
        assert status == 200, page
        return page["tickets"]

    assert len(listed()) == 10
    assert {(t["event_id"], t["status"]) for t in listed(event_id=event_a)} == {(event_a, "valid"), (event_a, "pending")}
    assert len(listed(event_id=event_a)) == 5
    pending = listed(status="pending")
    assert len(pending) == 3 and {t["order_status"] for t in pending} == {"pending"}
    assert len(listed(status="valid")) == 6 and len(listed(event_id=event_a, status="valid")) == 2
    void = listed(status="void")
    assert len(void) == 1 and void[0]["order_status"] == "expired"
    assert listed(status="used") == []
    status, error, _ = call("GET", "/api/me/tickets/", claims=me("carol"), query={"status": "lost"})
    assert status == 422 and error["field"] == "status"


def test_pages_follow_the_cursor_and_each_page_is_one_query_and_one_batch_get(call):
    made = []
    for k in range(4):  # four orders: a page's order statuses come from one BatchGetItem
        made += seed_order("dave", 3, start=T0 + timedelta(minutes=k))[1]
    expected = [t.ticket_id for t in sorted(made, key=lambda t: t.created_at, reverse=True)]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        with count_aws_calls() as calls:
            status, page, _ = call("GET", "/api/me/tickets/", claims=me("dave"), query=query)
        assert status == 200, page
        assert dict(calls) == {"dynamodb.Query": 1, "dynamodb.BatchGetItem": 1} or (page["count"] == 0 and dict(calls) == {"dynamodb.Query": 1})
        pages += 1
        seen += [t["id"] for t in page["tickets"]]
        assert all(t["order_status"] == "paid" for t in page["tickets"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == expected and pages in (3, 4)  # 12 tickets, 5 a page (a last empty page allowed)


def test_a_filtered_page_is_full_when_enough_match_and_resumes_after_its_last(call):
    for k in range(6):
        seed_order("erin", 2, status="paid" if k % 2 else "pending", start=T0 + timedelta(minutes=k))
    seen, cursor = [], None
    for _ in range(10):
        query = {"status": "valid", "limit": 2, **({"cursor": cursor} if cursor else {})}
        with count_aws_calls() as calls:
            _, page, _ = call("GET", "/api/me/tickets/", claims=me("erin"), query=query)
        assert calls["dynamodb.Query"] == 1
        seen += [t["id"] for t in page["tickets"]]
        if page["tickets"] and page["next_cursor"]:
            assert page["count"] == 2
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 6


def test_a_cursor_from_another_customer_or_a_forged_one_is_refused(call):
    seed_order("frank", 3)
    seed_order("grace", 3)
    _, page, _ = call("GET", "/api/me/tickets/", claims=me("frank"), query={"limit": 1})
    assert page["next_cursor"]
    status, error, _ = call("GET", "/api/me/tickets/", claims=me("grace"), query={"cursor": page["next_cursor"]})
    assert status == 400 and error["code"] == "bad_cursor"
    status, error, _ = call("GET", "/api/me/tickets/", claims=me("frank"), query={"cursor": "not-a-cursor"})
    assert status == 400 and error["code"] == "bad_cursor"
    status, rest, _ = call("GET", "/api/me/tickets/", claims=me("frank"), query={"cursor": page["next_cursor"]})
    assert status == 200 and rest["count"] == 2
    status, error, _ = call("GET", "/api/me/orders/", claims=me("frank"), query={"cursor": page["next_cursor"]})
    assert status == 400 and error["code"] == "bad_cursor"  # a tickets cursor is no orders cursor
    for bad in ({"limit": 0}, {"limit": 101}, {"limit": "ten"}):
        status, error, _ = call("GET", "/api/me/tickets/", claims=me("frank"), query=bad)
        assert status == 422 and error["field"] == "limit"


def test_my_orders_lists_orders_newest_first_without_a_call_per_order(call):
    named = new_id("ev")
    EventItem(*EventItem.key(named), GSI1SK="x", event_id=named, name="Cup Final", venue="Hall",
              starts_at="2026-05-01T18:00:00Z", ends_at="2026-05-01T20:00:00Z", currency="usd",
              created_at="2026-01-01T00:00:00Z", created_by="admin").save()
    older, _ = seed_order("heidi", 2, event_id=named, start=T0)
    newer, _ = seed_order("heidi", 1, status="pending", start=T0 + timedelta(hours=1))
    seed_order("ivan", 1)
    with count_aws_calls() as calls:
        status, page, _ = call("GET", "/api/me/orders/", claims=me("heidi"))
    assert status == 200, page
    assert dict(calls) == {"dynamodb.Query": 1, "dynamodb.BatchGetItem": 1}
    assert [o["order_id"] for o in page["orders"]] == [newer.order_id, older.order_id]
    shown = page["orders"][1]
    assert shown["event_name"] == "Cup Final" and shown["status"] == "paid" and shown["total_cents"] == 5000
    assert shown["lines"] == [{"ticket_type_id": "tt_1", "ticket_type_name": "General Admission", "qty": 2, "price_cents": 2500}]
    assert shown["ticket_ids"] == list(older.ticket_ids) and "client_secret" not in json.dumps(page)
    assert page["orders"][0]["event_name"] is None  # its event item does not exist
    _, paid, _ = call("GET", "/api/me/orders/", claims=me("heidi"), query={"status": "paid"})
    assert [o["order_id"] for o in paid["orders"]] == [older.order_id]
    _, first, _ = call("GET", "/api/me/orders/", claims=me("heidi"), query={"limit": 1})
    _, second, _ = call("GET", "/api/me/orders/", claims=me("heidi"), query={"limit": 1, "cursor": first["next_cursor"]})
    assert [o["order_id"] for o in first["orders"] + second["orders"]] == [newer.order_id, older.order_id]


def test_listings_need_a_caller(call):
    status, error, _ = call("GET", "/api/me/tickets/")
    assert status == 401 and error["error"] == "Unauthorized"


# ------------------------------------------------------------ QR data
def test_qr_data_gives_the_payload_and_presigned_urls_of_stored_images(call, renders):
    _, made = seed_order("judy", 1, event_name="Championship Game")
    ticket = made[0]
    status, data, _ = call("GET", f"/api/tickets/{ticket.ticket_id}/qr/data/", claims=me("judy"))
    assert status == 200, data
    assert data["ticket_id"] == ticket.ticket_id and data["qr_payload"] == ticket.qr_payload
    assert data["status"] == "valid" and data["event_name"] == "Championship Game" and data["serial"] == ticket.serial
    assert data["ticket_type_name"] == "General Admission" and data["used_at"] is None
    assert "X-Amz-Signature=" in data["qr_png_url"] and "X-Amz-Expires=900" in data["qr_svg_url"]
    assert renders == {"png": 1, "svg": 1}
    kid = ticket.qr_payload.split(":")[1]
    png = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"qr/{ticket.ticket_id}/{kid}/200.png")
    assert png["ContentType"] == "image/png" and decode_qr(png["Body"].read()) == ticket.qr_payload
    assert f"/qr/{ticket.ticket_id}/{kid}/200.png" in data["qr_png_url"]
    call("GET", f"/api/tickets/{ticket.ticket_id}/qr/data/", claims=me("judy"))
    assert renders == {"png": 1, "svg": 1}  # already in the bucket


def test_pending_and_void_tickets_have_no_payload_and_no_urls(call):
    _, pending = seed_order("ken", 1, status="pending")
    _, void = seed_order("ken", 1, status="canceled")
    for ticket, state in ((pending[0], "pending"), (void[0], "void")):
        status, data, _ = call("GET", f"/api/tickets/{ticket.ticket_id}/qr/data/", claims=me("ken"))
        assert status == 200 and data["status"] == state
        assert data["qr_payload"] is None and data["qr_png_url"] is None and data["qr_svg_url"] is None
        status, error, _ = call("GET", f"/api/tickets/{ticket.ticket_id}/qr/image/", claims=me("ken"))
        assert status == 409 and error["code"] == f"ticket_{state}"


def test_another_customers_ticket_is_404_and_an_admin_sees_it(call):
    _, made = seed_order("leo", 1)
    ticket_id = made[0].ticket_id
    for path in (f"/api/tickets/{ticket_id}/qr/data/", f"/api/tickets/{ticket_id}/qr/image/"):
        status, error, _ = call("GET", path, claims=me("mallory"))
        assert status == 404 and error["error"] == "Not found" and "detail" in error
    assert call("GET", "/api/tickets/tk_nothere/qr/data/", claims=me("leo"))[0] == 404
    assert call("GET", f"/api/tickets/{'x' * 500}/qr/data/", claims=me("leo"))[0] == 404
    status, data, _ = call("GET", f"/api/tickets/{ticket_id}/qr/data/", claims=ADMIN)
    assert status == 200 and data["qr_payload"] == made[0].qr_payload
    status, _, headers = call("GET", f"/api/tickets/{ticket_id}/qr/image/", claims=ADMIN)
    assert status == 200 and headers["Content-Type"] == "image/png"


# ------------------------------------------------------------ images
def _image(call, ticket_id, sub, **query):
    """(status, body, headers) of the image route; the body is base64 (isBase64Encoded)."""
    status, body, headers = call("GET", f"/api/tickets/{ticket_id}/qr/image/", claims=me(sub), query=query)
    return status, body, headers


def test_an_image_is_rendered_once_then_served_with_one_s3_read(call, renders):
    import base64

    _, made = seed_order("mike", 1)
    ticket = made[0]
    status, body, headers = _image(call, ticket.ticket_id, "mike", size=300)
    assert status == 200 and headers["Content-Type"] == "image/png" and headers["Cache-Control"] == "private, max-age=3600"
    first = base64.b64decode(body)
    assert renders == {"png": 1, "svg": 0}
    with count_aws_calls() as calls:
        status, body, _ = _image(call, ticket.ticket_id, "mike", size=300)
    assert status == 200 and base64.b64decode(body) == first
    assert renders == {"png": 1, "svg": 0}
    assert dict(calls) == {"dynamodb.GetItem": 1, "s3.GetObject": 1}
    from PIL import Image

    assert Image.open(io.BytesIO(first)).size == (300, 300) and decode_qr(first) == ticket.qr_payload
    _image(call, ticket.ticket_id, "mike", format="svg", size=300)
    _image(call, ticket.ticket_id, "mike", format="svg", size=300)
    _image(call, ticket.ticket_id, "mike", size=301)
    assert renders == {"png": 2, "svg": 1}


def test_the_image_route_answers_base64_with_is_base64_encoded(call):
    _, made = seed_order("nina", 1)
    module = call.module
    from tests.unit.conftest import _Context

    event = {
        "version": "2.0", "routeKey": "GET /api/tickets/{ticket_id}/qr/image/", "rawPath": f"/api/tickets/{made[0].ticket_id}/qr/image/",
        "rawQueryString": "format=svg&size=250", "queryStringParameters": {"format": "svg", "size": "250"}, "headers": {},
        "requestContext": {"http": {"method": "GET", "path": f"/api/tickets/{made[0].ticket_id}/qr/image/"}, "requestId": "r",
                           "authorizer": {"jwt": {"claims": me("nina"), "scopes": None}}, "stage": "$default"},
        "isBase64Encoded": False,
    }
    response = module.lambda_handler(event, _Context())
    assert response["statusCode"] == 200 and response["isBase64Encoded"] is True
    assert response["headers"]["Content-Type"] == "image/svg+xml"
    import base64

    root = ET.fromstring(base64.b64decode(response["body"]))
    assert root.tag.endswith("svg") and (root.get("width"), root.get("height")) == ("250", "250")


def test_the_largest_image_stays_far_inside_lambdas_6_mb(call):
    import base64

    _, made = seed_order("oscar", 1)
    for fmt in ("png", "svg"):
        status, body, _ = _image(call, made[0].ticket_id, "oscar", format=fmt, size=qr.MAX_SIZE)
        assert status == 200 and len(body) < 200_000 < 6 * 1024 * 1024
        assert len(base64.b64decode(body)) > 100


@pytest.mark.parametrize(
    "query, field",
    [
        ({"size": qr.MIN_SIZE - 1}, "size"), ({"size": qr.MAX_SIZE + 1}, "size"), ({"size": "big"}, "size"),
        ({"size": "2.5"}, "size"), ({"format": "gif"}, "format"), ({"format": "PNG"}, "format"),
    ],
)
def test_bad_size_or_format_is_422_naming_the_field(call, renders, query, field):
    _, made = seed_order("peggy", 1)
    status, error, _ = _image(call, made[0].ticket_id, "peggy", **query)
    assert status == 422 and error["field"] == field and error["error"] == "Invalid input", error
    assert renders == {"png": 0, "svg": 0}


# ------------------------------------------------------------ key rotation
def test_after_rotation_an_old_tickets_qr_still_decodes_and_verifies(call):
    from aws_lambda_powertools.utilities import parameters

    _, old = seed_order("quinn", 1)
    old_kid = old[0].qr_payload.split(":")[1]
    secrets = boto3.client("secretsmanager")
    rotated = qr.rotate(json.loads(secrets.get_secret_value(SecretId=QR_SECRET)["SecretString"]), "knew")
    secrets.put_secret_value(SecretId=QR_SECRET, SecretString=json.dumps(rotated))
    parameters.clear_caches()  # what POWERTOOLS_PARAMETERS_MAX_AGE does in time
    _, new = seed_order("quinn", 1, start=T0 + timedelta(hours=1))
    assert new[0].qr_payload.split(":")[1] == "knew" != old_kid

    import base64

    for ticket, kid in ((old[0], old_kid), (new[0], "knew")):
        _, data, _ = call("GET", f"/api/tickets/{ticket.ticket_id}/qr/data/", claims=me("quinn"))
        status, body, _ = _image(call, ticket.ticket_id, "quinn")
        assert status == 200
        payload = decode_qr(base64.b64decode(body))
        assert payload == data["qr_payload"] == ticket.qr_payload
        assert qr.verify(payload, qr.public_document(rotated)["keys"]) == qr.Verified(ticket.ticket_id, ticket.event_id, kid)
        assert f"/{kid}/200.png" in data["qr_png_url"]
    # Retiring the old key is what ends its tickets.
    retired = qr.retire(rotated, old_kid)
    with pytest.raises(qr.BadSignature) as info:
        qr.verify(old[0].qr_payload, qr.public_document(retired)["keys"])
    assert info.value.reason == "unknown_key"


def test_the_first_rotation_after_deploy_turns_the_templates_placeholder_into_a_key():
    from tests.unit.conftest import TEMPLATE

    placeholder = json.loads(TEMPLATE.resources["QrSigningSecret"]["Properties"]["SecretString"])
    first = qr.rotate(placeholder, "k1")
    active, keys = qr.check_secret(first)
    assert active == "k1" and list(keys) == ["k1"]
    payload = qr.sign_with(keys["k1"], "k1", "tk_m81yryynw8s0yewh4x84", "ev_m81yryynw8s0yewh4x84")
    assert qr.verify_with(payload, {"k1": qr.public_key_of(keys["k1"])}).kid == "k1"
    with pytest.raises(ValueError):
        qr.rotate({"active": "gone", "keys": {}})  # anything else misshapen is still refused
