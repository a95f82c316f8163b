"""Vouchers (issue 19), in process: the organiser's rules (422 naming the field), the
discount checkout computes (before fees, never below zero, one rounding rule), uses taken
in the hold's transaction and given back by the release paths, so concurrent checkouts
never take more than max_uses; hidden types; wrong guesses limited per customer."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest

from local.environment import overriding
from tests.unit.conftest import ADMIN, Invoker, load_function
from ticketing import checkout, clock, vouchers
from ticketing.auth import Caller
from ticketing.lifecycle.writes import set_hook
from ticketing.table import OrderItem, TicketItem, VoucherItem

CHECKOUT = "/api/tickets/stripe/checkout/"


@pytest.fixture
def shop(aws, catalogue, stripe_standin):
    """An event with type A (50 seats at $10) and hidden type B (10 seats at $25)."""
    _, event, _ = catalogue(
        "POST", "/api/events/",
        {"name": "Vouchers", "venue": "Hall", "currency": "usd", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T22:00:00Z"},
        claims=ADMIN,
    )
    _, a, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/", {"name": "A", "price_cents": 1000, "capacity": 50}, claims=ADMIN)
    _, b, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/",
                        {"name": "B", "price_cents": 2500, "capacity": 10, "hidden": True}, claims=ADMIN)
    assert b["hidden"] is True
    yield {"event": event["id"], "a": a["id"], "b": b["id"], "org": Invoker(load_function("organiser")),
           "buy": Invoker(load_function("checkout")), "catalogue": catalogue}
    clock.freeze(None)


def _voucher(shop, **body) -> dict:
    status, made, _ = shop["org"]("POST", f"/api/events/{shop['event']}/vouchers/", {"max_uses": 5, **body}, claims=ADMIN)
    assert status == 201, made
    return made


def _claims(sub: str | None = None) -> dict:
    sub = sub or f"v-{uuid.uuid4().hex[:8]}"
    return {"sub": sub, "email": f"{sub}@example.com", "name": sub, "email_verified": "true"}


def _buy(shop, items, code=None, claims=None):
    body = {"event_id": shop["event"], "items": items}
    if code is not None:
        body["voucher_code"] = code
    return shop["buy"]("POST", CHECKOUT, body, claims=claims or _claims())


def _uses(code: str) -> int:
    return int(VoucherItem.get(*VoucherItem.key(code), consistent_read=True).uses)


# ------------------------------------------------------------------ organiser
def test_a_generated_code_is_10_characters_of_the_31_letter_alphabet_and_unguessable(shop):
    made = _voucher(shop, kind="percent", value=10)
    assert len(made["code"]) == 10 and set(made["code"]) <= set(vouchers.ALPHABET) and len(vouchers.ALPHABET) == 31
    assert not set("ILO01") & set(vouchers.ALPHABET)
    assert len({vouchers.generate_code() for _ in range(2000)}) == 2000
    assert made["uses"] == 0 and made["id"].startswith("vc_")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "percent", "value": 101}, "value"),
        ({"kind": "percent", "value": -1}, "value"),
        ({"kind": "amount", "value": -5}, "value"),
        ({"kind": "reveal", "value": 3}, "value"),
        ({"kind": "percent", "value": 10, "valid_from": "2029-06-02T00:00:00Z", "valid_until": "2029-06-01T00:00:00Z"}, "valid_until"),
        ({"kind": "percent", "value": 10, "ticket_type_ids": ["tt_nope"]}, "ticket_type_ids.0"),
        ({"kind": "percent", "value": 10, "code": "no spaces!"}, "code"),
        ({"kind": "half", "value": 10}, "kind"),
        ({"kind": "percent", "value": 10, "max_uses": 0}, "max_uses"),
    ],
)
def test_bad_vouchers_are_422_naming_the_field_and_make_nothing(shop, body, field):
    status, answer, _ = shop["org"]("POST", f"/api/events/{shop['event']}/vouchers/", {"max_uses": 5, **body}, claims=ADMIN)
    assert status == 422 and answer["field"] == field, answer
    _, listed, _ = shop["org"]("GET", f"/api/events/{shop['event']}/vouchers/", claims=ADMIN)
    assert listed["vouchers"] == []


def test_only_organisers_manage_vouchers_and_a_given_code_is_taken_once(shop):
    status, _, _ = shop["org"]("POST", f"/api/events/{shop['event']}/vouchers/", {"kind": "percent", "value": 5, "max_uses": 1},
                               claims=_claims())
    assert status == 403
    _voucher(shop, kind="percent", value=5, code="spring-25")
    status, answer, _ = shop["org"]("POST", f"/api/events/{shop['event']}/vouchers/",
                                    {"kind": "amount", "value": 5, "max_uses": 1, "code": "SPRING-25"}, claims=ADMIN)
    assert status == 409 and answer["code"] == "code_taken"


def test_patch_cannot_lower_max_uses_below_uses_taken_and_delete_retires_keeping_orders(shop):
    made = _voucher(shop, kind="percent", value=50, max_uses=3)
    for _ in range(2):
        status, answer, _ = _buy(shop, [{"ticket_type_id": shop["a"], "qty": 1}], made["code"])
        assert status == 201 and answer["discount_cents"] == 500 and answer["total_cents"] == 500
    path = f"/api/events/{shop['event']}/vouchers/{made['id']}/"
    status, answer, _ = shop["org"]("PATCH", path, {"max_uses": 1}, claims=ADMIN)
    assert status == 422 and answer["field"] == "max_uses"
    status, answer, _ = shop["org"]("PATCH", path, {"valid_until": "2020-01-01T00:00:00Z", "valid_from": "2021-01-01T00:00:00Z"},
                                    claims=ADMIN)
    assert status == 422 and answer["field"] == "valid_until"
    status, answer, _ = shop["org"]("PATCH", path, {"value": 20, "max_uses": 2}, claims=ADMIN)
    assert status == 200 and answer["value"] == 20 and answer["uses"] == 2
    status, answer, _ = shop["org"]("DELETE", path, claims=ADMIN)
    assert status == 200 and answer["retired_at"]
    status, answer, _ = _buy(shop, [{"ticket_type_id": shop["a"], "qty": 1}], made["code"])
    assert status == 422 and answer["code"] == "retired"
    _, listed, _ = shop["org"]("GET", f"/api/events/{shop['event']}/vouchers/", claims=ADMIN)
    assert [v["uses"] for v in listed["vouchers"]] == [2]
    kept = [o for o in OrderItem.scan() if o.voucher_code == made["code"]]
    assert len(kept) == 2 and all(int(o.discount_cents) == 500 and int(o.total_cents) == 500 for o in kept)
    status, _, _ = shop["org"]("PATCH", f"/api/events/{shop['event']}/vouchers/vc_nope/", {"value": 1}, claims=ADMIN)
    assert status == 404


# ------------------------------------------------------------------ discount
@pytest.mark.parametrize(
    ("kind", "value", "subtotal", "off"),
    [("percent", 15, 999, 150), ("percent", 15, 990, 149), ("percent", 50, 1, 1), ("percent", 100, 1234, 1234),
     ("percent", 0, 1000, 0), ("amount", 700, 500, 500), ("amount", 300, 500, 300), ("reveal", 0, 500, 0)],
)
def test_the_one_rounding_rule_never_goes_below_zero(kind, value, subtotal, off):
    assert vouchers.discount(kind, value, subtotal) == off


def test_shares_add_up_and_no_ticket_goes_below_zero():
    for prices, off in [([1000, 1000, 1000], 1000), ([1, 1, 1], 2), ([999, 1], 1000), ([700, 300], 1), ([5], 0)]:
        parts = vouchers.shares(prices, off)
        assert sum(parts) == off and all(0 <= p <= price for p, price in zip(parts, prices, strict=True))


def test_checkout_discount_applies_to_the_named_types_and_tickets_carry_what_was_paid(shop):
    made = _voucher(shop, kind="percent", value=15, ticket_type_ids=[shop["b"]])
    status, answer, _ = _buy(shop, [{"ticket_type_id": shop["a"], "qty": 2}, {"ticket_type_id": shop["b"], "qty": 3}], made["code"])
    assert status == 201, answer
    assert answer["discount_cents"] == 1125 and answer["total_cents"] == 2000 + 7500 - 1125
    tickets = [TicketItem.get(*TicketItem.key(t["id"])) for t in answer["tickets"]]
    assert sum(int(t.price_cents) for t in tickets) == answer["total_cents"]
    assert sorted(int(t.price_cents) for t in tickets if t.type_id == shop["a"]) == [1000, 1000]
    amount = _voucher(shop, kind="amount", value=99_999)
    from ticketing import catalogue

    event, types = catalogue.load_event(shop["event"])
    a = next(t for t in types if t.type_id == shop["a"])
    applied = vouchers.apply(event, [(a, 2)], amount["code"].lower(), Caller(sub="x", email_verified=True))
    assert applied.discount_cents == 2000 and applied.shares == [[1000, 1000]]  # never below zero


# ------------------------------------------------------------------ hidden types
def test_a_hidden_type_is_off_the_event_page_and_sold_only_with_a_code_that_reveals_it(shop):
    _, page, _ = shop["catalogue"]("GET", f"/api/events/{shop['event']}/")
    assert [t["id"] for t in page["ticket_types"]] == [shop["a"]]
    status, answer, _ = _buy(shop, [{"ticket_type_id": shop["b"], "qty": 1}])
    assert status == 422 and answer["field"] == "items.0.ticket_type_id"
    everything = _voucher(shop, kind="percent", value=10)  # names no type: applies to the visible ones only
    status, answer, _ = _buy(shop, [{"ticket_type_id": shop["b"], "qty": 1}], everything["code"])
    assert status == 422 and answer["field"] == "items.0.ticket_type_id"
    reveal = _voucher(shop, kind="reveal", ticket_type_ids=[shop["b"]])
    status, answer, _ = _buy(shop, [{"ticket_type_id": shop["b"], "qty": 2}], reveal["code"])
    assert status == 201 and answer["discount_cents"] == 0 and answer["total_cents"] == 5000
    status, answer, _ = _buy(shop, [{"ticket_type_id": shop["a"], "qty": 1}], reveal["code"])
    assert status == 422 and answer["code"] == "not_applicable" and answer["field"] == "voucher_code"


# ------------------------------------------------------------------ refusals
def test_each_unusable_code_is_422_naming_voucher_code_with_its_reason(shop, catalogue):
    now = clock.now()
    later = _voucher(shop, kind="percent", value=10, valid_from=clock.iso(now + timedelta(days=1)))
    over = _voucher(shop, kind="percent", value=10, valid_until=clock.iso(now + timedelta(minutes=5)))
    once = _voucher(shop, kind="percent", value=10, max_uses=1)
    _, other, _ = catalogue("POST", "/api/events/", {"name": "Other", "venue": "Hall", "currency": "usd",
                                                      "starts_at": "2030-02-01T18:00:00Z", "ends_at": "2030-02-01T22:00:00Z"}, claims=ADMIN)
    status, foreign, _ = shop["org"]("POST", f"/api/events/{other['id']}/vouchers/", {"kind": "percent", "value": 5, "max_uses": 9},
                                     claims=ADMIN)
    assert status == 201
    assert _buy(shop, [{"ticket_type_id": shop["a"], "qty": 1}], once["code"])[0] == 201
    clock.freeze(now + timedelta(minutes=10))
    line = [{"ticket_type_id": shop["a"], "qty": 1}]
    for code, reason in [("NOSUCHCODE", "unknown"), (foreign["code"], "wrong_event"), (later["code"], "not_yet_valid"),
                         (over["code"], "expired"), (once["code"], "used_up")]:
        status, answer, _ = _buy(shop, line, code)
        assert (status, answer["field"], answer["code"]) == (422, "voucher_code", reason), answer
    assert _uses(once["code"]) == 1 and _uses(later["code"]) == 0


def test_wrong_guesses_are_limited_per_customer_with_retry_after(shop):
    made = _voucher(shop, kind="percent", value=10)
    guesser, other = _claims(), _claims()
    line = [{"ticket_type_id": shop["a"], "qty": 1}]
    for n in range(vouchers.GUESS_LIMIT):
        status, answer, _ = _buy(shop, line, f"GUESS{n:04d}", guesser)
        assert status == 422 and answer["code"] == "unknown"
    status, answer, headers = _buy(shop, line, made["code"], guesser)  # even a right code, until the window ends
    assert status == 429 and answer["code"] == "too_many_voucher_guesses" and int(headers["Retry-After"]) >= 1
    assert _buy(shop, line, made["code"], other)[0] == 201  # another customer is not limited
    clock.freeze(clock.now() + vouchers.GUESS_WINDOW)
    assert _buy(shop, line, made["code"], guesser)[0] == 201


# ------------------------------------------------------------------ uses
@pytest.fixture
def one_aws_call_at_a_time(monkeypatch):
    """In-process moto is not thread-safe: each AWS call runs whole, one at a time, while
    the threads' reads and writes interleave between calls as they would on the real table."""
    from moto.core.botocore_stubber import BotocoreStubber

    lock = threading.Lock()
    original = BotocoreStubber.process_request

    def serialised(self, request):
        with lock:
            return original(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", serialised)


@pytest.fixture
def budget_above_the_burst():
    """Stripe's budget well above 12 checkouts at once, as the integration stack sets it: at
    its defaults (25 PaymentIntents a second, a call in a second's last half also counted in
    the next) 12 checkouts started together may rightly get 503 `stripe_budget`, which is
    tests/unit/test_stripe_budget.py's subject, not this test's."""
    from ticketing import config

    with overriding({"STRIPE_RATE_TOTAL": "10000", "STRIPE_RATE_PER_ENDPOINT": "10000"}, config.settings.cache_clear):
        yield


def test_concurrent_checkouts_with_a_voucher_of_5_uses_exactly_5_succeed_and_a_lapsed_hold_gives_its_use_back(
        shop, one_aws_call_at_a_time, budget_above_the_burst):
    made = _voucher(shop, kind="amount", value=300, max_uses=5)
    start = threading.Barrier(12)
    results: list[tuple[int, dict]] = []

    def one() -> None:
        claims = _claims()
        start.wait()
        status, answer, _ = _buy(shop, [{"ticket_type_id": shop["a"], "qty": 1}], made["code"], claims)
        results.append((status, answer))

    threads = [threading.Thread(target=one) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [answer for status, answer in results if status == 201]
    refused = [answer for status, answer in results if status != 201]
    assert len(won) == 5 and all(a["discount_cents"] == 300 and a["total_cents"] == 700 for a in won)
    assert len(refused) == 7 and [(a.get("field"), a.get("code")) for a in refused] == [("voucher_code", "used_up")] * 7, refused
    assert _uses(made["code"]) == 5
    # one hold lapses: the expiry run gives its use back, and the next customer gets it
    order = OrderItem.get(*OrderItem.key(won[0]["order_id"]))
    clock.freeze(clock.parse_iso(order.expires_at) + timedelta(seconds=checkout.GRACE_SECONDS + 1))
    assert checkout.expire_lapsed(event_id=shop["event"], limit=1) == 1
    assert _uses(made["code"]) == 4
    clock.freeze(None)
    assert _buy(shop, [{"ticket_type_id": shop["a"], "qty": 1}], made["code"])[0] == 201
    status, answer, _ = _buy(shop, [{"ticket_type_id": shop["a"], "qty": 1}], made["code"])
    assert status == 422 and answer["code"] == "used_up" and _uses(made["code"]) == 5


def test_a_canceled_order_gives_its_use_back_once(shop):
    made = _voucher(shop, kind="percent", value=10, max_uses=1)
    claims = _claims()
    status, answer, _ = _buy(shop, [{"ticket_type_id": shop["a"], "qty": 1}], made["code"], claims)
    assert status == 201 and _uses(made["code"]) == 1
    for _ in range(2):  # twice: the second changes nothing
        status, _, _ = shop["buy"]("POST", f"/api/orders/{answer['order_id']}/cancel/", {}, claims=claims)
    assert _uses(made["code"]) == 0


def test_the_last_use_between_the_read_and_the_hold_is_refused_not_oversold(shop, one_aws_call_at_a_time):
    """Two checkouts both read uses=0 of a 1-use voucher; the hold's condition lets one in."""
    made = _voucher(shop, kind="percent", value=10, max_uses=1)
    who = [Caller(sub=f"r-{n}", email=f"r{n}@example.com", name="R", email_verified=True) for n in range(2)]
    reads = threading.Barrier(2)

    def hook(name: str, **info) -> None:
        if name == "commit" and "voucher" in info.get("kinds", ()):
            try:
                reads.wait(timeout=5)
            except threading.BrokenBarrierError:
                pass

    set_hook(hook)
    results: list = []

    def one(caller: Caller) -> None:
        try:
            results.append(checkout.checkout(checkout.CheckoutIn(event_id=shop["event"], voucher_code=made["code"],
                                                                 items=[{"ticket_type_id": shop["a"], "qty": 1}]), caller))
        except Exception as exc:  # noqa: BLE001 - the outcome is the point
            results.append(exc)

    try:
        threads = [threading.Thread(target=one, args=(caller,)) for caller in who]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        set_hook(None)
    won = [r for r in results if isinstance(r, checkout.CheckoutOut)]
    lost = [r for r in results if not isinstance(r, checkout.CheckoutOut)]
    assert len(won) == 1 and len(lost) == 1 and lost[0].fields["code"] == "used_up", results
    assert _uses(made["code"]) == 1
