"""Every conflicting pair of operations, through every interleaving of their reads and
writes (tests/interleave.py switches between them at the lifecycle's checkpoints), in
process (moto + the Stripe stand-in). After each interleaving: the excluded outcomes
never both happen, and the shared invariants (tests/invariants.py) hold."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import boto3
import pytest
import requests
import stripe

from tests import invariants
from tests.interleave import Interleaver
from tests.unit.conftest import ADMIN, Invoker, catalogue_event, load_function, provision_fulfilment, stripe_in_process
from ticketing import checkout, clock, config, disputes, fulfilment, gate, inventory, mail, orders, payments, refunds
from ticketing.auth import Caller
from ticketing.errors import Conflict
from ticketing.table import TicketItem

PUBLIC = "/ticketing/test/qr-races-public"
SCANNER = Caller(sub="scanner-1", groups=frozenset({"scanner"}))
ORGANISER = Caller(sub="admin-1", groups=frozenset({"admin"}))


@pytest.fixture
def shop(aws, catalogue, stripe_standin, monkeypatch):
    provision_fulfilment(monkeypatch, public_keys=PUBLIC)
    # an edit of the event's times queues its holders' notices (ticketing.event_changes)
    monkeypatch.setenv("RECEIPT_QUEUE_URL", boto3.client("sqs").create_queue(QueueName="receipts")["QueueUrl"])
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    gate.forget_events()
    event = catalogue_event(catalogue, "Race Night")
    _, ticket_type, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/", {"name": "GA", "price_cents": 3000, "capacity": 400}, claims=ADMIN)
    yield {"event": event, "type": ticket_type, "buy": Invoker(load_function("checkout")), "catalogue": catalogue}
    config.settings.cache_clear()
    mail.reset_client()
    clock.freeze(None)


def _stripe() -> stripe.StripeClient:
    return stripe_in_process()


def _customer() -> Caller:
    sub = f"racer-{uuid.uuid4().hex[:8]}"
    return Caller(sub=sub, email=f"{sub}@example.com", name=sub)


def _hold(shop, who: Caller, qty: int = 1, type_id: str | None = None) -> dict:
    _latest[:] = _latest[-3:]
    status, answer, _ = shop["buy"](
        "POST", "/api/tickets/stripe/checkout/",
        {"event_id": shop["event"]["id"], "items": [{"ticket_type_id": type_id or shop["type"]["id"], "qty": qty}]},
        claims={"sub": who.sub, "email": who.email, "name": who.name, "email_verified": "true"},
    )
    assert status == 201, answer
    _latest.append(answer["order_id"])
    return answer


def _pay_at_stripe(intent_id: str) -> None:
    _stripe().v1.payment_intents.confirm(intent_id, params={"payment_method": "pm_card_visa"})


def _paid(shop, qty: int = 1) -> tuple[Caller, dict]:
    who = _customer()
    order = _hold(shop, who, qty)
    _pay_at_stripe(order["payment_intent_id"])
    assert fulfilment.settle(payments.retrieve_intent(order["payment_intent_id"]))[0] == "paid"
    return who, order


_latest: list[str] = []  # the orders the current interleaving made: Stripe is asked about these


def _problems() -> list[str]:
    return invariants.problems(boto3.client("dynamodb"), "ticketing-test", invariants.stripe_kept(_stripe()), orders=_latest)


def _each_interleaving(make, *, limit: int | None = None):
    """For each interleaving: fresh state from `make()` (-> operations), run, yield the
    plan, the outcomes and the trace."""
    runner = Interleaver()
    first = make()
    segments = {name: runner.segments(operation) for name, operation in first.items()}
    seen = 0
    for plan in runner.plans(segments):
        operations = make()
        outcomes = runner.run(operations, plan)
        yield plan, outcomes, list(runner.trace)
        seen += 1
        if limit and seen >= limit:
            break
    assert seen >= 2


def _ticket(ticket_id: str) -> TicketItem:
    return TicketItem.get(*TicketItem.key(ticket_id), consistent_read=True)


# ------------------------------------------------------------ refund x check-in
def test_a_customers_refund_and_a_check_in_of_the_same_ticket_never_both_succeed(shop):
    def make():
        who, order = _paid(shop)
        ticket_id = order["tickets"][0]["id"]
        return {
            "refund": lambda: refunds.refund(order["order_id"], refunds.RefundIn(ticket_ids=[ticket_id]), who),
            "checkin": lambda: gate.check_in(ticket_id, SCANNER, "North"),
        }

    endings = set()
    for plan, out, trace in _each_interleaving(make):
        refund, checkin = out["refund"], out["checkin"]
        assert refund.ok != checkin.ok, (plan, out, trace)
        if refund.ok:
            assert isinstance(checkin.error, Conflict) and checkin.code == "void", (plan, out)
        else:
            assert isinstance(refund.error, Conflict) and refund.code == "ticket_used", (plan, out)
        endings.add("refunded" if refund.ok else "admitted")
        assert _problems() == [], plan
    assert endings == {"refunded", "admitted"}  # both winners happen, depending on the order


def test_an_organisers_refund_after_an_admission_stands_and_before_it_voids_the_ticket(shop):
    def make():
        _, order = _paid(shop)
        ticket_id = order["tickets"][0]["id"]
        return {
            "refund": lambda: refunds.refund(order["order_id"], refunds.RefundIn(ticket_ids=[ticket_id]), ORGANISER),
            "checkin": lambda: gate.check_in(ticket_id, SCANNER, "North"),
        }

    for plan, out, _trace in _each_interleaving(make):
        assert out["refund"].ok, (plan, out)
        assert out["checkin"].ok or out["checkin"].code == "void", (plan, out)
        assert _problems() == [], plan


# ------------------------------------------------------------- dispute x check-in
def test_a_dispute_and_a_check_in_leave_the_ticket_void_either_way(shop):
    def make():
        _, order = _paid(shop)
        ticket_id = order["tickets"][0]["id"]
        charge = orders.get(order["order_id"]).payment.charge_id
        opened = requests.post(f"{payments.os.environ['STRIPE_API_BASE']}/_config/disputes",
                               json={"charge": charge, "payment_intent": order["payment_intent_id"], "status": "needs_response"}).json()
        return {
            "dispute": lambda: disputes.converge({"id": opened["id"]}),
            "checkin": lambda: gate.check_in(ticket_id, SCANNER, "North"),
        }

    for plan, out, _trace in _each_interleaving(make):
        assert out["dispute"].ok and out["dispute"].value[0] == "disputed", (plan, out)
        assert out["checkin"].ok or out["checkin"].code == "void", (plan, out)
        assert _problems() == [], plan


# ----------------------------------------------------------- two partial refunds
def test_two_partial_refunds_of_one_order_never_refund_more_than_was_paid(shop):
    def make():
        _, order = _paid(shop, qty=2)  # 6000 paid
        return {
            "first": lambda: refunds.refund(order["order_id"], refunds.RefundIn(amount_cents=4000), ORGANISER),
            "second": lambda: refunds.refund(order["order_id"], refunds.RefundIn(amount_cents=4000), ORGANISER),
        }

    for plan, out, _trace in _each_interleaving(make):
        assert [o.ok for o in out.values()].count(True) == 1, (plan, out)
        loser = next(o for o in out.values() if not o.ok)
        assert loser.code == "over_refund", (plan, out, loser.error.fields)
        assert _problems() == [], plan


# ------------------------------------------- a refund x the webhook of an earlier one
def test_a_refund_in_flight_is_never_counted_again_by_the_webhook_of_an_earlier_one(shop):
    def make():
        _, order = _paid(shop, qty=2)
        refunds.refund(order["order_id"], refunds.RefundIn(amount_cents=1000), ORGANISER)  # its charge.refunded is on the way
        charge = orders.get(order["order_id"]).payment.charge_id
        return {
            "refund": lambda: refunds.refund(order["order_id"], refunds.RefundIn(amount_cents=1500), ORGANISER),
            "webhook": lambda: refunds.mirror(charge, order["payment_intent_id"]),
        }

    for plan, out, _trace in _each_interleaving(make):
        assert out["refund"].ok and out["webhook"].ok, (plan, out)
        assert _problems() == [], plan  # refunded 2500 here and at Stripe, never 4000


# --------------------------------------------------------- cancel x payment success
def test_a_customers_cancel_and_the_payment_succeeding_end_paid_or_refunded_never_canceled_with_money(shop):
    def make():
        who = _customer()
        order = _hold(shop, who)
        _pay_at_stripe(order["payment_intent_id"])  # the money arrived; its webhook is on the way
        return {
            "cancel": lambda: checkout.cancel(order["order_id"], who),
            "webhook": lambda: fulfilment.settle(payments.retrieve_intent(order["payment_intent_id"])),
        }

    for plan, out, _trace in _each_interleaving(make):
        assert out["webhook"].ok and out["webhook"].value[0] == "paid", (plan, out)
        assert not out["cancel"].ok and out["cancel"].code == "order_paid", (plan, out)
        assert _problems() == [], plan


# ------------------------------------- hold expiry (release-first) x late payment
def test_the_expiry_run_and_a_late_payment_never_lose_the_money_or_the_seats(shop):
    def make():
        order = _hold(shop, _customer())
        _pay_at_stripe(order["payment_intent_id"])
        clock.freeze(clock.now() + timedelta(hours=1))  # the hold has lapsed
        return {
            "expiry": lambda: checkout.expire_lapsed(event_id=shop["event"]["id"]),
            "webhook": lambda: fulfilment.settle(payments.retrieve_intent(order["payment_intent_id"])),
        }

    try:
        for plan, out, _trace in _each_interleaving(make):
            # Released first (the seats were free again) or paid first: paid either way.
            assert out["webhook"].ok and out["webhook"].value[0] == "paid", (plan, out)
            assert out["expiry"].ok and out["expiry"].value in (0, 1), (plan, out)
            paid = orders.get(_latest[-1])
            assert paid.status == "paid" and (paid.GSI2PK or "").startswith("CHARGE#"), (plan, paid.GSI2PK)
            assert _problems() == [], plan
    finally:
        clock.freeze(None)


def test_a_late_payment_whose_seat_was_sold_after_the_release_is_refunded_never_oversold(shop):
    """Release-first: the last seat's hold lapsed with its payment through at Stripe but
    its webhook not in; another buyer's checkout reclaims the seat inline. Whichever comes
    first, one of them has the seat and the other's money goes back (or is never taken)."""
    def make():
        _, last, _ = shop["catalogue"]("POST", f"/api/events/{shop['event']['id']}/ticket-types/",
                                       {"name": f"Last {uuid.uuid4().hex[:4]}", "price_cents": 1000, "capacity": 1}, claims=ADMIN)
        order = _hold(shop, _customer(), type_id=last["id"])
        _pay_at_stripe(order["payment_intent_id"])
        clock.freeze(clock.now() + timedelta(hours=1))  # the hold has lapsed

        def buy():  # sold out: reclaims the lapsed hold first
            who = _customer()
            status, answer, _ = shop["buy"](
                "POST", "/api/tickets/stripe/checkout/",
                {"event_id": shop["event"]["id"], "items": [{"ticket_type_id": last["id"], "qty": 1}]},
                claims={"sub": who.sub, "email": who.email, "name": who.name, "email_verified": "true"},
            )
            return status, answer.get("code")

        return {
            "checkout": buy,
            "webhook": lambda: fulfilment.settle(payments.retrieve_intent(order["payment_intent_id"])),
        }

    try:
        for plan, out, _trace in _each_interleaving(make):
            assert out["webhook"].ok and out["checkout"].ok, (plan, out)
            if out["checkout"].value[0] == 201:  # the release came first and the buyer took the seat
                assert out["webhook"].value[0] == "refunded_late_payment_sold_out", (plan, out)
            else:  # paid first (or late, before the buyer's hold): the buyer finds it sold out
                assert out["webhook"].value[0] == "paid" and out["checkout"].value == (409, "sold_out"), (plan, out)
            assert _problems() == [], plan
    finally:
        clock.freeze(None)


