"""The catalogue through its Lambda handler: validation, roles, availability, slashes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.unit.conftest import ADMIN, CUSTOMER


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


SOON = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=10)


def event_body(**overrides):
    body = {
        "name": "Cup Final", "venue": "Stadium", "currency": "USD",
        "starts_at": iso(SOON), "ends_at": iso(SOON + timedelta(hours=4)),
        "fixtures": [{"name": "Match", "starts_at": iso(SOON + timedelta(hours=1)), "ends_at": iso(SOON + timedelta(hours=3))}],
    }
    body.update(overrides)
    return body


def make_event(catalogue, **overrides):
    status, event, _ = catalogue("POST", "/api/events/", event_body(**overrides), claims=ADMIN)
    assert status == 201, event
    return event


def test_admin_creates_event_and_reads_it_back_with_both_slash_forms(catalogue):
    event = make_event(catalogue)
    assert event["currency"] == "usd" and event["status"] == "on_sale"
    assert event["id"].startswith("ev_") and event["fixtures"][0]["id"].startswith("fx_")
    for path in (f"/api/events/{event['id']}/", f"/api/events/{event['id']}"):
        status, body, _ = catalogue("GET", path)
        assert status == 200
        assert body["name"] == "Cup Final" and body["ticket_types"] == []


def test_ticket_type_available_comes_from_the_inventory_shards(catalogue):
    event = make_event(catalogue)
    status, created, _ = catalogue(
        "POST", f"/api/events/{event['id']}/ticket-types/",
        {"name": "GA", "price_cents": 2500, "capacity": 777, "fixture_id": event["fixtures"][0]["id"]},
        claims=ADMIN,
    )
    assert status == 201, created
    assert created["available"] == 777 and created["currency"] == "usd" and created["on_sale"] is True

    from ticketing.table import InventoryShard

    shards = [s for s in InventoryShard.scan(InventoryShard.PK.startswith("INV#")) if s.type_id == created["id"]]
    assert len(shards) == 15 and sum(int(s.capacity) for s in shards) == 777
    # Seats taken from one shard show up in the event's availability.
    shard = shards[3]
    shard.update(actions=[InventoryShard.remaining.add(-5), InventoryShard.sold.add(5)])
    _, body, _ = catalogue("GET", f"/api/events/{event['id']}/")
    assert body["ticket_types"][0]["available"] == 772


def test_customer_gets_403_and_nothing_is_written(catalogue):
    status, body, _ = catalogue("POST", "/api/events/", event_body(), claims=CUSTOMER)
    assert status == 403
    assert body["error"] == "Permission denied" and body["detail"]
    _, listing, _ = catalogue("GET", "/api/events/")
    assert listing["count"] == 0


def test_missing_claims_is_401_in_the_error_format(catalogue):
    status, body, _ = catalogue("POST", "/api/events/", event_body())
    assert status == 401 and set(body) >= {"error", "detail"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"currency": "usdd"}, "currency"),
        ({"currency": "xyz"}, "currency"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"starts_at": "2030-13-01T00:00:00Z"}, "starts_at"),
        ({"starts_at": "2030-01-01T00:00:00"}, "starts_at"),  # no zone
        ({"ends_at": iso(SOON - timedelta(hours=1))}, "ends_at"),
        ({"starts_at": iso(datetime.now(timezone.utc) - timedelta(days=3)), "ends_at": iso(datetime.now(timezone.utc) - timedelta(days=2)), "fixtures": []}, "ends_at"),
        ({"fixtures": [{"starts_at": iso(SOON - timedelta(hours=2)), "ends_at": iso(SOON)}]}, "fixtures.0"),
        ({"fixtures": [{"starts_at": iso(SOON + timedelta(hours=2)), "ends_at": iso(SOON + timedelta(hours=1))}]}, "fixtures.0.ends_at"),
    ],
)
def test_invalid_events_are_422_naming_the_field(catalogue, overrides, field):
    status, body, _ = catalogue("POST", "/api/events/", event_body(**overrides), claims=ADMIN)
    assert status == 422, body
    assert body["error"] == "Invalid input"
    assert body["field"] == field
    _, listing, _ = catalogue("GET", "/api/events/")
    assert listing["count"] == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"price_cents": -1}, "price_cents"),
        ({"price_cents": 12.5}, "price_cents"),
        ({"price_cents": "100"}, "price_cents"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": True}, "capacity"),
        ({"max_per_order": 0}, "max_per_order"),
        ({"fixture_id": "fx_nope"}, "fixture_id"),
        ({"sales_start": iso(SOON), "sales_end": iso(SOON - timedelta(hours=1))}, "sales_end"),
        ({"sales_end": iso(SOON + timedelta(days=5))}, "sales_end"),
    ],
)
def test_invalid_ticket_types_are_422_naming_the_field(catalogue, overrides, field):
    event = make_event(catalogue)
    body = {"name": "GA", "price_cents": 1000, "capacity": 10, **overrides}
    status, answer, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/", body, claims=ADMIN)
    assert status == 422, answer
    assert answer["field"] == field
    _, after, _ = catalogue("GET", f"/api/events/{event['id']}/")
    assert after["ticket_types"] == []


def test_malformed_json_is_400(catalogue):
    status, body, _ = catalogue("POST", "/api/events/", raw_body="{not json", claims=ADMIN)
    assert status == 400 and body["error"] == "Malformed JSON"


def test_oversized_body_is_413_in_the_error_format(catalogue):
    status, body, _ = catalogue("POST", "/api/events/", raw_body="x" * (65 * 1024), claims=ADMIN)
    assert status == 413 and body["error"] == "Request too large"


def test_unknown_event_is_404(catalogue):
    status, body, _ = catalogue("GET", "/api/events/ev_missing/")
    assert status == 404 and body["error"] == "Not found"
    status, body, _ = catalogue("POST", "/api/events/ev_missing/ticket-types/", {"name": "x", "price_cents": 1, "capacity": 1}, claims=ADMIN)
    assert status == 404


def test_listing_pages_with_an_opaque_cursor(catalogue):
    ids = {make_event(catalogue, name=f"E{i}")["id"] for i in range(5)}
    seen, cursor = [], None
    for _ in range(10):
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        status, page, _ = catalogue("GET", "/api/events/", query=query)
        assert status == 200
        seen += [e["id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(seen) == ids and len(seen) == 5


def test_bad_cursor_is_400_and_bad_limit_422(catalogue):
    assert catalogue("GET", "/api/events/", query={"cursor": "%%%"})[0] == 400
    assert catalogue("GET", "/api/events/", query={"limit": 0})[0] == 422
    assert catalogue("GET", "/api/events/", query={"limit": "many"})[0] == 422


def test_payment_config_returns_only_the_publishable_key(catalogue):
    status, body, _ = catalogue("GET", "/api/payment/config/")
    assert status == 200 and body == {"publishable_key": "pk_test_unit"}


def test_payment_config_needs_no_access_to_the_stripe_secret(catalogue):
    import boto3

    boto3.client("secretsmanager").delete_secret(SecretId="ticketing/test/stripe", ForceDeleteWithoutRecovery=True)
    status, body, _ = catalogue("GET", "/api/payment/config/")
    assert status == 200 and body == {"publishable_key": "pk_test_unit"}


def test_docs_serve_swagger_ui_and_the_committed_document(catalogue):
    status, html, headers = catalogue("GET", "/api/docs/")
    assert status == 200 and "swagger-ui" in html
    status, spec, _ = catalogue("GET", "/api/docs/", query={"format": "json"})
    assert status == 200 and "/api/events/{event_id}/" in spec["paths"]


def test_dynamodb_throttling_is_503_with_retry_after_not_500(catalogue, monkeypatch):
    from botocore.exceptions import ClientError
    from pynamodb.connection.base import Connection

    def throttled(self, operation_name, operation_kwargs):
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, operation_name)

    monkeypatch.setattr(Connection, "_make_api_call", throttled)
    status, body, headers = catalogue("GET", "/api/events/")
    assert status == 503 and body["error"] == "Service unavailable"
    assert headers["Retry-After"] == "1"


def test_tokens_and_bodies_never_reach_the_logs(catalogue, capsys):
    secret_token = "eyJhbGciOiJSUzI1NiJ9.SECRET-TOKEN.sig"
    catalogue("POST", "/api/events/", event_body(name="Private Party"), claims=ADMIN,
              headers={"authorization": f"Bearer {secret_token}"})
    catalogue("POST", "/api/events/", raw_body="{broken", claims=ADMIN, headers={"authorization": f"Bearer {secret_token}"})
    logs = capsys.readouterr()
    assert "SECRET-TOKEN" not in logs.out + logs.err
    assert "pk_test_unit" not in logs.out + logs.err


def test_roles_are_checked_before_the_body_is_validated(catalogue):
    status, body, _ = catalogue("POST", "/api/events/", {"name": 5}, claims=CUSTOMER)
    assert status == 403 and body["detail"] == "Only organisers may create events."
    status, body, _ = catalogue("POST", "/api/events/ev_x/ticket-types/", {}, claims=CUSTOMER)
    assert status == 403
    status, body, _ = catalogue("POST", "/api/events/", {"name": 5})
    assert status == 401


@pytest.mark.parametrize("route_key", ["$default", "POST /api/events/ev_x/ticket-types/", "GET /api/events/{event_id}"])
def test_a_guarded_route_stays_guarded_whatever_route_key_the_event_names(catalogue, route_key):
    """API Gateway names the route's template; a stage's `$default` route or a direct
    invocation names something else, and the roles still apply (by the path)."""
    body = {"name": "GA", "price_cents": 100, "capacity": 1}
    status, _, _ = catalogue("POST", "/api/events/ev_x/ticket-types/", body, claims=CUSTOMER, route_key=route_key)
    assert status == 403
    status, _, _ = catalogue("POST", "/api/events/ev_x/ticket-types/", body, claims=ADMIN, route_key=route_key)
    assert status == 404  # an admin gets through to "no such event"
