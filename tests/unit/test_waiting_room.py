"""The waiting room in process (moto): joining, the pre-opening draw, admission at the rate,
capped by seats, slowed by Stripe pressure, tokens at checkout; and the simulation's
properties on a smaller run (bench/waiting_room_sim.py)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from tests.conftest import load_function
from tests.unit.conftest import ADMIN, Invoker

START = datetime(2026, 12, 2, 12, 0, 0, tzinfo=timezone.utc)


def buyer(n: int | str, verified: bool = True) -> dict:
    return {"sub": f"buyer-{n}-{uuid.uuid4().hex[:6]}", "email": f"b{n}@example.com",
            "email_verified": "true" if verified else "false"}


@pytest.fixture
def room(aws, catalogue, monkeypatch):
    from ticketing import clock, waiting_room

    monkeypatch.setattr(waiting_room, "CACHE_SECONDS", 0)
    monkeypatch.setattr(waiting_room, "SETTING_CACHE_SECONDS", 0)
    waiting_room.clear_cache()
    clock.freeze(START)

    def make(capacity: int = 100, rate: int = 600, ttl: int = 600, opens_in: int = 60, day: str = "2027-06-01"):
        status, event, _ = catalogue("POST", "/api/events/", {
            "name": "Rush", "venue": "Hall", "currency": "usd",
            "starts_at": f"{day}T18:00:00Z", "ends_at": f"{day}T22:00:00Z",
            "waiting_room": {"opens_at": clock.iso(START + timedelta(seconds=opens_in)), "admit_per_minute": rate,
                             "admission_ttl_seconds": ttl},
        }, claims=ADMIN)
        assert status == 201, event
        status, kind, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/",
                                    {"name": "GA", "price_cents": 500, "capacity": capacity}, claims=ADMIN)
        assert status == 201, kind
        return event["id"], kind["id"]

    yield make
    clock.freeze(None)


@pytest.fixture
def queue():
    return Invoker(load_function("queue"))


def at(seconds: float) -> None:
    from ticketing import clock

    clock.freeze(START + timedelta(seconds=seconds))


def test_settings_are_answered_and_patched(room, catalogue):
    event_id, _ = room(rate=600)
    status, event, _ = catalogue("GET", f"/api/events/{event_id}/")
    assert event["waiting_room"]["admit_per_minute"] == 600 and event["waiting_room"]["enabled"] is True
    status, event, _ = catalogue("PATCH", f"/api/events/{event_id}/", {"waiting_room": {"paused": True, "admit_per_minute": 120}},
                                 claims=ADMIN)
    assert status == 200, event
    assert event["waiting_room"]["paused"] is True and event["waiting_room"]["admit_per_minute"] == 120
    status, event, _ = catalogue("PATCH", f"/api/events/{event_id}/", {"waiting_room": {"admit_per_minute": None}}, claims=ADMIN)
    from ticketing import waiting_room

    assert event["waiting_room"]["admit_per_minute"] == waiting_room.default_rate()  # derived from the Stripe budget
    status, body, _ = catalogue("PATCH", f"/api/events/{event_id}/", {"waiting_room": {"opens_at": "2030-01-01T00:00:00Z"}},
                                claims=ADMIN)
    assert status == 422 and body["field"] == "waiting_room.opens_at"


def test_draw_randomises_early_arrivals_and_later_ones_follow_in_order(room, queue):
    from ticketing import waiting_room

    event_id, _ = room(rate=600)
    early = [buyer(i) for i in range(30)]
    for claims in early:
        status, body, headers = queue("POST", f"/api/events/{event_id}/queue/", claims=claims)
        assert status == 201 and body["position"] is None and int(headers["Retry-After"]) >= 2, body
    status, again, _ = queue("POST", f"/api/events/{event_id}/queue/", claims=early[0])
    assert status == 200  # joining again: the same place

    at(60)
    waiting_room.tick(event_id)  # opens: the draw
    late = [buyer(f"late{i}") for i in range(10)]
    late_positions = []
    for claims in late:
        status, body, _ = queue("POST", f"/api/events/{event_id}/queue/", claims=claims)
        assert status == 201
        late_positions.append(body["position"])
    early_positions = [queue("GET", f"/api/events/{event_id}/queue/me/", claims=c)[1]["position"] for c in early]
    assert sorted(early_positions) == list(range(1, 31))
    assert early_positions != sorted(early_positions)  # a draw, not the arrival order (1 in 30! to fail)
    assert late_positions == sorted(late_positions) and min(late_positions) > 30

    seen: dict[str, int] = {}
    for second in range(1, 6):
        at(60 + second)
        state = waiting_room.tick(event_id)
        assert int(state.admitted) == min(10 * second, 40)  # 600 a minute: 10 a second
        for claims in early + late:
            body = queue("GET", f"/api/events/{event_id}/queue/me/", claims=claims)[1]
            if body["admission_token"]:
                seen.setdefault(claims["sub"], second)
        assert len(seen) == int(state.admitted)
    order = sorted(seen, key=lambda sub: seen[sub])
    assert len(order) == 40 and len(set(order)) == 40  # everyone admitted, once


def test_bad_input(room, queue, catalogue):
    event_id, _ = room()
    status, body, _ = queue("POST", f"/api/events/{event_id}/queue/", claims=buyer(1, verified=False))
    assert status == 422 and body["code"] == "email_unverified"
    status, body, _ = queue("GET", f"/api/events/{event_id}/queue/me/", claims=buyer(2))
    assert status == 404
    _, plain, _ = catalogue("POST", "/api/events/", {"name": "Plain", "venue": "Hall", "currency": "usd",
                                                    "starts_at": "2027-06-01T18:00:00Z", "ends_at": "2027-06-01T22:00:00Z"},
                            claims=ADMIN)
    status, body, _ = queue("POST", f"/api/events/{plain['id']}/queue/", claims=buyer(3))
    assert status == 409 and body["code"] == "no_waiting_room"
    later, _ = room(opens_in=7200)
    status, body, _ = queue("POST", f"/api/events/{later}/queue/", claims=buyer(4))
    assert status == 409 and body["code"] == "queue_not_open"
    status, body, _ = queue("GET", f"/api/events/{event_id}/queue/", claims=buyer(5))
    assert status == 403


@pytest.mark.parametrize("ending", ["turned_off", "removed", "canceled"])
def test_a_place_in_a_room_that_is_over_is_refused_so_pages_stop_polling(room, queue, catalogue, ending):
    from ticketing import waiting_room
    from ticketing.table import EventItem

    event_id, _ = room()
    fan = buyer(1)
    assert queue("POST", f"/api/events/{event_id}/queue/", claims=fan)[0] == 201
    assert queue("GET", f"/api/events/{event_id}/queue/me/", claims=fan)[0] == 200
    if ending == "canceled":
        EventItem(*EventItem.key(event_id)).update(actions=[EventItem.status.set("canceled")])
    else:
        change = {"enabled": False} if ending == "turned_off" else None
        assert catalogue("PATCH", f"/api/events/{event_id}/", {"waiting_room": change}, claims=ADMIN)[0] == 200
    waiting_room.clear_cache()
    status, body, _ = queue("GET", f"/api/events/{event_id}/queue/me/", claims=fan)
    assert status == 409, body
    assert body["code"] == ("event_not_on_sale" if ending == "canceled" else "no_waiting_room")


def test_admission_never_passes_the_seats_left_and_sold_out_is_told(room, queue, catalogue):
    from ticketing import waiting_room

    event_id, _ = room(capacity=5, rate=6000)
    people = [buyer(i) for i in range(12)]
    at(61)
    waiting_room.tick(event_id)
    for claims in people:
        queue("POST", f"/api/events/{event_id}/queue/", claims=claims)
    for second in range(2, 6):
        at(60 + second)
        state = waiting_room.tick(event_id)
        assert int(state.admitted) == 5  # five seats: five buyers admitted while their tokens live
    status, view, _ = queue("GET", f"/api/events/{event_id}/queue/", claims=ADMIN)
    assert status == 200 and view["admitted"] == 5 and view["waiting"] == 7


def test_sold_out_waiting_buyers_are_told_at_next_poll(room, queue):
    from ticketing import waiting_room
    from ticketing.table import InventoryShard, TicketTypeItem

    event_id, type_id = room(capacity=2, rate=60)
    first, second = buyer(1), buyer(2)
    at(61)
    waiting_room.tick(event_id)
    queue("POST", f"/api/events/{event_id}/queue/", claims=first)
    queue("POST", f"/api/events/{event_id}/queue/", claims=second)
    shards = int(TicketTypeItem.get(*TicketTypeItem.key(event_id, type_id)).shards)
    for n in range(shards):  # every seat sold elsewhere
        shard = InventoryShard.get(*InventoryShard.key(type_id, n))
        shard.update(actions=[InventoryShard.remaining.set(0)])
    at(62)
    waiting_room.tick(event_id)
    status, body, headers = queue("GET", f"/api/events/{event_id}/queue/me/", claims=second)
    assert status == 200 and body["status"] == "sold_out" and body["admission_token"] is None
    status, body, _ = queue("POST", f"/api/events/{event_id}/queue/", claims=buyer(3))
    assert status == 409 and body["code"] == "sold_out"


def test_rate_slows_under_stripe_pressure_then_recovers(room, queue):
    from ticketing import stripe_budget, waiting_room
    from ticketing.config import settings
    from ticketing.table import RateCounterItem

    event_id, _ = room(rate=600)
    at(60)
    waiting_room.tick(event_id)
    limit = settings().stripe_rate_per_endpoint
    for t in range(61, 64):  # the PaymentIntent budget full in the last seconds
        for k, cap in enumerate(stripe_budget.shard_caps(limit)):
            RateCounterItem(*RateCounterItem.key("ep#payment_intents.create", int(START.timestamp()) + t - 1, k),
                            used=cap).save()
    rates = []
    for t in range(61, 64):
        at(t)
        rates.append(int(waiting_room.tick(event_id).rate))
    assert rates[0] < 600 and rates[1] < rates[0] and rates[2] < rates[1]
    for t in range(70, 100):
        at(t)
        state = waiting_room.tick(event_id)
    assert int(state.rate) == 600  # recovered
    at(100)
    from ticketing.table import EventItem

    EventItem(*EventItem.key(event_id)).update(actions=[EventItem.waiting_room.paused.set(True)])
    at(101)
    assert int(waiting_room.tick(event_id).rate) == 0  # paused


def test_checkout_needs_a_valid_admission_and_spends_it_once(room, queue, stripe_standin):
    from ticketing import clock, waiting_room

    buy = Invoker(load_function("checkout"))
    event_id, type_id = room(rate=600, ttl=120)
    alice, bob = buyer("alice"), buyer("bob")
    at(60)
    waiting_room.tick(event_id)
    for claims in (alice, bob):
        queue("POST", f"/api/events/{event_id}/queue/", claims=claims)
    at(61)
    waiting_room.tick(event_id)
    token = queue("GET", f"/api/events/{event_id}/queue/me/", claims=alice)[1]["admission_token"]
    bobs = queue("GET", f"/api/events/{event_id}/queue/me/", claims=bob)[1]["admission_token"]
    assert token and bobs
    body = {"event_id": event_id, "items": [{"ticket_type_id": type_id, "qty": 1}]}
    clock.freeze(None)
    clock.freeze(START + timedelta(seconds=62))

    def checkout(claims, token=None):
        headers = {"admission-token": token} if token is not None else {}
        return buy("POST", "/api/tickets/stripe/checkout/", body, claims=claims, headers=headers)

    status, answer, _ = checkout(alice)
    assert status == 403 and answer["code"] == "admission_required"
    status, answer, _ = checkout(alice, bobs)
    assert status == 403 and answer["code"] == "admission_wrong_account"
    status, answer, _ = checkout(alice, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert status == 403 and answer["code"] == "admission_invalid"
    status, answer, _ = checkout(alice, token)
    assert status == 201, answer
    status, answer, _ = checkout(alice, token)
    assert status == 403 and answer["code"] == "admission_spent"
    assert queue("GET", f"/api/events/{event_id}/queue/me/", claims=alice)[1]["status"] == "spent"
    at(61 + 121)
    status, answer, _ = checkout(bob, bobs)
    assert status == 403 and answer["code"] == "admission_expired"
    status, view, _ = queue("GET", f"/api/events/{event_id}/queue/", claims=ADMIN)
    assert (view["spent"], view["expired"]) == (1, 1)
    status, again, _ = queue("POST", f"/api/events/{event_id}/queue/", claims=bob)  # lapsed: a new place at the back
    assert status == 201 and again["status"] == "waiting" and again["admission_token"] is None


def test_a_failed_payment_gives_the_admission_back(room, queue, stripe_standin, monkeypatch):
    from ticketing import payments, waiting_room
    from ticketing.errors import PaymentProviderError

    buy = Invoker(load_function("checkout"))
    event_id, type_id = room(rate=600)
    alice = buyer("alice")
    at(60)
    waiting_room.tick(event_id)
    queue("POST", f"/api/events/{event_id}/queue/", claims=alice)
    at(61)
    waiting_room.tick(event_id)
    token = queue("GET", f"/api/events/{event_id}/queue/me/", claims=alice)[1]["admission_token"]
    body = {"event_id": event_id, "items": [{"ticket_type_id": type_id, "qty": 1}]}

    def down(**kwargs):
        raise PaymentProviderError("Stripe is down")

    monkeypatch.setattr(payments, "create_intent", down)
    status, _, _ = buy("POST", "/api/tickets/stripe/checkout/", body, claims=alice, headers={"admission-token": token})
    assert status == 502
    monkeypatch.undo()
    status, answer, _ = buy("POST", "/api/tickets/stripe/checkout/", body, claims=alice, headers={"admission-token": token})
    assert status == 201, answer


def _listed() -> set[str]:
    from ticketing import waiting_room

    return {listing.event_id for listing in waiting_room.rooms()}


@pytest.fixture
def document(aws, monkeypatch):
    """`document(event_id)`: the room's public status document, as the job last published it."""
    from ticketing import config

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="status-test")
    monkeypatch.setenv("QR_BUCKET", "status-test")
    config.settings.cache_clear()
    yield lambda event_id: json.loads(s3.get_object(Bucket="status-test", Key=f"queue/{event_id}.json")["Body"].read())
    config.settings.cache_clear()