def test_a_cancel_after_the_release_and_a_late_payment_keep_the_paid_order_findable(shop):
    """The PaymentIntent of a released order got through before its cancel: the cancel finds
    it succeeded and takes the order off the waiting index only while it is still released,
    so it never removes the charge index entry the late payment wrote."""
    def make():
        order = _hold(shop, _customer())
        clock.freeze(clock.now() + timedelta(hours=1))
        assert checkout.expire_lapsed(event_id=shop["event"]["id"]) == 1  # seats back, cancel pending
        _pay_at_stripe(order["payment_intent_id"])
        return {
            "cancel": lambda: checkout.cancel_released(limit=10),
            "webhook": lambda: fulfilment.settle(payments.retrieve_intent(order["payment_intent_id"])),
        }

    try:
        for plan, out, _trace in _each_interleaving(make):
            assert out["cancel"].ok and out["cancel"].value == 0, (plan, out)  # nothing canceled: it had succeeded
            assert out["webhook"].ok and out["webhook"].value[0] == "paid", (plan, out)  # the seats were free
            paid = orders.get(_latest[-1])
            assert paid.status == "paid" and (paid.GSI2PK or "").startswith("CHARGE#"), (plan, paid.GSI2PK)
            assert orders.by_charge(paid.payment.charge_id).order_id == paid.order_id
            assert _problems() == [], plan
    finally:
        clock.freeze(None)


