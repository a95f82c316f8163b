"""Organiser operations in process (tests/unit/world.py): editing capacity, prices and
events, the event's orders paged across the shards, attendees (CSV too) and figures.
Editing during a rush and canceling an event through its background job, interrupted by
Stripe, go through the local stack (tests/integration/test_organiser.py)."""

from __future__ import annotations

import csv
import io

import requests

from tests.shop import buy, check_invariants, paid_order, pending_order, stripe_client, type_item


# ------------------------------------------------------------------ helpers
def patch(api, path, token, body):
    return api.request("PATCH", path, token=token, json=body)


# -------------------------------------------------------------- editing
def test_raising_capacity_adds_shards_up_to_the_limit(api, stack, make_event):
    event_id, types = make_event({"GA": (1000, 20)})
    admin = api.token(["admin"])
    answer = patch(api, f"/api/events/{event_id}/ticket-types/{types['GA']}/", admin, {"capacity": 95})
    assert answer.status_code == 200 and answer.json()["capacity"] == 95 and answer.json()["available"] == 95
    capacity, remaining, held, sold = check_invariants(stack, event_id, types["GA"])
    assert (capacity, remaining) == (95, 95) and type_item(stack, event_id, types["GA"])[1] == 9  # shards of 10
    assert buy(api, api.token([]), event_id, [(types["GA"], 10)]).status_code == 201


def test_a_price_change_applies_to_new_orders_only(api, stack, make_event):
    event_id, types = make_event({"GA": (2500, 20)})
    admin, customer = api.token(["admin"]), api.token([])
    before = buy(api, customer, event_id, [(types["GA"], 2)]).json()
    changed = patch(api, f"/api/events/{event_id}/ticket-types/{types['GA']}/", admin, {"price_cents": 3100})
    assert changed.status_code == 200 and changed.json()["price_cents"] == 3100
    after = buy(api, customer, event_id, [(types["GA"], 2)]).json()
    assert (before["total_cents"], after["total_cents"]) == (5000, 6200)
    intents = stripe_client(stack).v1.payment_intents
    assert intents.retrieve(before["payment_intent_id"]).amount == 5000
    assert intents.retrieve(after["payment_intent_id"]).amount == 6200
    assert api.get(f"/api/orders/{before['order_id']}/", token=customer).json()["total_cents"] == 5000
    assert [t["price_cents"] for t in before["tickets"]] == [2500, 2500]


def test_event_edits_follow_the_create_rules_and_admins_only(api, make_event):
    event_id, types = make_event({"GA": (2500, 20)})
    admin = api.token(["admin"])
    ok = patch(api, f"/api/events/{event_id}", admin, {"name": "Renamed", "venue": "Arena", "description": "Now bigger"})
    assert ok.status_code == 200 and (ok.json()["name"], ok.json()["venue"]) == ("Renamed", "Arena")
    assert api.get(f"/api/events/{event_id}/").json()["name"] == "Renamed"
    backwards = patch(api, f"/api/events/{event_id}/", admin, {"ends_at": "2001-01-01T00:00:00Z"})
    assert backwards.status_code == 422 and backwards.json()["field"] == "ends_at"
    window = patch(api, f"/api/events/{event_id}/ticket-types/{types['GA']}/", admin,
                   {"sales_start": "2031-01-02T00:00:00Z", "sales_end": "2031-01-01T00:00:00Z"})
    assert window.status_code == 422 and window.json()["field"] == "sales_end"
    customer = api.token([])
    assert patch(api, f"/api/events/{event_id}/", customer, {"name": "x"}).status_code == 403
    assert patch(api, f"/api/events/{event_id}/ticket-types/{types['GA']}/", customer, {"capacity": "bad"}).status_code == 403
    assert patch(api, f"/api/events/{event_id}/ticket-types/tt_nope/", admin, {"price_cents": 1}).status_code == 404


