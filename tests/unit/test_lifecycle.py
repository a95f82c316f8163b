"""The lifecycle module: the README's diagram is the declared transitions, nothing else
writes a status, the two recognisers (failed condition, conflict) and the log record."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError
from pynamodb.exceptions import PutError, TransactWriteError, UpdateError

from tests.conftest import ROOT
from ticketing.lifecycle import states, writes

PACKAGE = ROOT / "layers/common/python/ticketing"


def test_the_readme_draws_exactly_the_declared_transitions():
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- lifecycle diagram.*?-->\n```mermaid\n(.*?)\n```", readme, re.S)
    assert found, "README: the lifecycle diagram block is missing"
    assert found.group(1) == states.diagram(), "README diagram differs: paste ticketing.lifecycle.states.diagram()"


def test_no_module_but_the_lifecycle_writes_an_order_ticket_or_refund_status():
    writes_status = re.compile(r"(OrderItem|TicketItem|RefundItem)\.(status|status_before_dispute)\.set\(")
    offenders = [
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
        if "lifecycle" not in path.parts and writes_status.search(path.read_text())
    ]
    assert offenders == []
    spelled_out = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if "lifecycle" not in p.parts and "ConditionalCheckFailed" in p.read_text()]
    assert spelled_out == []  # one helper recognises a failed condition: writes.condition_failed


def test_every_transition_is_declared_once_with_a_condition():
    names = [(t.entity, t.name) for t in states.TRANSITIONS]
    assert len(names) == len(set(names))
    for transition in states.TRANSITIONS:
        values = {"refund_id": "rf_1", "dispute_id": "dp_1", "used_at": "2030-01-01T00:00:00Z", "before": 0, "total": 1, "amount": 1,
                  "code_version": 0, "holder_sub": "cust-1", "email": "a@example.com"}
        assert transition.condition(**values) is not None


def _client_error(code: str, reasons: list[str] | None = None) -> ClientError:
    response = {"Error": {"Code": code, "Message": code}}
    if reasons is not None:
        response["CancellationReasons"] = [{"Code": r} for r in reasons]
    return ClientError(response, "TransactWriteItems")


@pytest.mark.parametrize("error, failed, conflict", [
    (_client_error("ConditionalCheckFailedException"), True, False),
    (UpdateError("x", _client_error("ConditionalCheckFailedException")), True, False),
    (PutError("x", _client_error("TransactionConflictException")), False, True),
    (_client_error("ThrottlingException"), False, True),
    (_client_error("ProvisionedThroughputExceededException"), False, True),
    (TransactWriteError("x", _client_error("TransactionCanceledException", ["None", "TransactionConflict"])), False, True),
    (TransactWriteError("x", _client_error("TransactionCanceledException", ["ConditionalCheckFailed", "TransactionConflict"])), True, False),
    (TransactWriteError("x", _client_error("TransactionCanceledException", ["None", "ThrottlingError"])), False, True),
    (_client_error("ValidationException"), False, False),
    (ValueError("not AWS"), False, False),
])
def test_one_helper_recognises_a_failed_condition_and_one_a_conflict(error, failed, conflict):
    assert writes.condition_failed(error) is failed
    assert writes.is_conflict(error) is conflict


def test_a_conflict_is_retried_a_bounded_number_of_times_then_503(monkeypatch):
    from ticketing.errors import DependencyUnavailable

    monkeypatch.setattr(writes, "_pause", lambda attempt: None)
    calls = []

    def conflicting():
        calls.append(1)
        raise TransactWriteError("x", _client_error("TransactionCanceledException", ["TransactionConflict"]))

    with pytest.raises(DependencyUnavailable) as unavailable:
        writes.retrying(conflicting)
    assert len(calls) == writes.ATTEMPTS and unavailable.value.retry_after == writes.RETRY_AFTER
    calls.clear()
    with pytest.raises(ValueError):
        writes.retrying(lambda: calls.append(1) or (_ for _ in ()).throw(ValueError("not a conflict")))
    assert len(calls) == 1  # anything else is not retried
    answers = iter([_client_error("ThrottlingException"), "done"])

    def once_then_fine():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert writes.retrying(once_then_fine) == "done"


def test_each_transition_leaves_its_log_record_in_its_transaction(aws):
    from ticketing import clock
    from ticketing.lifecycle import orders as lifecycle
    from ticketing.table import HolderCount, InventoryShard, OrderItem, OrderLine, Payment, ShardTake, TicketItem, TransitionLogItem

    InventoryShard(*InventoryShard.key("tt_log", 0), event_id="ev_log", type_id="tt_log", shard=0, capacity=2, remaining=2,
                   held=0, sold=0).save()
    now = clock.iso(clock.now())
    order = OrderItem(
        *OrderItem.key("or_log"), GSI1PK="CUSTOMER#c", GSI1SK="ORDER#x", order_id="or_log", event_id="ev_log", customer_sub="c",
        status="pending", total_cents=1000, currency="usd", ticket_ids=["tk_log"], payment=Payment(), created_at=now,
        expires_at=now, updated_at=now,
        lines=[OrderLine(type_id="tt_log", name="GA", qty=1, price_cents=1000, takes=[ShardTake(shard=0, qty=1)])],
    )
    ticket = TicketItem(
        *TicketItem.key("tk_log"), GSI1PK="CUSTOMER#c", GSI1SK="TICKET#x", ticket_id="tk_log", serial="S", order_id="or_log",
        event_id="ev_log", type_id="tt_log", type_name="GA", price_cents=1000, currency="usd", status="pending",
        customer_sub="c", created_at=now,
    )
    lifecycle.place_hold(lifecycle.Hold(order, [ticket]), 10)
    assert lifecycle.release(order, "canceled", "canceled_by_customer", by="c")
    assert not lifecycle.release(order, "canceled", "again", by="c")  # refused: no second record
    records = list(TransitionLogItem.query("ORDER#or_log", TransitionLogItem.SK.startswith("LOG#")))
    logs = {r.transition: r for r in records}
    assert len(records) == 2 and sorted((r.transition, r.from_status, r.to_status, r.by) for r in logs.values()) == [
        ("cancel", "pending", "canceled", "c"), ("hold", None, "pending", "c")]  # two records: the refused release left none
    assert logs["cancel"].why == "canceled_by_customer" and logs["cancel"].ids == ["tk_log"]
    assert int(HolderCount.get(*HolderCount.key("c", "ev_log")).held) == 0