# -------------------------------------------------------- capacity edit x checkout
def test_a_capacity_cut_and_a_checkout_never_oversell(shop):
    def make():
        _, small, _ = shop["catalogue"]("POST", f"/api/events/{shop['event']['id']}/ticket-types/",
                                        {"name": f"Few {uuid.uuid4().hex[:4]}", "price_cents": 1000, "capacity": 3}, claims=ADMIN)

        def cut():
            inventory.resize(shop["event"]["id"], small["id"], 1, 500, 8)

        def buy():
            return _hold(shop, _customer(), qty=2, type_id=small["id"])

        return {"resize": cut, "checkout": buy}

    for plan, out, _trace in _each_interleaving(make):
        assert not (out["resize"].ok and out["checkout"].ok), (plan, out)  # 3 seats: 2 held and a cut to 1 cannot both stand
        assert out["resize"].ok or isinstance(out["resize"].error, inventory.BelowCommitted), (plan, out)
        assert _problems() == [], plan


# -------------------------------------------------------- offline batch x online scan
def test_an_offline_upload_never_rewrites_an_online_admission(shop):
    clock.freeze(clock.now())
    issued = clock.now()

    def make():
        clock.freeze(issued)
        _, order = _paid(shop)
        ticket_id = order["tickets"][0]["id"]
        code = _ticket(ticket_id).qr_payload
        backdated = gate.OfflineScanIn(code=code, scanned_at=issued + timedelta(seconds=1), gate="Offline-1")
        clock.freeze(issued + timedelta(minutes=5))
        return {
            "online": lambda: gate.check_in(ticket_id, SCANNER, "North"),
            "upload": lambda: gate.apply_offline([backdated], SCANNER),
            "_ticket": ticket_id,
        }

    runner_made = []

    def operations():
        made = make()
        runner_made.append(made.pop("_ticket"))
        return made

    try:
        for plan, out, _trace in _each_interleaving(operations):
            ticket = _ticket(runner_made[-1])
            upload = out["upload"].value.results[0]
            if out["online"].ok:  # online first: the upload is reported, never applied
                assert (ticket.gate, ticket.admission) == ("North", "online"), plan
                assert upload.result == "conflict" and [a.gate for a in upload.admissions] == ["Offline-1", "North"], plan
            else:
                assert out["online"].code == "already_used" and upload.result == "accepted", (plan, out)
                assert (ticket.gate, ticket.admission) == ("Offline-1", "offline"), plan
            assert _problems() == [], plan
    finally:
        clock.freeze(None)


