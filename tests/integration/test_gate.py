"""The gate through the local stack: a paid ticket scanned at once by four gates is admitted
exactly once. Every verify reason, refusals, roles, retries, the offline upload and the
keys document are tested in process: tests/unit/test_gate_api.py. `sign` is shared with
tests/integration/test_least_privilege.py."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from local import stack as stack_module
from tests.shop import paid_tickets
from ticketing import qr


# ------------------------------------------------------------------ helpers
@pytest.fixture
def paid(api, stack):
    """`paid(n)`: n valid tickets of a fresh event, bought and paid through Stripe:
    (event_id, types, [(ticket_id, code)]) (tests/shop.py)."""
    return lambda n: paid_tickets(api, stack, n)


def sign(stack, ticket_id: str, event_id: str) -> str:
    """A correctly signed code, made with the local stack's own QR signing key."""
    secret = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=stack_module.QR_SECRET)["SecretString"])
    return qr.sign_with(secret["keys"][secret["active"]], secret["active"], ticket_id, event_id)


# -------------------------------------------------------------------- tests
def test_four_gates_scanning_one_ticket_at_once_admit_it_exactly_once(api, paid, scanner):
    _, _, [(ticket_id, _)] = paid(1)
    gates = ["North", "South", "East", "West"]
    barrier = threading.Barrier(len(gates))

    def scan(gate):
        barrier.wait()
        return gate, api.post(f"/api/tickets/{ticket_id}/checkin/", token=scanner, json={"gate": gate})

    with ThreadPoolExecutor(max_workers=len(gates)) as pool:
        answers = list(pool.map(scan, gates))
    admitted = [(gate, r.json()) for gate, r in answers if r.status_code == 200]
    refused = [r.json() for _, r in answers if r.status_code == 409]
    assert len(admitted) == 1 and len(refused) == 3, [(g, r.status_code, r.text) for g, r in answers]
    winner, body = admitted[0]
    assert body["ticket"]["gate"] == winner
    for answer in refused:
        assert answer["reason"] == "already_used" and answer["error"] == "Ticket already used" and answer["detail"]
        assert (answer["first_used_at"], answer["gate"]) == (body["ticket"]["used_at"], winner)

