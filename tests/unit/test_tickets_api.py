"""My tickets, my orders and QR codes in process (tests/unit/world.py): bought and paid as a
customer would, listed with filters and pages, QR images that decode to the payload
(through the API and through presigned URLs with no token), pending tickets and other
customers' tickets. Key rotation with the command line runs against the local stack
(tests/integration/test_tickets.py)."""

from __future__ import annotations

import io
import uuid
import xml.etree.ElementTree as ET

import pytest
import requests

from tests.shop import decode_qr, table_item, ticket_holder


@pytest.fixture
def customer(api, stack):
    """A customer with a paid order of 2 GA tickets and, newer, a pending order of 1 VIP (tests/shop.py)."""
    return ticket_holder(api, stack)


def test_my_tickets_and_orders_list_what_was_bought_with_filters_and_pages(api, customer):
    token = customer["token"]
    answer = api.get("/api/me/tickets/", token=token)
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["count"] == 3 and page["next_cursor"] is None
    pending_id = customer["pending"]["tickets"][0]["id"]
    assert page["tickets"][0]["id"] == pending_id  # newest first
    by_id = {t["id"]: t for t in page["tickets"]}
    assert by_id[pending_id]["status"] == "pending" and by_id[pending_id]["order_status"] == "pending"
    for ticket in customer["paid"]["tickets"]:
        shown = by_id[ticket["id"]]
        assert shown["status"] == "valid" and shown["order_status"] == "paid" and shown["issued_at"].endswith("Z")
        assert shown["serial"] == ticket["serial"] and shown["ticket_type_name"] == "GA" and shown["event_name"].startswith("Test ")
        assert shown["event_id"] == customer["event_id"] and shown["price_cents"] == 2500 and shown["fixture_info"] is None

    valid = api.get("/api/me/tickets/?status=valid", token=token).json()
    assert {t["id"] for t in valid["tickets"]} == {t["id"] for t in customer["paid"]["tickets"]}
    assert api.get(f"/api/me/tickets?event_id={customer['event_id']}&status=pending", token=token).json()["count"] == 1
    assert api.get("/api/me/tickets/?event_id=ev_other", token=token).json()["count"] == 0
    bad = api.get("/api/me/tickets/?status=lost", token=token)
    assert bad.status_code == 422 and bad.json()["field"] == "status"

    seen, cursor = [], None
    for _ in range(5):
        page = api.get("/api/me/tickets/", token=token, params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        seen += [t["id"] for t in page["tickets"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(by_id)

    orders = api.get("/api/me/orders/", token=token).json()
    assert [o["order_id"] for o in orders["orders"]] == [customer["pending"]["order_id"], customer["paid"]["order_id"]]
    assert orders["orders"][1]["status"] == "paid" and orders["orders"][1]["total_cents"] == 5000
    assert orders["orders"][1]["event_name"].startswith("Test ")
    first = api.get("/api/me/orders/?limit=1", token=token).json()
    second = api.get("/api/me/orders/", token=token, params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [o["order_id"] for o in first["orders"] + second["orders"]] == [o["order_id"] for o in orders["orders"]]
    assert api.get("/api/me/tickets/").status_code == 401  # the gateway's JWT authorizer


def test_qr_images_decode_to_the_payload_through_the_api_and_presigned_urls(api, stack, customer):
    token = customer["token"]
    ticket_id = customer["paid"]["tickets"][0]["id"]
    payload = table_item(stack, f"TICKET#{ticket_id}")["qr_payload"]

    data = api.get(f"/api/tickets/{ticket_id}/qr/data/", token=token)
    assert data.status_code == 200, data.text
    data = data.json()
    assert data["qr_payload"] == payload and data["status"] == "valid" and data["ticket_type_name"] == "GA"
    png = requests.get(data["qr_png_url"], timeout=10)  # no Authorization: as an <img> tag fetches it
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    assert decode_qr(png.content) == payload
    svg = requests.get(data["qr_svg_url"], timeout=10)
    assert svg.status_code == 200 and ET.fromstring(svg.content).get("width") == "200"

    from PIL import Image

    image = api.get(f"/api/tickets/{ticket_id}/qr/image/?size=300", token=token)
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    assert image.headers["Cache-Control"].startswith("private")
    assert Image.open(io.BytesIO(image.content)).size == (300, 300) and decode_qr(image.content) == payload
    again = api.get(f"/api/tickets/{ticket_id}/qr/image?size=300&format=png", token=token)
    assert again.content == image.content

    svg = api.get(f"/api/tickets/{ticket_id}/qr/image/", token=token, params={"format": "svg", "size": 250})
    assert svg.status_code == 200 and svg.headers["Content-Type"] == "image/svg+xml"
    root = ET.fromstring(svg.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and (root.get("width"), root.get("height")) == ("250", "250")

    for query, field in (("size=99", "size"), ("size=1025", "size"), ("size=big", "size"), ("format=gif", "format")):
        bad = api.get(f"/api/tickets/{ticket_id}/qr/image/?{query}", token=token)
        assert bad.status_code == 422 and bad.json()["field"] == field, bad.text


def test_a_pending_ticket_has_no_payload_and_another_customer_gets_404(api, customer):
    pending_id = customer["pending"]["tickets"][0]["id"]
    data = api.get(f"/api/tickets/{pending_id}/qr/data/", token=customer["token"]).json()
    assert data["status"] == "pending" and data["qr_payload"] is None and data["qr_png_url"] is None
    image = api.get(f"/api/tickets/{pending_id}/qr/image/", token=customer["token"])
    assert image.status_code == 409 and image.json()["code"] == "ticket_pending"

    stranger = api.token([], sub=f"stranger-{uuid.uuid4().hex[:6]}")
    paid_id = customer["paid"]["tickets"][0]["id"]
    for path in (f"/api/tickets/{paid_id}/qr/data/", f"/api/tickets/{paid_id}/qr/image/", f"/api/tickets/{pending_id}/qr/data/"):
        answer = api.get(path, token=stranger)
        assert answer.status_code == 404 and answer.json()["error"] == "Not found", answer.text
    assert api.get("/api/me/tickets/", token=stranger).json()["count"] == 0
    admin = api.token(["admin"])
    assert api.get(f"/api/tickets/{paid_id}/qr/data/", token=admin).json()["ticket_id"] == paid_id