# --------------------------------------------------- event cancellation x check-in
def test_event_cancellation_and_a_check_in(shop):
    from ticketing import event_cancel

    def make():
        _, order = _paid(shop)
        ticket_id = order["tickets"][0]["id"]
        system = Caller(sub="event-cancel:admin-1", groups=frozenset({"admin"}))

        def cancel():
            made = refunds.refund(order["order_id"], refunds.RefundIn(reason="event_canceled"), system, by_cancellation=True)
            event_cancel._void_left(order["order_id"])
            return made

        return {"cancel": cancel, "checkin": lambda: gate.check_in(ticket_id, SCANNER, "North")}

    for plan, out, _trace in _each_interleaving(make):
        assert out["cancel"].ok, (plan, out)  # the organiser's refund goes through either way
        assert out["checkin"].ok or out["checkin"].code == "void", (plan, out)
        assert _problems() == [], plan


# ------------------------------------------------- event cancellation x checkout
@pytest.fixture
def canceling(shop, monkeypatch):
    """`canceling(capacity)`: a fresh event with one ticket type of that many seats, as
    (event id, type id, its cancel), the cancel being the organiser's call and the job's
    first pass (the job's queue provided)."""
    from ticketing import event_cancel

    monkeypatch.setenv("CANCEL_QUEUE_URL", boto3.client("sqs").create_queue(QueueName="cancels")["QueueUrl"])
    config.settings.cache_clear()

    def make(capacity: int):
        event = catalogue_event(shop["catalogue"], f"Canceled {uuid.uuid4().hex[:6]}")
        _, kind, _ = shop["catalogue"]("POST", f"/api/events/{event['id']}/ticket-types/",
                                       {"name": "GA", "price_cents": 1000, "capacity": capacity}, claims=ADMIN)

        def cancel():
            event_cancel.start_cancel(event["id"], event_cancel.CancelIn(), ORGANISER)
            return event_cancel.run_cancel_batch(event["id"])  # the first pass

        return event["id"], kind["id"], cancel

    return make