# ------------------------------------------------------------------ seeing
def test_orders_listing_filters_by_status_and_pages_across_the_shards(api, stack, make_event):
    event_id, types = make_event({"GA": (1000, 40)})
    admin = api.token(["admin"])
    paid = [paid_order(api, stack, event_id, [(types["GA"], 1)])[0]["order_id"] for _ in range(3)]
    pending = [pending_order(api, event_id, [(types["GA"], 2)])["order_id"] for _ in range(4)]

    def every(query):
        seen, cursor, pages = [], None, 0
        while True:
            params = {**query, **({"cursor": cursor} if cursor else {})}
            page = api.get(f"/api/events/{event_id}/orders/", token=admin, params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            assert body["count"] == len(body["orders"]) <= query["limit"]
            seen += body["orders"]
            pages += 1
            cursor = body["next_cursor"]
            if not cursor:
                return seen, pages

    listed, pages = every({"limit": 2})
    ids = [o["order_id"] for o in listed]
    assert sorted(ids) == sorted(paid + pending) and len(set(ids)) == 7 and pages >= 4
    keys = [(o["created_at"], o["order_id"]) for o in listed]
    assert keys == sorted(keys, reverse=True)  # newest first across the shards
    only_paid, _ = every({"limit": 2, "status": "paid"})
    assert sorted(o["order_id"] for o in only_paid) == sorted(paid)
    assert {o["status"] for o in only_paid} == {"paid"} and only_paid[0]["total_cents"] == 1000
    assert api.get(f"/api/events/{event_id}/orders/", token=api.token([])).status_code == 403
    assert api.get(f"/api/events/{event_id}/orders/", token=admin, params={"cursor": "garbage!"}).status_code == 400


def test_attendee_csv_round_trips_names_with_commas_quotes_newlines_and_formulas(api, stack, make_event):
    event_id, types = make_event({"GA": (1000, 20), "VIP": (5000, 5)})
    admin = api.token(["admin"])
    names = ['O\'Brien, "Jo"', "Line one\nLine two", '=HYPERLINK("http://evil","x")', "Zoë Ünïcode"]
    orders = {}
    for index, name in enumerate(names):
        order, _ = paid_order(api, stack, event_id, [(types["GA" if index % 2 else "VIP"], 1)], name=name)
        orders[order["tickets"][0]["id"]] = (name, order)
    pending_order(api, event_id, [(types["GA"], 1)])  # not an attendee (yet)

    answer = api.get(f"/api/events/{event_id}/attendees/", token=admin, params={"format": "csv"})
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/csv")
    assert "\r\n" in answer.text
    rows = list(csv.reader(io.StringIO(answer.text, newline="")))
    assert rows[0] == ["ticket_id", "serial", "ticket_type", "status", "holder_name", "holder_email", "order_id", "checked_in_at", "gate"]
    body = {row[0]: row for row in rows[1:]}
    assert set(body) == set(orders)
    for ticket_id, (name, order) in orders.items():
        row = body[ticket_id]
        expected = "'" + name if name.startswith("=") else name  # a formula is defused, not run
        assert row[4] == expected and row[3] == "valid" and row[6] == order["order_id"]
        assert row[2] in ("GA", "VIP") and row[5].endswith("@example.com")

    as_json = api.get(f"/api/events/{event_id}/attendees/", token=admin).json()
    assert {a["holder_name"] for a in as_json["attendees"]} == set(names)  # JSON carries the raw value
    assert api.get(f"/api/events/{event_id}/attendees/", token=api.token(["scanner"]), params={"format": "csv"}).status_code == 403
    link = api.get(f"/api/events/{event_id}/attendees/", token=admin, params={"format": "csv", "delivery": "link"})
    assert link.status_code == 200 and set(link.json()) == {"export_url", "expires_at"}
    download = requests.get(link.json()["export_url"], timeout=10)  # no token: the link is the permission
    assert download.status_code == 200 and download.headers["Content-Type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(download.text, newline=""))) == rows


def test_stats_match_a_mix_of_paid_pending_refunded_and_checked_in_orders(api, stack, make_event):
    event_id, types = make_event({"GA": (2000, 20), "VIP": (5000, 5)})
    admin = api.token(["admin"])
    a, _ = paid_order(api, stack, event_id, [(types["GA"], 3)])
    b, _ = paid_order(api, stack, event_id, [(types["VIP"], 1)])
    d, _ = paid_order(api, stack, event_id, [(types["GA"], 1)])
    pending_order(api, event_id, [(types["GA"], 2)])
    assert api.post(f"/api/orders/{b['order_id']}/refund/", token=admin, json={}).status_code == 201
    assert api.post(f"/api/orders/{d['order_id']}/refund/", token=admin, json={"amount_cents": 500}).status_code == 201
    scanner = api.token(["scanner"])
    checked = api.post(f"/api/tickets/{a['tickets'][0]['id']}/checkin/", token=scanner, json={"gate": "North"})
    assert checked.status_code == 200, checked.text

    stats = api.get(f"/api/events/{event_id}/stats/", token=admin)
    assert stats.status_code == 200, stats.text
    body = stats.json()
    per_type = {t["name"]: t for t in body["ticket_types"]}
    assert {k: per_type["GA"][k] for k in ("capacity", "sold", "held", "available", "checked_in")} == {
        "capacity": 20, "sold": 4, "held": 2, "available": 14, "checked_in": 1}
    assert {k: per_type["VIP"][k] for k in ("capacity", "sold", "held", "available", "checked_in")} == {
        "capacity": 5, "sold": 0, "held": 0, "available": 5, "checked_in": 0}
    assert body["money"] == {"currency": "usd", "gross_cents": 6000 + 5000 + 2000, "fees_cents": 0, "refunded_cents": 5500, "net_cents": 7500}
    assert body["orders_by_status"] == {"paid": 1, "refunded": 1, "partially_refunded": 1, "pending": 1}
    # The money agrees with the orders listing.
    listed = api.get(f"/api/events/{event_id}/orders/", token=admin, params={"limit": 100}).json()["orders"]
    paid = [o for o in listed if o["status"] != "pending"]
    assert sum(o["total_cents"] for o in paid) - sum(o["refunded_cents"] for o in paid) == body["money"]["net_cents"]
    attendee = next(x for x in api.get(f"/api/events/{event_id}/attendees/", token=admin).json()["attendees"]
                    if x["ticket_id"] == a["tickets"][0]["id"])
    assert attendee["status"] == "used" and attendee["gate"] == "North" and attendee["checked_in_at"]
    assert api.get(f"/api/events/{event_id}/stats/", token=api.token([])).status_code == 403


# ---------------------------------------------------------------- cancel
def test_cancel_progress_of_an_event_not_canceled_is_404(api, make_event):
    event_id, _ = make_event({"GA": (1000, 5)})
    assert api.get(f"/api/events/{event_id}/cancel/", token=api.token(["admin"])).status_code == 404


# ------------------------------------------------------------- the desk's list
def test_the_desk_lists_every_event_over_and_canceled_included_and_only_for_admins(api, make_event):
    from datetime import datetime, timedelta, timezone

    from ticketing import clock

    admin = api.token(["admin"])
    now = datetime.now(timezone.utc)
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    soon, _ = make_event({"GA": (1000, 5)}, starts_at=stamp(now + timedelta(hours=1)), ends_at=stamp(now + timedelta(hours=2)))
    later, _ = make_event({"GA": (1000, 5)})
    canceled, _ = make_event({"GA": (1000, 5)}, starts_at=stamp(now + timedelta(days=9)),
                             ends_at=stamp(now + timedelta(days=9, hours=3)))
    assert api.post(f"/api/events/{canceled}/cancel/", token=admin, json={}).status_code == 202
    clock.freeze(now + timedelta(hours=3))  # the first event is over
    try:
        public = [e["id"] for e in api.get("/api/events/").json()["events"]]
        assert public == [later]
        every = api.get("/api/organiser/events/", token=admin).json()
        assert [e["id"] for e in every["events"]] == [canceled, later, soon]  # latest start first
        assert {e["id"]: e["status"] for e in every["events"]}[canceled] == "canceled"
        assert every["count"] == 3 and every["next_cursor"] is None
        # Page by page: the same three, each once.
        seen, cursor = [], None
        while True:
            page = api.get("/api/organiser/events/?limit=1" + (f"&cursor={cursor}" if cursor else ""), token=admin).json()
            seen += [e["id"] for e in page["events"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == [canceled, later, soon]
    finally:
        clock.freeze(None)
    for roles in ([], ["scanner"]):
        refused = api.get("/api/organiser/events/", token=api.token(roles))
        assert refused.status_code == 403 and "organisers" in refused.json()["detail"], refused.text
    assert api.get("/api/organiser/events/").status_code == 401
    bad = api.get("/api/organiser/events/?limit=0", token=admin)
    assert bad.status_code == 422 and bad.json()["field"] == "limit", bad.text