@pytest.mark.parametrize("ending", ["turned_off", "removed", "canceled", "ended"])
def test_a_room_that_is_over_is_stepped_once_more_then_taken_off_the_job_list(room, catalogue, ending, document):
    from ticketing import waiting_room
    from ticketing.table import EventItem

    event_id, _ = room(rate=600)
    other, _ = room(rate=600, day="2027-07-01")  # still on when the first event has ended
    at(60)
    assert waiting_room.tick_all() == 2 and _listed() >= {event_id, other}
    assert document(event_id)["closed"] is False
    before = int(waiting_room.read_state(event_id, consistent=True).version)
    if ending == "turned_off":
        assert catalogue("PATCH", f"/api/events/{event_id}/", {"waiting_room": {"enabled": False}}, claims=ADMIN)[0] == 200
    elif ending == "removed":
        assert catalogue("PATCH", f"/api/events/{event_id}/", {"waiting_room": None}, claims=ADMIN)[0] == 200
    elif ending == "canceled":
        EventItem(*EventItem.key(event_id)).update(actions=[EventItem.status.set("canceled")])
    else:
        from ticketing import clock

        clock.freeze(datetime(2027, 6, 1, 22, 0, 1, tzinfo=timezone.utc))
    assert waiting_room.tick_all() == (1 if ending == "removed" else 2)
    assert event_id not in _listed() and other in _listed()
    state = waiting_room.read_state(event_id, consistent=True)
    # one more step (and publication) that shows the room as it now stands, except for a
    # room that no longer exists
    assert int(state.version) == before + (0 if ending == "removed" else 1)
    if ending in ("turned_off", "canceled", "ended"):
        assert int(state.rate) == 0
    # the last public document says so, for pages that poll the CDN rather than the API
    assert document(event_id)["closed"] is True and document(other)["closed"] is False
    assert waiting_room.tick_all() == 1  # the room is no longer read at all
    assert int(waiting_room.read_state(event_id, consistent=True).version) == int(state.version)