def test_a_checkout_that_read_the_event_before_its_cancel_leaves_no_order_standing_after_the_first_pass(shop, canceling):
    """The checkout reads the event as on sale, then the cancel and its first pass may run
    whole before the hold is written: the pass closed the sales first, so that hold is
    refused (409), or else it was written before and the pass canceled its order."""
    from ticketing.lifecycle import OrderStatus
    from ticketing.table import InventoryShard, OrderItem

    made: dict[str, str] = {}

    def make():
        event_id, type_id, cancel = canceling(3)
        made.update(type_id=type_id)
        who = _customer()

        def buy():
            status, answer, _ = shop["buy"](
                "POST", "/api/tickets/stripe/checkout/",
                {"event_id": event_id, "items": [{"ticket_type_id": type_id, "qty": 1}]},
                claims={"sub": who.sub, "email": who.email, "name": who.name, "email_verified": "true"})
            if status == 201:
                _latest.append(answer["order_id"])
            return status, answer

        return {"buy": buy, "cancel": cancel}  # (names with distinct first letters: the plans use them)

    endings = set()
    for plan, out, trace in _each_interleaving(make):
        assert out["cancel"].ok, (plan, out)
        status, answer = out["buy"].value
        if status == 201:
            order = OrderItem.get(*OrderItem.key(answer["order_id"]), consistent_read=True)
            assert order.status not in (OrderStatus.PENDING, OrderStatus.PAID), (plan, order.status, trace)
        else:
            assert status == 409 and answer["code"] == "event_not_on_sale", (plan, answer)
        endings.add(status)
        shard = InventoryShard.get(*InventoryShard.key(made["type_id"], 0), consistent_read=True)
        assert (int(shard.remaining), int(shard.held), int(shard.sold), shard.closed) == (3, 0, 0, True), plan
        assert _problems() == [], plan
    assert endings == {201, 409}  # both orders of events happened


