"""Ticket transfer (issue 19): who may transfer what and when, the old code void online and
offline at once, the new holder's code admitting, the new holder finding the ticket by
their verified address, and the order's record of who held it when."""

from __future__ import annotations

import uuid

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from tests.unit.conftest import ADMIN, Invoker
from tests.unit.test_races import SCANNER, _customer, _hold, _paid, _ticket, shop  # noqa: F401 - the fixture
from tests.conftest import load_function
from ticketing import clock, gate, offline, qr, tickets
from ticketing.auth import Caller
from ticketing.errors import Conflict, NotFound
from ticketing.lifecycle.states import UNCLAIMED
from ticketing.table import TransferItem, TransitionLogItem


@pytest.fixture(scope="module")
def transfer_fn():
    return load_function("transfer")


@pytest.fixture
def sale(shop, transfer_fn):
    """The race shop with transfers turned on, and the transfer route."""
    status, event, _ = shop["catalogue"]("PATCH", f"/api/events/{shop['event']['id']}/", {"transfers": {"enabled": True}}, claims=ADMIN)
    assert status == 200, event
    assert event["transfers"] == {"enabled": True, "until": None}
    return {**shop, "transfer": Invoker(transfer_fn)}


def _claims(who: Caller, verified: bool = True) -> dict:
    return {"sub": who.sub, "email": who.email, "name": who.name, "email_verified": "true" if verified else "false"}


def _give(sale, who: Caller, ticket_id: str, to_email: str, to_name: str = "Friend", verified: bool = True, **extra):
    return sale["transfer"]("POST", f"/api/tickets/{ticket_id}/transfer/", {"to_email": to_email, "to_name": to_name},
                            claims=_claims(who, verified), **extra)


def _friend() -> Caller:
    sub = f"friend-{uuid.uuid4().hex[:8]}"
    return Caller(sub=sub, email=f"{sub}@Example.com", name="Friend", email_verified=True)


def _sent_to(address: str) -> list[str]:
    backend = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    return [m.raw_data for m in backend.sent_messages if address.lower() in m.raw_data.lower() and "was given to you" in m.raw_data]


def test_a_transfer_voids_the_old_code_online_and_offline_and_the_new_holder_finds_and_uses_the_new_one(sale):
    buyer, order = _paid(sale)
    ticket_id = order["tickets"][0]["id"]
    old_code = _ticket(ticket_id).qr_payload
    friend = _friend()

    status, answer, _ = _give(sale, buyer, ticket_id, friend.email, "Friend Name")
    assert status == 200, answer
    assert answer["holder"] == {"email": friend.email.lower(), "name": "Friend Name"}
    assert answer["ticket"]["id"] == ticket_id and answer["ticket"]["status"] == "valid"
    assert answer["ticket"]["code_version"] == 1  # a device keeping the code by version knows it is new
    assert answer["transferred_at"] and answer["email_sent"] is True
    assert len(_sent_to(friend.email)) == 1

    ticket = _ticket(ticket_id)
    new_code = ticket.qr_payload
    assert new_code != old_code and new_code.startswith("TKT2:") and int(ticket.code_version) == 1
    assert (ticket.customer_sub, ticket.holder_email, ticket.holder_name) == (UNCLAIMED, friend.email.lower(), "Friend Name")

    # online: the old code is refused at once, the new one verifies
    assert gate.verify(old_code, SCANNER).reason == "void"
    assert gate.verify(new_code, SCANNER).reason == "ok"
    # offline: the keys document names the ticket with the version that still admits
    document = gate.keys_document(sale["event"]["id"]).model_dump()
    entry = next(e for e in document["voided"] if e["ticket_id"] == ticket_id)
    assert entry["code_version"] == 1
    assert offline.verify_offline(document, old_code)["reason"] == "void"
    assert offline.verify_offline(document, new_code)["reason"] == "ok"

    # the old holder no longer has it; the new holder finds it once signed in with the address
    assert ticket_id not in {t.id for t in tickets.my_tickets(buyer).tickets}
    with pytest.raises(NotFound):
        tickets.get_for(ticket_id, buyer)
    assert tickets.get_for(ticket_id, friend).ticket_id == ticket_id
    assert ticket_id in {t.id for t in tickets.my_tickets(friend).tickets}
    assert _ticket(ticket_id).customer_sub == friend.sub  # claimed: listed under the account from now on

    # the order keeps who held it when, and the log has the transfer and the claim
    records = list(TransferItem.query(f"ORDER#{order['order_id']}", TransferItem.SK.startswith("TRANSFER#")))
    assert [(r.from_sub, r.from_email, r.to_email, int(r.code_version)) for r in records] == [
        (buyer.sub, buyer.email, friend.email.lower(), 1)]
    logged = [log.transition for log in TransitionLogItem.query(f"ORDER#{order['order_id']}", TransitionLogItem.SK.startswith("LOG#"))]
    assert "transfer" in logged and "claim" in logged

    # at the gate: the old code's check-in is refused as void, the new holder's admits
    with pytest.raises(Conflict) as refused:
        gate.check_in_code(gate.CodeCheckinIn(code=old_code, gate="North"), SCANNER)
    assert refused.value.fields["code"] == "void"
    admitted = gate.check_in_code(gate.CodeCheckinIn(code=new_code, gate="North"), SCANNER)
    assert admitted.ticket.id == ticket_id


