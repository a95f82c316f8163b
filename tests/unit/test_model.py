"""A model-based test: hypothesis drives random sequences of everything that changes an
order, a ticket or a seat (checkout, pay, decline, cancel, expire, refunds whole, partial
and per ticket, check-in, offline upload, dispute opened / won / lost, event edit,
capacity edit), in process, and the shared invariants (tests/invariants.py) are checked
after every step."""

from __future__ import annotations

import uuid
from datetime import timedelta

import boto3
import pytest
import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from tests import invariants
from tests.unit.conftest import ADMIN
from tests.unit.test_races import ORGANISER, SCANNER, _customer, _hold, _pay_at_stripe, _stripe, shop  # noqa: F401 - fixture
from ticketing import catalogue, checkout, clock, disputes, fulfilment, gate, inventory, orders, payments, refunds
from ticketing.errors import DomainError
from ticketing.table import TicketItem

TABLE = "ticketing-test"
EXPECTED = (DomainError, inventory.BelowCommitted, inventory.CapacityContention)


def test_any_sequence_of_operations_keeps_every_invariant(shop):  # noqa: F811 - the fixture
    event_id = shop["event"]["id"]
    stripe_kept = invariants.stripe_kept(_stripe())
    base = payments.os.environ["STRIPE_API_BASE"]

    class Sale(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.orders: list[tuple[str, object, dict]] = []  # (order id, customer, checkout answer)
            self.disputes: list[str] = []
            self.capacity = 12  # few seats: sold out, holds and cuts all happen
            self.shard_size = 4  # three shards
            _, made, _ = shop["catalogue"]("POST", f"/api/events/{event_id}/ticket-types/", {
                "name": f"Model {uuid.uuid4().hex[:6]}", "price_cents": 2500, "capacity": self.capacity}, claims=ADMIN)
            self.type_id = made["id"]

        def teardown(self) -> None:
            clock.freeze(None)

        def _pick(self, n: int):
            return self.orders[n % len(self.orders)]

        def _tickets(self, n: int) -> list[TicketItem]:
            order = orders.get(self._pick(n)[0])
            return orders.tickets_of(order) if order else []

        @rule(qty=st.integers(1, 3))
        def buy(self, qty: int) -> None:
            who = _customer()
            try:
                answer = _hold(shop, who, qty, type_id=self.type_id)
            except AssertionError:  # sold out, or too many holds: answered 409/429, nothing changed
                return
            self.orders.append((answer["order_id"], who, answer))

        @precondition(lambda self: self.orders)
        @rule(n=st.integers(0, 10**6))
        def pay(self, n: int) -> None:
            order_id, _, answer = self._pick(n)
            try:
                _pay_at_stripe(answer["payment_intent_id"])
            except Exception:  # noqa: BLE001 - canceled or paid already at Stripe
                return
            fulfilment.settle(payments.retrieve_intent(answer["payment_intent_id"]))

        @precondition(lambda self: self.orders)
        @rule(n=st.integers(0, 10**6))
        def decline(self, n: int) -> None:
            _, _, answer = self._pick(n)
            client = _stripe()
            try:
                card = client.v1.payment_methods.create(params={
                    "type": "card", "card": {"number": "4000000000000341", "exp_month": 12, "exp_year": 2030, "cvc": "123"}})
                client.v1.payment_intents.confirm(answer["payment_intent_id"], params={"payment_method": card.id})
            except Exception:  # noqa: BLE001 - declined: what we want; or no longer payable
                pass
            fulfilment.settle(payments.retrieve_intent(answer["payment_intent_id"]))

        @precondition(lambda self: self.orders)
        @rule(n=st.integers(0, 10**6))
        def cancel(self, n: int) -> None:
            order_id, who, _ = self._pick(n)
            try:
                checkout.cancel(order_id, who)
            except EXPECTED:
                pass

        @rule()
        def expire(self) -> None:
            clock.freeze(clock.now() + timedelta(hours=1))
            try:
                checkout.expire_lapsed(event_id=event_id)
            finally:
                clock.freeze(None)

        @precondition(lambda self: self.orders)
        @rule(n=st.integers(0, 10**6), by_organiser=st.booleans())
        def refund_whole(self, n: int, by_organiser: bool) -> None:
            order_id, who, _ = self._pick(n)
            try:
                refunds.refund(order_id, refunds.RefundIn(), ORGANISER if by_organiser else who)
            except EXPECTED:
                pass

        @precondition(lambda self: self.orders)
        @rule(n=st.integers(0, 10**6), cents=st.integers(1, 4000))
        def refund_partial(self, n: int, cents: int) -> None:
            try:
                refunds.refund(self._pick(n)[0], refunds.RefundIn(amount_cents=cents), ORGANISER)
            except EXPECTED:
                pass

        @precondition(lambda self: self.orders)
        @rule(n=st.integers(0, 10**6), k=st.integers(0, 2), by_organiser=st.booleans())
        def refund_ticket(self, n: int, k: int, by_organiser: bool) -> None:
            order_id, who, answer = self._pick(n)
            ticket_id = answer["tickets"][k % len(answer["tickets"])]["id"]
            try:
                refunds.refund(order_id, refunds.RefundIn(ticket_ids=[ticket_id]), ORGANISER if by_organiser else who)
            except EXPECTED:
                pass

        @precondition(lambda self: self.orders)
        @rule(n=st.integers(0, 10**6), k=st.integers(0, 2))
        def check_in(self, n: int, k: int) -> None:
            _, _, answer = self._pick(n)
            try:
                gate.check_in(answer["tickets"][k % len(answer["tickets"])]["id"], SCANNER, "North")
            except EXPECTED:
                pass

        @precondition(lambda self: self.orders)
        @rule(n=st.integers(0, 10**6), k=st.integers(0, 2), minutes_ago=st.integers(0, 3))
        def offline_upload(self, n: int, k: int, minutes_ago: int) -> None:
            tickets = self._tickets(n)
            if not tickets:
                return
            ticket = tickets[k % len(tickets)]
            if not ticket.qr_payload:
                return
            scan = gate.OfflineScanIn(code=ticket.qr_payload, scanned_at=clock.now() - timedelta(minutes=minutes_ago), gate="Offline")
            gate.apply_offline([scan], SCANNER)

        @precondition(lambda self: self.orders)
        @rule(n=st.integers(0, 10**6))
        def dispute_opened(self, n: int) -> None:
            order = orders.get(self._pick(n)[0])
            if order is None or not order.payment.charge_id:
                return
            opened = requests.post(f"{base}/_config/disputes", json={
                "charge": order.payment.charge_id, "payment_intent": order.payment.payment_intent_id, "status": "needs_response"},
                timeout=10).json()
            self.disputes.append(opened["id"])
            disputes.converge({"id": opened["id"]})

        @precondition(lambda self: self.disputes)
        @rule(n=st.integers(0, 10**6), won=st.booleans())
        def dispute_closed(self, n: int, won: bool) -> None:
            dispute_id = self.disputes[n % len(self.disputes)]
            requests.post(f"{base}/_config/disputes", json={"id": dispute_id, "status": "won" if won else "lost"}, timeout=10)
            disputes.converge({"id": dispute_id})

        @rule(hours=st.integers(1, 48))
        def event_edit(self, hours: int) -> None:
            event = catalogue.load_event(event_id)[0]
            later = clock.parse_iso(event.ends_at) + timedelta(hours=hours)
            catalogue.update_event(event_id, catalogue.EventPatch(ends_at=later))
            gate.forget_events()

        @rule(delta=st.integers(-6, 6))
        def capacity_edit(self, delta: int) -> None:
            target = max(1, self.capacity + delta)
            try:
                inventory.resize(event_id, self.type_id, target, self.shard_size, 8)
                self.capacity = target
            except EXPECTED:
                pass

        @invariant()
        def nothing_is_wrong(self) -> None:
            mine = [order_id for order_id, _, _ in self.orders]
            assert invariants.problems(boto3.client("dynamodb"), TABLE, stripe_kept, orders=mine) == []

        @invariant()
        def capacity_is_what_was_set(self) -> None:
            shards = [s for s in invariants.snapshot(boto3.client("dynamodb"), TABLE)["shards"] if s["type_id"] == self.type_id]
            assert sum(int(s["capacity"]) for s in shards) == self.capacity

    run_state_machine_as_test(Sale, settings=settings(
        max_examples=6, stateful_step_count=25, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    ))


@pytest.fixture(autouse=True)
def _no_frozen_clock():
    yield
    clock.freeze(None)