def test_a_capacity_raise_during_an_event_cancel_leaves_no_shard_open(canceling):
    """A raise that adds shards, against the cancel and its first pass: the raise is refused
    once the event is canceled, or its shards exist before the pass closes the sales."""
    from ticketing.table import InventoryShard, TicketTypeItem

    made: dict[str, str] = {}

    def make():
        event_id, type_id, cancel = canceling(10)
        made.update(event_id=event_id, type_id=type_id)
        return {"raise": lambda: inventory.resize(event_id, type_id, 40, 10, 8), "cancel": cancel}

    endings = set()
    for plan, out, _trace in _each_interleaving(make):
        assert out["cancel"].ok, (plan, out)
        assert out["raise"].ok or isinstance(out["raise"].error, inventory.SalesClosed), (plan, out)
        count = int(TicketTypeItem.get(*TicketTypeItem.key(made["event_id"], made["type_id"]), consistent_read=True).shards)
        assert count == (4 if out["raise"].ok else 1), plan
        shards = [InventoryShard.get(*InventoryShard.key(made["type_id"], n), consistent_read=True) for n in range(count)]
        assert all(shard.closed for shard in shards), (plan, [s.closed for s in shards])
        endings.add(out["raise"].ok)
    assert endings == {True, False}


# ------------------------------------------------------- transfer x check-in (issue 19)
def _transfers_on(shop) -> None:
    status, _, _ = shop["catalogue"]("PATCH", f"/api/events/{shop['event']['id']}/", {"transfers": {"enabled": True}}, claims=ADMIN)
    assert status == 200


def test_a_transfer_and_a_check_in_of_the_old_code_never_both_succeed(shop):
    from ticketing import transfers

    _transfers_on(shop)

    def make():
        who, order = _paid(shop)
        ticket_id = order["tickets"][0]["id"]
        old_code = _ticket(ticket_id).qr_payload
        gift = transfers.TransferIn(to_email=f"gift-{uuid.uuid4().hex[:8]}@example.com", to_name="Gift")
        return {
            "transfer": lambda: transfers.transfer(ticket_id, gift, who),
            "checkin": lambda: gate.check_in_code(gate.CodeCheckinIn(code=old_code, gate="North"), SCANNER),
        }

    endings = set()
    for plan, out, trace in _each_interleaving(make):
        transfer, checkin = out["transfer"], out["checkin"]
        assert transfer.ok != checkin.ok, (plan, out, trace)
        if transfer.ok:  # the old code was void from the transfer's write on
            assert isinstance(checkin.error, Conflict) and checkin.code == "void", (plan, out)
            ticket = _ticket(transfer.value.ticket.id)
            assert ticket.status == "valid" and int(ticket.code_version) == 1, plan
        else:  # admitted first: a used ticket is not transferred
            assert isinstance(transfer.error, Conflict) and transfer.code == "ticket_used", (plan, out)
        endings.add("transferred" if transfer.ok else "admitted")
        assert _problems() == [], plan
    assert endings == {"transferred", "admitted"}


def test_two_transfers_of_one_ticket_give_it_to_one_person(shop):
    from ticketing import transfers

    _transfers_on(shop)

    def make():
        who, order = _paid(shop)
        ticket_id = order["tickets"][0]["id"]
        to = [transfers.TransferIn(to_email=f"{name}-{uuid.uuid4().hex[:8]}@example.com", to_name=name) for name in ("a", "b")]
        return {
            "a": lambda: transfers.transfer(ticket_id, to[0], who),
            "b": lambda: transfers.transfer(ticket_id, to[1], who),
        }

    for plan, out, trace in _each_interleaving(make):
        won = [name for name in ("a", "b") if out[name].ok]
        assert len(won) == 1, (plan, out, trace)
        lost = out["b" if won == ["a"] else "a"]
        assert lost.code in ("ticket_changed", None) and type(lost.error).__name__ in ("Conflict", "NotFound"), (plan, out)
        ticket = _ticket(out[won[0]].value.ticket.id)
        assert ticket.holder_email == out[won[0]].value.holder.email and int(ticket.code_version) == 1, plan
        assert _problems() == [], plan