def test_an_offline_upload_of_the_old_code_is_void_and_of_the_new_one_accepted(sale):
    buyer, order = _paid(sale)
    ticket_id = order["tickets"][0]["id"]
    old_code = _ticket(ticket_id).qr_payload
    assert _give(sale, buyer, ticket_id, _friend().email)[0] == 200
    new_code = _ticket(ticket_id).qr_payload
    now = clock.now()
    out = gate.apply_offline([gate.OfflineScanIn(code=old_code, scanned_at=now, gate="Side"),
                              gate.OfflineScanIn(code=new_code, scanned_at=now, gate="Side")], SCANNER)
    assert [(r.result, r.reason) for r in out.results] == [("void", "void"), ("accepted", "ok")]


def test_the_new_holder_can_transfer_it_on_and_each_code_replaces_the_last(sale):
    buyer, order = _paid(sale)
    ticket_id = order["tickets"][0]["id"]
    first, second = _friend(), _friend()
    codes = [_ticket(ticket_id).qr_payload]
    assert _give(sale, buyer, ticket_id, first.email)[0] == 200
    codes.append(_ticket(ticket_id).qr_payload)
    # before signing in to list it, the verified address already holds it
    status, answer, _ = _give(sale, first, ticket_id, second.email)
    assert status == 200, answer
    codes.append(_ticket(ticket_id).qr_payload)
    assert [gate.verify(code, SCANNER).reason for code in codes] == ["void", "void", "ok"]
    assert ticket_id not in {t.id for t in tickets.my_tickets(first).tickets}
    assert ticket_id in {t.id for t in tickets.my_tickets(second).tickets}


def test_an_unverified_address_neither_holds_nor_claims_the_ticket(sale):
    buyer, order = _paid(sale)
    ticket_id = order["tickets"][0]["id"]
    friend = _friend()
    assert _give(sale, buyer, ticket_id, friend.email)[0] == 200
    unverified = Caller(sub=friend.sub, email=friend.email, name=friend.name, email_verified=False)
    assert ticket_id not in {t.id for t in tickets.my_tickets(unverified).tickets}
    assert _ticket(ticket_id).customer_sub == UNCLAIMED
    status, answer, _ = _give(sale, unverified, ticket_id, "someone@example.com", verified=False)
    assert status == 404, answer


@pytest.mark.parametrize("to_email", ["not-an-address", "a@b", "two@@example.com", "", "x" * 250 + "@example.com", "a..b@example.com"])
def test_an_invalid_address_is_422_naming_to_email_and_changes_nothing(sale, to_email):
    buyer, order = _paid(sale)
    ticket_id = order["tickets"][0]["id"]
    before = _ticket(ticket_id).qr_payload
    status, answer, _ = _give(sale, buyer, ticket_id, to_email)
    assert status == 422 and "to_email" in str(answer), answer
    assert _ticket(ticket_id).qr_payload == before


