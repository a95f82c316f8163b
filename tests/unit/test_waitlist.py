"""Waiting lists (issue 19), in process (moto + the Stripe stand-in): joining only when sold
out, seats that come back kept from the public and offered to the first in line only,
an offer lapsing and passing to the next, checkout with the offer, and the races: an offer
lapsing while its checkout commits, two offer runs at once."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import boto3
import pytest

from tests.unit.conftest import ADMIN, Invoker, catalogue_event, confirm_at_stripe, load_function, provision_fulfilment
from tests.unit.test_vouchers import one_aws_call_at_a_time  # noqa: F401 - a fixture
from ticketing import checkout, clock, config, fulfilment, gate, inventory, mail, payments, refunds, waitlist
from ticketing.auth import Caller
from ticketing.lifecycle.writes import set_hook
from ticketing.table import InventoryShard, NotificationItem, WaitEntryItem

PUBLIC = "/ticketing/test/qr-wait-public"
ORGANISER = Caller(sub="admin-1", groups=frozenset({"admin"}))
CHECKOUT = "/api/tickets/stripe/checkout/"


@pytest.fixture
def shop(aws, catalogue, stripe_standin, monkeypatch):
    """An event with a waiting list (offers open 30 minutes) and type GA of 4 seats at $30."""
    provision_fulfilment(monkeypatch, public_keys=PUBLIC)
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    gate.forget_events()
    event = catalogue_event(catalogue, "Wait Night")
    status, patched, _ = catalogue("PATCH", f"/api/events/{event['id']}/", {"waiting_list": {"enabled": True, "offer_minutes": 30}},
                                   claims=ADMIN)
    assert status == 200 and patched["waiting_list"] == {"enabled": True, "offer_minutes": 30}
    _, ticket_type, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/", {"name": "GA", "price_cents": 3000, "capacity": 4},
                                  claims=ADMIN)
    yield {"event": event["id"], "type": ticket_type["id"], "buy": Invoker(load_function("checkout")),
           "account": Invoker(load_function("account")), "catalogue": catalogue}
    config.settings.cache_clear()
    mail.reset_client()
    clock.freeze(None)


def _claims(who: Caller) -> dict:
    return {"sub": who.sub, "email": who.email, "name": who.name, "email_verified": "true"}


def _customer(name: str = "w") -> Caller:
    sub = f"{name}-{uuid.uuid4().hex[:8]}"
    return Caller(sub=sub, email=f"{sub}@example.com", name=sub, email_verified=True)


def _buy(shop, who: Caller, qty: int, offer_code: str | None = None):
    body = {"event_id": shop["event"], "items": [{"ticket_type_id": shop["type"], "qty": qty}]}
    if offer_code:
        body["offer_code"] = offer_code
    return shop["buy"]("POST", CHECKOUT, body, claims=_claims(who))


def _paid(shop, qty: int) -> dict:
    who = _customer("buyer")
    status, order, _ = _buy(shop, who, qty)
    assert status == 201, order
    confirm_at_stripe(order["payment_intent_id"])
    assert fulfilment.settle(payments.retrieve_intent(order["payment_intent_id"]))[0] == "paid"
    return order


def _join(shop, who: Caller, qty: int):
    return shop["account"]("POST", f"/api/events/{shop['event']}/ticket-types/{shop['type']}/waitlist/", {"qty": qty},
                           claims=_claims(who))


def _mine(shop, who: Caller) -> list[dict]:
    status, page, _ = shop["account"]("GET", "/api/me/waitlist/", claims=_claims(who))
    assert status == 200
    return page["entries"]


def _public(shop) -> int:
    _, page, _ = shop["catalogue"]("GET", f"/api/events/{shop['event']}/")
    return page["ticket_types"][0]["available"]


def _seats(shop) -> inventory.Availability:
    return inventory.availability([(shop["type"], 1)])[shop["type"]]


def _sold_out_with_three_waiting(shop) -> tuple[dict, list[Caller]]:
    """X bought 2 (paid) and Y bought 2: sold out; W1 (2 seats), W2 (2) and W3 (1) wait."""
    first = _customer("early")
    status, answer, _ = _join(shop, first, 1)
    assert status == 409 and answer["code"] == "not_sold_out"  # on sale: buy instead
    x = _paid(shop, 2)
    _paid(shop, 2)
    waiters = [_customer("w1"), _customer("w2"), _customer("w3")]
    for position, (who, qty) in enumerate(zip(waiters, (2, 2, 1), strict=True), start=1):
        status, entry, _ = _join(shop, who, qty)
        assert status == 201 and entry["position"] == position and entry["qty"] == qty, entry
    status, again, _ = _join(shop, waiters[0], 5)
    assert status == 200 and again["position"] == 1 and again["qty"] == 2  # the same place
    return x, waiters


def test_a_refund_of_two_seats_is_offered_to_the_first_in_line_only_and_passes_on_when_the_offer_lapses(shop):
    x, (w1, w2, w3) = _sold_out_with_three_waiting(shop)
    refunds.refund(x["order_id"], refunds.RefundIn(), ORGANISER)
    # the two seats are back, but kept for those waiting: the public cannot see or buy them
    assert _seats(shop).remaining == 2 and _public(shop) == 0
    status, answer, _ = _buy(shop, _customer("public"), 1)
    assert status == 409 and answer["code"] == "sold_out"
    assert waitlist.run() == {"offers_lapsed": 0, "offers_made": 1}
    [offer] = _mine(shop, w1)
    assert offer["state"] == "offered" and offer["offer"]["qty"] == 2 and offer["position"] is None
    assert [e["position"] for e in _mine(shop, w2)] == [1] and [e["position"] for e in _mine(shop, w3)] == [2]
    assert _seats(shop).held == 2 and _seats(shop).remaining == 0 and _public(shop) == 0  # held for the offer
    assert waitlist.run()["offers_made"] == 0  # W3 does not overtake W2, and nothing is offered twice
    notes = list(NotificationItem.query(NotificationItem.inbox(w1.sub)))
    assert [n.kind for n in notes] == ["waitlist_offer"] and offer["offer"]["offer_code"] in notes[0].body
    sent = boto3.client("ses").list_identities()  # moto keeps no mailbox; the send must not have raised
    assert sent is not None
    status, answer, _ = _buy(shop, w2, 2, offer["offer"]["offer_code"])  # another customer's code
    assert status == 422 and answer["field"] == "offer_code" and answer["code"] == "unknown"
    # W1 lets it lapse: it passes to W2, the seats still held, the public still sees none
    clock.freeze(clock.parse_iso(offer["offer"]["expires_at"]) + timedelta(seconds=1))
    assert waitlist.run() == {"offers_lapsed": 1, "offers_made": 1}
    assert _mine(shop, w1) == [] and _public(shop) == 0 and _seats(shop).held == 2
    status, answer, _ = _buy(shop, w1, 2, offer["offer"]["offer_code"])
    assert status == 422 and answer["code"] == "offer_expired"  # the lapsed code is no longer a way in
    [second] = _mine(shop, w2)
    assert second["state"] == "offered"
    status, order, _ = _buy(shop, w2, 2, second["offer"]["offer_code"])
    assert status == 201 and len(order["tickets"]) == 2, order
    assert _mine(shop, w2) == [] and [e["position"] for e in _mine(shop, w3)] == [1]
    seats = _seats(shop)
    assert (seats.remaining, seats.held, seats.sold) == (0, 2, 2)
    status, answer, _ = _buy(shop, w2, 2, second["offer"]["offer_code"])  # once only
    assert status == 422 and answer["code"] == "offer_taken"


def test_more_capacity_and_a_lapsed_hold_feed_the_list_too(shop):
    _, (w1, w2, w3) = _sold_out_with_three_waiting(shop)
    status, _, _ = shop["catalogue"]("PATCH", f"/api/events/{shop['event']}/ticket-types/{shop['type']}/", {"capacity": 6},
                                     claims=ADMIN)
    assert status == 200 and _public(shop) == 0
    assert waitlist.run()["offers_made"] == 1 and _mine(shop, w1)[0]["state"] == "offered"
    [offer] = _mine(shop, w1)
    status, order, _ = _buy(shop, w1, 2, offer["offer"]["offer_code"])
    assert status == 201
    # W1 never pays: the hold lapses, and is released after the expiry's grace
    clock.freeze(clock.parse_iso(order["expires_at"]) + timedelta(seconds=checkout.GRACE_SECONDS + 1))
    assert checkout.expire_lapsed(event_id=shop["event"]) == 1
    assert _public(shop) == 0
    assert waitlist.run()["offers_made"] == 1 and _mine(shop, w2)[0]["state"] == "offered"


def test_joining_is_per_customer_opt_in_and_leaving_an_offer_passes_its_seats_on(shop, catalogue):
    x, (w1, w2, _w3) = _sold_out_with_three_waiting(shop)
    path = f"/api/events/{shop['event']}/ticket-types/{shop['type']}/waitlist/"
    status, _, _ = shop["account"]("DELETE", path, claims=_claims(_customer("never")))
    assert status == 404
    refunds.refund(x["order_id"], refunds.RefundIn(), ORGANISER)
    waitlist.run()
    status, left, _ = shop["account"]("DELETE", path, claims=_claims(w1))
    assert status == 200 and left["state"] == "left" and _seats(shop).held == 0
    assert waitlist.run()["offers_made"] == 1 and _mine(shop, w2)[0]["state"] == "offered"
    status, answer, _ = _join(shop, w1, 1)  # may join again, at the back
    assert status == 201 and answer["position"] == 2
    _, other, _ = catalogue("POST", "/api/events/", {"name": "No list", "venue": "Hall", "currency": "usd",
                                                      "starts_at": "2030-02-01T18:00:00Z", "ends_at": "2030-02-01T22:00:00Z"},
                            claims=ADMIN)
    _, t, _ = catalogue("POST", f"/api/events/{other['id']}/ticket-types/", {"name": "A", "price_cents": 100, "capacity": 1}, claims=ADMIN)
    status, answer, _ = shop["account"]("POST", f"/api/events/{other['id']}/ticket-types/{t['id']}/waitlist/", {"qty": 1},
                                        claims=_claims(w1))
    assert status == 409 and answer["code"] == "waiting_list_disabled"
    status, answer, _ = _join(shop, _customer(), 0)
    assert status == 422 and answer["field"] == "qty"


# ------------------------------------------------------------------ races
def _offered(shop) -> tuple[Caller, dict]:
    x, (w1, *_rest) = _sold_out_with_three_waiting(shop)
    refunds.refund(x["order_id"], refunds.RefundIn(), ORGANISER)
    assert waitlist.run()["offers_made"] == 1
    return w1, _mine(shop, w1)[0]["offer"]


@pytest.mark.parametrize("first", ["checkout", "lapse"])
def test_an_offer_lapsing_while_its_checkout_commits_is_taken_or_passed_on_never_both(shop, first):
    """The checkout read the offer while it was open and stops before its transaction; the
    lapse runs (after the expiry) before or after the commit: one of them wins."""
    w1, offer = _offered(shop)
    clock.freeze(clock.parse_iso(offer["expires_at"]) - timedelta(seconds=5))
    at_commit, go = threading.Event(), threading.Event()

    def hook(name: str, **info) -> None:
        if name == "commit" and "offer" in info.get("kinds", ()):
            at_commit.set()
            go.wait(timeout=10)

    results: list = []

    def buy() -> None:
        try:
            results.append(checkout.checkout(checkout.CheckoutIn(
                event_id=shop["event"], offer_code=offer["offer_code"], items=[{"ticket_type_id": shop["type"], "qty": 2}]), w1))
        except Exception as exc:  # noqa: BLE001 - the outcome is the point
            results.append(exc)

    set_hook(hook)
    try:
        thread = threading.Thread(target=buy)
        thread.start()
        assert at_commit.wait(timeout=30)
        if first == "checkout":
            set_hook(None)
            go.set()
            thread.join()
        clock.freeze(clock.parse_iso(offer["expires_at"]) + timedelta(seconds=1))
        lapsed = waitlist.lapse_offers()
        go.set()
        thread.join()
    finally:
        set_hook(None)
    [outcome] = results
    entry = next(e for e in WaitEntryItem.query(f"WAIT#{shop['type']}") if e.sub == w1.sub)
    seats = _seats(shop)
    if first == "checkout":
        assert isinstance(outcome, checkout.CheckoutOut) and lapsed == 0 and entry.state == "taken"
        assert (seats.remaining, seats.held) == (0, 2)  # the order holds them
    else:
        assert getattr(outcome, "fields", {}).get("code") == "offer_expired" and lapsed == 1 and entry.state == "lapsed"
        assert (seats.remaining, seats.held) == (2, 0)  # back, for the next in line
        assert _public(shop) == 0


def test_two_offer_runs_at_once_offer_each_place_once_and_each_seat_once(shop, one_aws_call_at_a_time):  # noqa: F811
    x, (w1, w2, w3) = _sold_out_with_three_waiting(shop)
    status, _, _ = shop["catalogue"]("PATCH", f"/api/events/{shop['event']}/ticket-types/{shop['type']}/", {"capacity": 7},
                                     claims=ADMIN)
    refunds.refund(x["order_id"], refunds.RefundIn(), ORGANISER)  # two returns: 3 new seats and 2 refunded
    both = threading.Barrier(2)

    def hook(name: str, **info) -> None:
        if name == "commit" and "code" in info.get("kinds", ()):
            try:
                both.wait(timeout=2)  # both runs have read the same free seats and line
            except threading.BrokenBarrierError:
                pass

    made: list[int] = []
    set_hook(hook)
    try:
        threads = [threading.Thread(target=lambda: made.append(waitlist.make_offers())) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        set_hook(None)
    made.append(waitlist.make_offers())  # whatever a run gave up on, the next one offers
    states = {e.sub: e.state for e in WaitEntryItem.query(f"WAIT#{shop['type']}", WaitEntryItem.SK.startswith("ENTRY#"))}
    assert states == {w1.sub: "offered", w2.sub: "offered", w3.sub: "offered"} and sum(made) == 3
    seats = _seats(shop)
    assert (seats.remaining, seats.held) == (0, 5)
    shards = list(InventoryShard.query(f"INV#{shop['type']}#0"))
    assert all(int(s.remaining) >= 0 for s in shards)