def test_a_transfer_and_the_buyers_refund_never_both_succeed(shop):
    """The buyer cannot take back a ticket once it was given away (the new holder's ticket
    would be voided under them): whichever way the two meet, one of them is refused (the
    refund's read comes before its only checkpoint, so every interleaving here lets the
    transfer write first; a refund reserved first is the next test's)."""
    from ticketing import transfers

    _transfers_on(shop)

    def make():
        who, order = _paid(shop)
        ticket_id = order["tickets"][0]["id"]
        gift = transfers.TransferIn(to_email=f"gift-{uuid.uuid4().hex[:8]}@example.com", to_name="Gift")
        return {
            "transfer": lambda: transfers.transfer(ticket_id, gift, who),
            "refund": lambda: refunds.refund(order["order_id"], refunds.RefundIn(ticket_ids=[ticket_id]), who),
        }

    for plan, out, trace in _each_interleaving(make):
        transfer, refund = out["transfer"], out["refund"]
        assert transfer.ok != refund.ok, (plan, out, trace)
        if transfer.ok:
            assert isinstance(refund.error, Conflict) and refund.code == "ticket_transferred", (plan, out)
            assert _ticket(transfer.value.ticket.id).status == "valid", plan
        else:
            assert isinstance(transfer.error, Conflict), (plan, out)
        assert _problems() == [], plan


def test_after_a_transfer_only_the_organiser_refunds_the_ticket(shop):
    from ticketing import transfers

    _transfers_on(shop)
    who, order = _paid(shop, qty=2)
    given, kept = (t["id"] for t in order["tickets"])
    transfers.transfer(given, transfers.TransferIn(to_email=f"g-{uuid.uuid4().hex[:8]}@example.com", to_name="G"), who)
    for ask in (refunds.RefundIn(ticket_ids=[given]), refunds.RefundIn()):
        with pytest.raises(Conflict) as refused:
            refunds.refund(order["order_id"], ask, who)
        assert refused.value.fields["code"] == "ticket_transferred"
    assert _ticket(given).status == "valid" and not _ticket(given).refund_id
    assert refunds.refund(order["order_id"], refunds.RefundIn(ticket_ids=[kept]), who).status == "succeeded"
    assert refunds.refund(order["order_id"], refunds.RefundIn(ticket_ids=[given]), ORGANISER).status == "succeeded"
    assert _problems() == []
    # a refund first: the ticket it reserved is not transferred
    who, order = _paid(shop)
    ticket_id = order["tickets"][0]["id"]
    assert refunds.refund(order["order_id"], refunds.RefundIn(ticket_ids=[ticket_id]), who).status == "succeeded"
    with pytest.raises(Conflict):
        transfers.transfer(ticket_id, transfers.TransferIn(to_email=f"h-{uuid.uuid4().hex[:8]}@example.com", to_name="H"), who)
    assert _problems() == []


# ------------------------------------------------------------ conflicts are retried
def test_a_transaction_conflict_is_retried_then_answered_503_and_the_expiry_run_goes_on(shop, monkeypatch):
    from pynamodb.exceptions import TransactWriteError
    from pynamodb.transactions import TransactWrite

    from ticketing.errors import DependencyUnavailable
    from ticketing.lifecycle import writes

    monkeypatch.setattr(writes, "_pause", lambda attempt: None)
    failures = {"left": 0, "only": None}
    real_commit = TransactWrite._commit

    def conflicting(self):
        keys = json.dumps(getattr(self, "_update_items", []) + getattr(self, "_put_items", []))
        if failures["left"] and (failures["only"] is None or failures["only"] in keys):
            failures["left"] -= 1
            from botocore.exceptions import ClientError

            error = ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                                 "CancellationReasons": [{"Code": "TransactionConflict"}]}, "TransactWriteItems")
            raise TransactWriteError("Failed to write transaction items", error)
        return real_commit(self)

    monkeypatch.setattr(TransactWrite, "_commit", conflicting)

    who = _customer()
    failures["left"] = writes.ATTEMPTS - 1  # conflicts that a retry gets past
    order = _hold(shop, who)
    assert orders.get(order["order_id"]).status == "pending"

    failures["left"] = writes.ATTEMPTS  # conflicts every attempt: 503 with Retry-After, nothing changed
    with pytest.raises(DependencyUnavailable) as unavailable:
        checkout.cancel(order["order_id"], who)
    assert unavailable.value.retry_after and unavailable.value.fields["code"] == "contention"
    assert orders.get(order["order_id"]).status == "pending"

    # The expiry run: a conflict on one order does not stop the others.
    later = _hold(shop, _customer())
    clock.freeze(clock.now() + timedelta(hours=1))
    try:
        failures.update(left=10**6, only=f"ORDER#{order['order_id']}")
        assert checkout.expire_lapsed(event_id=shop["event"]["id"]) == 1
        assert orders.get(order["order_id"]).status == "pending" and orders.get(later["order_id"]).status == "expired"
    finally:
        clock.freeze(None)
    assert _problems() == []