def test_a_room_turned_on_again_stays_listed_whatever_the_job_read_before(room, catalogue):
    from ticketing import waiting_room

    event_id, _ = room(rate=600)
    at(60)
    [read] = [listing for listing in waiting_room.rooms() if listing.event_id == event_id]
    path = f"/api/events/{event_id}/"
    for enabled in (False, True):  # off, and on again: listed afresh
        assert catalogue("PATCH", path, {"waiting_room": {"enabled": enabled}}, claims=ADMIN)[0] == 200
    assert waiting_room.tick(event_id, read) is not None and event_id in _listed()  # on: nothing to take off
    assert catalogue("PATCH", path, {"waiting_room": {"enabled": False}}, claims=ADMIN)[0] == 200
    # The job read the listing before the room was turned on again, and the event after it
    # was turned off again: that stale listing does not take the fresh one off the list.
    waiting_room.tick(event_id, read)
    assert event_id in _listed()
    waiting_room.tick_all()  # the listing it reads now is the fresh one
    assert event_id not in _listed()


def test_simulation_properties_on_a_smaller_run():
    from bench import waiting_room_sim

    result = waiting_room_sim.simulate(arrivals=20_000, seconds=60, rate=2_000, seed=7, sample=40)
    assert result.admitted_twice == 0 and result.admitted == 20_000
    assert all(abs(n - 2_000) <= 0.05 * 2_000 for n in result.per_minute[:-1])
    assert abs(result.early_rho) < 0.05  # 10,000 pre-opening arrivals: |rho| is about 0.01 by chance
    assert result.late_rho > 0.999 and result.late_max_overtake < 0.5  # later arrivals in arrival order, to within the joins in flight
    assert result.hottest and result.max_key_wcu < 1000 and result.max_key_rcu < 3000  # recorded calls, scaled to the rates
