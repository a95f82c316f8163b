"""Saved cards, payment history and the notification inbox (issue 17) in process
(tests/unit/world.py: the account function and the others over moto and the Stripe
stand-in). First requests at once, CORS, SES refusing a receipt (injected into the AWS
stand-in) and an event's cancellation filed by its background job go through the local
stack (tests/integration/test_account.py)."""

from __future__ import annotations

from tests.shop import CARDS, buy, card_holder, pay, save_card, stripe_customers


def test_a_card_is_saved_listed_made_default_and_removed_and_nobody_else_can_touch_it(api, stack):
    sub, token = card_holder(api)
    assert api.get(CARDS, token=token).json() == {"payment_methods": []}
    assert stripe_customers(stack, sub) == []  # listing nothing creates nothing
    pm_id = save_card(api, stack, token)
    listed = api.get(CARDS.rstrip("/"), token=token).json()["payment_methods"]
    assert listed == [{"id": pm_id, "brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034, "is_default": False}]

    _, other = card_holder(api)
    for method, path in (("DELETE", f"{CARDS}{pm_id}/"), ("POST", f"{CARDS}{pm_id}/default/"),
                         ("DELETE", f"{CARDS}pm_doesnotexist/"), ("POST", f"{CARDS}not-a-card/default/")):
        answer = api.request(method, path, token=other)
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] == "Not found"
    assert api.get(CARDS, token=token).json()["payment_methods"][0]["id"] == pm_id  # untouched

    made = api.post(f"{CARDS}{pm_id}/default/", token=token)
    assert made.status_code == 200 and made.json()["is_default"] is True, made.text
    assert api.get(CARDS, token=token).json()["payment_methods"][0]["is_default"] is True

    removed = api.request("DELETE", f"{CARDS}{pm_id}", token=token)
    assert removed.status_code == 200 and removed.json()["id"] == pm_id, removed.text
    assert api.get(CARDS, token=token).json() == {"payment_methods": []}
    assert api.request("DELETE", f"{CARDS}{pm_id}/", token=token).status_code == 404  # detached: not yours any more
    assert len(stripe_customers(stack, sub)) == 1


def test_setting_up_cards_is_rate_limited_per_account(api, stack):
    _, token = card_holder(api)
    answers = [api.post(f"{CARDS}setup/", token=token) for _ in range(6)]
    assert [a.status_code for a in answers] == [201] * 5 + [429], [a.text for a in answers]
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert answers[-1].json()["code"] == "setup_rate_limited"
    _, someone_else = card_holder(api)
    assert api.post(f"{CARDS}setup/", token=someone_else).status_code == 201  # per account


def test_stripe_down_at_setup_is_502_then_503_when_busy_and_nothing_is_left_half_made(api, stack, stripe_faults):
    sub, token = card_holder(api)
    stripe_faults(500, count=10, path="/v1/customers")
    down = api.post(f"{CARDS}setup/", token=token)
    assert down.status_code == 502, down.text
    assert stripe_customers(stack, sub) == []
    stripe_faults.clear()
    stripe_faults(429, count=10, path="/v1/setup_intents")
    busy = api.post(f"{CARDS}setup/", token=token)
    assert busy.status_code == 503 and busy.headers.get("Retry-After"), busy.text
    stripe_faults.clear()
    assert api.post(f"{CARDS}setup/", token=token).status_code == 201
    assert len(stripe_customers(stack, sub)) == 1


def test_payment_history_and_inbox_show_what_happened(api, stack, make_event):
    event_id, types = make_event({"GA": (2500, 20)})
    sub, token = card_holder(api)
    orders = []
    for qty in (2, 1):
        order = buy(api, token, event_id, [(types["GA"], qty)]).json()
        assert pay(stack, order).status_code == 200
        assert api.get(f"/api/orders/{order['order_id']}/", token=token).json()["status"] == "paid"
        orders.append(order)
    first = orders[0]
    refund = api.post(f"/api/orders/{first['order_id']}/refund/", token=token,
                      json={"ticket_ids": [first["tickets"][0]["id"]]})
    assert refund.status_code == 201, refund.text

    page = api.get("/api/me/payments/", token=token).json()
    assert [p["order_id"] for p in page["payments"]] == [orders[1]["order_id"], first["order_id"]]  # newest first
    shown = page["payments"][1]
    assert shown["event_id"] == event_id and shown["event_name"]
    assert (shown["amount_cents"], shown["currency"], shown["status"]) == (5000, "usd", "partially_refunded")
    assert shown["card"] == {"brand": "visa", "last4": "4242"}
    assert [(r["id"], r["amount_cents"], r["status"]) for r in shown["refunds"]] == [
        (refund.json()["id"], 2500, refund.json()["status"])]
    assert shown["refunds"][0]["reason"] and shown["refunds"][0]["created_at"]
    one = api.get("/api/me/payments/?limit=1", token=token).json()
    assert len(one["payments"]) == 1 and one["next_cursor"]
    rest = api.get(f"/api/me/payments/?limit=1&cursor={one['next_cursor']}", token=token).json()
    assert rest["payments"][0]["order_id"] == first["order_id"]
    _, other = card_holder(api)
    assert api.get("/api/me/payments/", token=other).json()["payments"] == []
    foreign = api.get(f"/api/me/payments/?cursor={one['next_cursor']}", token=other)
    assert foreign.status_code == 400 and foreign.json()["code"] == "bad_cursor"

    # receipts (one per order) and the refund notice, all unread
    def inbox(query=""):
        return api.get(f"/api/me/notifications/{query}", token=token).json()

    assert inbox()["unread"] == 3, inbox()
    listed = inbox()["notifications"]
    assert sorted(n["kind"] for n in listed) == ["receipt", "receipt", "refund"]
    notice = next(n for n in listed if n["kind"] == "refund")
    assert notice["order_id"] == first["order_id"] and notice["event_id"] == event_id
    assert notice["title"] == f"Refund for order {first['order_id']}" and "$25.00" in notice["body"]
    assert notice["read_at"] is None

    assert api.post(f"/api/me/notifications/{notice['id']}/read/", token=other).status_code == 404
    assert api.post("/api/me/notifications/ntf_unknown/read/", token=token).status_code == 404
    read = api.post(f"/api/me/notifications/{notice['id']}/read/", token=token)
    assert read.status_code == 200 and read.json()["read_at"], read.text
    again = api.post(f"/api/me/notifications/{notice['id']}/read", token=token).json()
    assert again["read_at"] == read.json()["read_at"]  # read once
    unread = inbox("?unread=true")
    assert unread["unread"] == 2 and {n["kind"] for n in unread["notifications"]} == {"receipt"}
    first_page = inbox("?limit=2")
    assert len(first_page["notifications"]) == 2 and first_page["next_cursor"]
    assert len(inbox(f"?limit=2&cursor={first_page['next_cursor']}")["notifications"]) == 1
    stolen = api.get(f"/api/me/notifications/?cursor={first_page['next_cursor']}", token=other)
    assert stolen.status_code == 400 and stolen.json()["code"] == "bad_cursor"
    assert api.get(f"/api/me/notifications/?unread=true&cursor={first_page['next_cursor']}", token=token).status_code == 400
    assert api.post("/api/me/notifications/read-all/", token=token).json() == {"unread": 0}
    assert inbox()["unread"] == 0 and all(n["read_at"] for n in inbox()["notifications"])
    assert inbox("?unread=true")["notifications"] == []
    assert api.get("/api/me/notifications/", token=other).json()["notifications"] == []


def test_a_resent_receipt_is_not_a_second_notification(api, stack, make_event):
    event_id, types = make_event({"GA": (1500, 5)})
    _, token = card_holder(api)
    order = buy(api, token, event_id, [(types["GA"], 1)]).json()
    pay(stack, order)
    assert api.get("/api/me/notifications/", token=token).json()["unread"] == 1
    assert api.post(f"/api/orders/{order['order_id']}/resend-receipt/", token=token).status_code == 200
    assert api.get("/api/me/notifications/", token=token).json()["unread"] == 1