# ------------------------------------------------------------- event edit x gate
def test_a_postponed_event_admits_its_tickets_after_the_old_end_and_the_keys_document_agrees(shop):
    from ticketing import catalogue as catalogue_module
    from ticketing.offline import verify_offline

    start = clock.now().replace(microsecond=0)
    clock.freeze(start)
    try:
        status, event, _ = shop["catalogue"]("POST", "/api/events/", {
            "name": "Ends soon", "venue": "Hall", "currency": "usd", "starts_at": clock.iso(start - timedelta(hours=2)),
            "ends_at": clock.iso(start + timedelta(minutes=1))}, claims=ADMIN)
        assert status == 201, event
        _, kind, _ = shop["catalogue"]("POST", f"/api/events/{event['id']}/ticket-types/",
                                       {"name": "GA", "price_cents": 1000, "capacity": 5}, claims=ADMIN)
        who = _customer()
        _, order, _ = shop["buy"]("POST", "/api/tickets/stripe/checkout/",
                                  {"event_id": event["id"], "items": [{"ticket_type_id": kind["id"], "qty": 1}]},
                                  claims={"sub": who.sub, "email": who.email, "name": who.name, "email_verified": "true"})
        _pay_at_stripe(order["payment_intent_id"])
        assert fulfilment.settle(payments.retrieve_intent(order["payment_intent_id"]))[0] == "paid"
        ticket = _ticket(order["tickets"][0]["id"])
        assert gate.verify(ticket.qr_payload, SCANNER).reason == "ok"  # the gate has read (and cached) the event

        later = start + timedelta(days=1)
        catalogue_module.update_event(event["id"], catalogue_module.EventPatch(ends_at=later))
        clock.freeze(start + timedelta(minutes=2))  # after the old end
        assert gate.verify(ticket.qr_payload, SCANNER).reason == "ok"
        keys = gate.keys_document(event["id"])
        assert keys.event_ends_at == clock.iso(later)
        assert verify_offline(keys.model_dump(mode="json"), ticket.qr_payload)["reason"] == "ok"
        assert gate.check_in(ticket.ticket_id, SCANNER, "North").reason == "ok"

        # And an event that really is over refuses, on verify and check-in alike.
        clock.freeze(later + timedelta(minutes=1))
        other = _ticket(order["tickets"][0]["id"])
        assert gate.verify(other.qr_payload, SCANNER).reason == "already_used"
    finally:
        clock.freeze(None)


def test_a_won_dispute_delivered_before_its_opening_leaves_the_order_paid(shop):
    _, order = _paid(shop, qty=2)
    paid = orders.get(order["order_id"])
    base = payments.os.environ["STRIPE_API_BASE"]
    opened = requests.post(f"{base}/_config/disputes", json={
        "charge": paid.payment.charge_id, "payment_intent": paid.payment.payment_intent_id, "status": "needs_response"}).json()
    requests.post(f"{base}/_config/disputes", json={"id": opened["id"], "status": "won"})
    assert disputes.converge({"id": opened["id"], "status": "won"})[0] == "dispute_won"  # closed, delivered first
    assert disputes.converge({"id": opened["id"], "status": "needs_response"})[0] == "dispute_won"  # created, delivered late
    after = orders.get(order["order_id"])
    assert after.status == "paid" and {t.status for t in orders.tickets_of(after)} == {"valid"}