def test_a_transfer_to_ones_own_address_is_422(sale):
    buyer, order = _paid(sale)
    ticket_id = order["tickets"][0]["id"]
    status, answer, _ = _give(sale, buyer, ticket_id, buyer.email.upper())
    assert (status, answer["code"], answer["field"]) == (422, "own_address", "to_email"), answer


def test_another_customers_ticket_is_404_and_an_admin_is_not_its_holder(sale):
    _, order = _paid(sale)
    ticket_id = order["tickets"][0]["id"]
    stranger = _customer()
    assert _give(sale, stranger, ticket_id, "x@example.com")[0] == 404
    status, _, _ = sale["transfer"]("POST", f"/api/tickets/{ticket_id}/transfer/", {"to_email": "x@example.com", "to_name": "X"}, claims=ADMIN)
    assert status == 404
    assert _give(sale, stranger, "tk_nosuchticket000000000", "x@example.com")[0] == 404


def test_a_used_a_pending_and_a_void_ticket_cannot_be_transferred(sale):
    buyer, order = _paid(sale, qty=2)
    used, voided = (t["id"] for t in order["tickets"])
    gate.check_in(used, SCANNER, "North")
    status, answer, _ = _give(sale, buyer, used, "x@example.com")
    assert (status, answer["code"]) == (409, "ticket_used"), answer

    from ticketing import refunds

    refunds.refund(order["order_id"], refunds.RefundIn(ticket_ids=[voided]), Caller(sub="admin-1", groups=frozenset({"admin"})))
    status, answer, _ = _give(sale, buyer, voided, "x@example.com")
    assert (status, answer["code"]) == (409, "ticket_void"), answer

    holder = _customer()
    pending = _hold(sale, holder)["tickets"][0]["id"]
    status, answer, _ = _give(sale, holder, pending, "x@example.com")
    assert (status, answer["code"]) == (409, "ticket_pending"), answer


def test_transfers_off_or_past_the_cut_off_are_refused_with_403(sale):
    buyer, order = _paid(sale)
    ticket_id = order["tickets"][0]["id"]
    event_id = sale["event"]["id"]
    catalogue = sale["catalogue"]
    assert catalogue("PATCH", f"/api/events/{event_id}/", {"transfers": {"enabled": False}}, claims=ADMIN)[0] == 200
    status, answer, _ = _give(sale, buyer, ticket_id, "x@example.com")
    assert (status, answer["code"]) == (403, "transfers_disabled"), answer

    status, event, _ = catalogue("PATCH", f"/api/events/{event_id}/", {"transfers": {"enabled": True, "until": "2029-06-01T00:00:00Z"}}, claims=ADMIN)
    assert status == 200 and event["transfers"] == {"enabled": True, "until": "2029-06-01T00:00:00Z"}, event
    try:
        clock.freeze(clock.parse_iso("2029-06-01T00:00:01Z"))
        status, answer, _ = _give(sale, buyer, ticket_id, "x@example.com")
        assert (status, answer["code"]) == (403, "transfer_closed"), answer
        clock.freeze(clock.parse_iso("2029-05-31T23:59:00Z"))
        assert _give(sale, buyer, ticket_id, "x@example.com")[0] == 200
    finally:
        clock.freeze(None)


def test_the_cut_off_defaults_to_the_event_start(sale):
    buyer, order = _paid(sale)
    ticket_id = order["tickets"][0]["id"]
    try:
        clock.freeze(clock.parse_iso(sale["event"]["starts_at"]))
        status, answer, _ = _give(sale, buyer, ticket_id, "x@example.com")
        assert (status, answer["code"]) == (403, "transfer_closed"), answer
    finally:
        clock.freeze(None)


@pytest.mark.parametrize("body, field", [
    ({"transfers": {"enabled": True, "until": "2031-01-01T00:00:00Z"}}, "transfers.until"),  # after the event ends
    ({"transfers": {"enabled": "yes"}}, "transfers"),
    ({"transfers": {"until": "2029-01-01T00:00:00Z"}}, "transfers"),
    ({"transfers": None}, "transfers"),
])
def test_a_bad_transfer_policy_is_422_naming_the_field(shop, body, field):
    status, answer, _ = shop["catalogue"]("PATCH", f"/api/events/{shop['event']['id']}/", body, claims=ADMIN)
    assert status == 422 and answer["field"].startswith(field), answer


