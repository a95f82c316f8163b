"""Ticket transfer and wallet passes over HTTP on the local stack (issue 19): a transferred
ticket's old code is refused online and listed as void for offline scanners while the new
holder's code admits; a .pkpass comes through the gateway as bytes and its signature
verifies; the Google save link carries the new code."""

from __future__ import annotations

import io
import json
import uuid
import zipfile

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from local import stack as stack_module

from tests.integration.support import wait_for
from tests.integration.test_checkout import buy
from tests.integration.test_webhook import order_of, pay
from ticketing import offline


@pytest.fixture
def gift(api, stack, make_event):
    """A paid ticket of an event whose organiser allows transfers, and a friend to give it to."""
    event_id, types = make_event({"GA": (2500, 10)})
    admin = api.token(["admin"])
    answer = api.request("PATCH", f"/api/events/{event_id}/", token=admin, json={"transfers": {"enabled": True}})
    assert answer.status_code == 200 and answer.json()["transfers"]["enabled"] is True, answer.text
    sub = f"giver-{uuid.uuid4().hex[:6]}"
    giver = api.token([], sub=sub, email=f"{sub}@example.com", name="Giver")
    order = buy(api, giver, event_id, [(types["GA"], 1)]).json()
    assert pay(stack, order).json()["status"] == "succeeded"
    assert wait_for(lambda: order_of(api, giver, order["order_id"])["status"] == "paid"), "not paid"
    friend_sub = f"friend-{uuid.uuid4().hex[:6]}"
    friend_email = f"{friend_sub}@example.com"
    friend = api.token([], sub=friend_sub, email=friend_email, name="Friend")
    return {"event_id": event_id, "giver": giver, "friend": friend, "friend_email": friend_email,
            "ticket_id": order["tickets"][0]["id"], "scanner": api.token(["scanner"])}


def _code(api, token, ticket_id):
    answer = api.get(f"/api/tickets/{ticket_id}/qr/data/", token=token)
    assert answer.status_code == 200, answer.text
    return answer.json()["qr_payload"]


def test_a_transferred_tickets_old_code_is_refused_online_and_voided_offline_and_the_new_one_admits(api, gift):
    ticket_id, scanner = gift["ticket_id"], gift["scanner"]
    old_code = _code(api, gift["giver"], ticket_id)

    answer = api.post(f"/api/tickets/{ticket_id}/transfer/", token=gift["giver"],
                      json={"to_email": gift["friend_email"], "to_name": "Friend"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["holder"]["email"] == gift["friend_email"] and answer.json()["email_sent"] is True

    verdict = api.get(f"/api/tickets/verify/?code={old_code}", token=scanner).json()
    assert (verdict["is_valid"], verdict["reason"]) == (False, "void")
    keys = api.get(f"/api/scanner/keys/?event_id={gift['event_id']}", token=scanner).json()
    assert {"ticket_id": ticket_id, "code_version": 1} in [{k: e[k] for k in ("ticket_id", "code_version")} for e in keys["voided"]]
    assert offline.verify_offline(keys, old_code)["reason"] == "void"

    # the giver no longer holds it; the friend finds it signed in with the address
    assert api.get(f"/api/tickets/{ticket_id}/qr/data/", token=gift["giver"]).status_code == 404
    mine = api.get("/api/me/tickets/", token=gift["friend"]).json()
    assert [t["id"] for t in mine["tickets"]] == [ticket_id]
    new_code = _code(api, gift["friend"], ticket_id)
    assert new_code != old_code and offline.verify_offline(keys, new_code)["reason"] == "ok"
    refused = api.post("/api/tickets/checkin/", token=scanner, json={"code": old_code, "gate": "North"})
    assert (refused.status_code, refused.json()["reason"]) == (409, "void"), refused.text
    admitted = api.post("/api/tickets/checkin/", token=scanner, json={"code": new_code, "gate": "North"})
    assert admitted.status_code == 200, admitted.text
    assert admitted.json()["ticket"]["id"] == ticket_id

    # used now: no second transfer
    again = api.post(f"/api/tickets/{ticket_id}/transfer/", token=gift["friend"], json={"to_email": "x@example.com", "to_name": "X"})
    assert (again.status_code, again.json()["code"]) == (409, "ticket_used"), again.text


def test_the_wallet_passes_come_through_the_gateway_and_carry_the_current_code(api, stack, gift):
    ticket_id, giver = gift["ticket_id"], gift["giver"]
    apple = api.get(f"/api/tickets/{ticket_id}/wallet/apple/", token=giver)
    assert apple.status_code == 200, apple.text
    assert apple.headers["Content-Type"] == "application/vnd.apple.pkpass"
    with zipfile.ZipFile(io.BytesIO(apple.content)) as archive:  # bytes, decoded by the gateway (isBase64Encoded)
        document = json.loads(archive.read("pass.json"))
        assert {"manifest.json", "signature", "icon.png"} <= set(archive.namelist())
    assert document["barcodes"][0]["message"] == _code(api, giver, ticket_id)

    assert api.post(f"/api/tickets/{ticket_id}/transfer/", token=giver,
                    json={"to_email": gift["friend_email"], "to_name": "Friend"}).status_code == 200
    assert api.get(f"/api/tickets/{ticket_id}/wallet/apple/", token=giver).status_code == 404
    google = api.get(f"/api/tickets/{ticket_id}/wallet/google/", token=gift["friend"])
    assert google.status_code == 200, google.text
    token = google.json()["save_url"].rsplit("/", 1)[1]
    service_account = json.loads(stack.client("secretsmanager").get_secret_value(
        SecretId=stack_module.GOOGLE_WALLET_SECRET)["SecretString"])  # the key the stack made at start-up
    public = serialization.load_pem_private_key(service_account["private_key"].encode(), password=None).public_key()
    claims = jwt.decode(token, public, algorithms=["RS256"], audience="google")
    barcode = claims["payload"]["eventTicketObjects"][0]["barcode"]["value"]
    assert barcode == _code(api, gift["friend"], ticket_id) and barcode.startswith("TKT2:")