def test_the_same_idempotency_key_replays_the_transfer(sale):
    buyer, order = _paid(sale)
    ticket_id = order["tickets"][0]["id"]
    friend = _friend()
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = _give(sale, buyer, ticket_id, friend.email, headers=key)
    again = _give(sale, buyer, ticket_id, friend.email, headers=key)
    assert first[0] == again[0] == 200 and first[1] == again[1]
    assert int(_ticket(ticket_id).code_version) == 1
    assert len(_sent_to(friend.email)) == 1


def test_a_code_from_before_a_transfer_never_reaches_a_receipt_sent_again(sale):
    from ticketing import orders, receipts

    buyer, order = _paid(sale, qty=2)
    given = order["tickets"][0]["id"]
    assert _give(sale, buyer, given, _friend().email)[0] == 200
    receipt = receipts.receipt_for(orders.get(order["order_id"]))
    assert [t.ticket_id for t in receipt.tickets] == [order["tickets"][1]["id"]]


def test_versioned_codes_sign_and_verify_and_refuse_tampering():
    key = qr.new_private_key()
    keys = {"k1": qr.public_key_of(key)}
    ticket_id, event_id = "tk_" + "0" * 20, "ev_" + "1" * 20
    v0 = qr.sign_with(key, "k1", ticket_id, event_id)
    v7 = qr.sign_with(key, "k1", ticket_id, event_id, 7)
    assert qr.verify_with(v7, keys).version == 7 and qr.verify_with(v0, keys).version == 0
    assert v7.startswith("TKT2:k1:") and ":7:" in v7
    for forged in (v7.replace(":7:", ":8:"), v7.replace(":7:", ":07:"), v7.replace("TKT2", "TKT1"),
                   "TKT2:" + v0[5:], v0.replace("TKT1", "TKT2")):
        with pytest.raises(qr.BadSignature):
            qr.verify_with(forged, keys)
    longest = qr.sign_with(key, "k" * qr.MAX_KID_LENGTH, ticket_id, event_id, qr.MAX_CODE_VERSION)
    assert len(longest) == qr.MAX_PAYLOAD_LENGTH
    with pytest.raises(ValueError):
        qr.sign_with(key, "k1", ticket_id, event_id, qr.MAX_CODE_VERSION + 1)


def test_a_re_issued_codes_images_are_stored_apart_from_the_old_ones():
    key = qr.new_private_key()
    ticket_id, event_id = "tk_" + "0" * 20, "ev_" + "1" * 20
    old = tickets.image_key(ticket_id, qr.sign_with(key, "k1", ticket_id, event_id), "png", 200)
    new = tickets.image_key(ticket_id, qr.sign_with(key, "k1", ticket_id, event_id, 2), "png", 200)
    assert old == f"qr/{ticket_id}/k1/200.png" and new == f"qr/{ticket_id}/k1-v2/200.png"


def test_offline_the_tickets_latest_entry_decides_which_code_admits():
    key = qr.new_private_key()
    ticket_id, event_id = "tk_" + "2" * 20, "ev_" + "3" * 20
    codes = [qr.sign_with(key, "k1", ticket_id, event_id, version) for version in (0, 1, 2)]
    document = {"keys": {"k1": qr.public_key_of(key)}, "event_id": event_id, "voided": []}
    verdicts = lambda: [offline.verify_offline(document, code)["reason"] for code in codes]  # noqa: E731
    assert verdicts() == ["ok", "ok", "ok"]  # never transferred, as far as this document knows
    document["voided"].append({"ticket_id": ticket_id, "code_version": 1, "voided_at": "2029-01-01T00:00:00Z"})
    assert verdicts() == ["void", "ok", "void"]
    document["voided"].append({"ticket_id": ticket_id, "code_version": 2, "voided_at": "2029-01-01T00:01:00Z"})
    assert verdicts() == ["void", "void", "ok"]
    document["voided"].append({"ticket_id": ticket_id, "code_version": None, "voided_at": "2029-01-01T00:02:00Z"})
    assert verdicts() == ["void", "void", "void"]  # then refunded: no code admits
