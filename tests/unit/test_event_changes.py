"""Telling ticket holders that an event's times or venue changed (issue 17): the organiser's
PATCH through the catalogue function, the fan-out through the receipts function's queue
worker, against moto in process (SES, SQS, DynamoDB)."""

from __future__ import annotations

import email
import email.policy
import json
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from tests.unit.conftest import ADMIN, _Context, load_function
from ticketing import clock, config, event_changes, inbox, mail
from ticketing.auth import Caller
from ticketing.lifecycle import tickets as ticket_lifecycle
from ticketing.table import EventChangeJobItem, TicketItem, customer_partition, event_tickets_index

SENDER = "tickets@unit.example"
SUBJECT = "Gig: new date, time or venue"
START = "2030-01-01T18:00:00Z"
END = "2030-01-01T22:00:00Z"


@pytest.fixture
def receipts_fn():
    return load_function("receipts")


@pytest.fixture
def world(aws, catalogue, monkeypatch):
    monkeypatch.setenv("SENDER_EMAIL", SENDER)
    config.settings.cache_clear()
    mail.reset_client()
    boto3.client("ses").verify_email_identity(EmailAddress=SENDER)
    queue = boto3.client("sqs").create_queue(QueueName="receipts")["QueueUrl"]
    monkeypatch.setenv("RECEIPT_QUEUE_URL", queue)
    _, event, _ = catalogue("POST", "/api/events/", {"name": "Gig", "venue": "Hall", "currency": "usd",
                                                     "starts_at": START, "ends_at": END}, claims=ADMIN)
    yield {"event_id": event["id"], "queue": queue}
    config.settings.cache_clear()
    mail.reset_client()


def ticket(event_id: str, sub: str, status: str = "valid", order_id: str | None = None, email: str | None = "") -> str:
    ticket_id = f"tk_{uuid.uuid4().hex[:12]}"
    created = clock.iso(clock.now())
    TicketItem(*TicketItem.key(ticket_id), GSI1PK=customer_partition(sub), GSI1SK=f"TICKET#{created}#{ticket_id}",
               **event_tickets_index(event_id, ticket_id, created), ticket_id=ticket_id, serial="S-1",
               order_id=order_id or f"ord_{sub}", event_id=event_id, type_id="tt_1", type_name="GA", price_cents=2500,
               currency="usd", status=status, customer_sub=sub, created_at=created, event_name="Gig", event_ends_at=END,
               holder_email=f"{sub}@example.com" if email == "" else email, holder_name=sub.title()).save()
    return ticket_id


def sent(subject: str = SUBJECT) -> list[str]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return [email.message_from_string(m.raw_data, policy=email.policy.default)["To"].addresses[0].addr_spec
            for m in ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages if f"Subject: {subject}" in m.raw_data]


def take(queue: str) -> list[dict]:
    """Every message on the queue now (removed from it)."""
    sqs, found = boto3.client("sqs"), []
    while True:
        answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
        messages = answer.get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


class _Minute(_Context):
    def get_remaining_time_in_millis(self) -> int:
        return 60_000  # the receipts function's timeout


def deliver(receipts_fn, bodies: list[dict]) -> dict:
    """Hand the receipts function an SQS batch, as the event source mapping does."""
    records = [{"messageId": str(uuid.uuid4()), "receiptHandle": "h", "body": json.dumps(body), "attributes": {},
                "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:receipts", "awsRegion": "us-east-1"} for body in bodies]
    return receipts_fn.lambda_handler({"Records": records}, _Minute())


def drain(receipts_fn, queue: str) -> list[dict]:
    """Run the fan-out to its end: deliver each queued message until none is left."""
    delivered = []
    while messages := take(queue):
        delivered += messages
        assert deliver(receipts_fn, messages) == {"batchItemFailures": []}
    return delivered


def notes(sub: str) -> list:
    return [n for n in inbox.my_notifications(Caller(sub=sub)).notifications if n.kind == "event_changed"]


def patch(catalogue, event_id: str, body: dict) -> tuple[int, dict]:
    status, answer, _ = catalogue("PATCH", f"/api/events/{event_id}/", body, claims=ADMIN)
    return status, answer


def test_each_valid_holder_is_told_once_by_email_and_inbox_and_every_ticket_restamped(world, catalogue, receipts_fn, monkeypatch):
    event_id, queue = world["event_id"], world["queue"]
    monkeypatch.setenv("EVENT_CHANGE_BATCH", "2")  # several batches, a customer's tickets in more than one
    config.settings.cache_clear()
    ann = [ticket(event_id, "ann", order_id="ord_a1"), ticket(event_id, "ann", order_id="ord_a2"), ticket(event_id, "ann", order_id="ord_a3")]
    bob = ticket(event_id, "bob")
    quiet = [ticket(event_id, "cat", "pending"), ticket(event_id, "dan", "void"), ticket(event_id, "eve", "used")]

    status, answer = patch(catalogue, event_id, {"starts_at": "2030-01-02T18:00:00Z", "ends_at": "2030-01-02T23:00:00Z"})
    assert status == 200 and answer["ends_at"] == "2030-01-02T23:00:00Z"
    first = drain(receipts_fn, queue)
    assert len(first) >= 3  # 7 tickets, 2 a batch: the job went on from message to message

    assert sorted(sent()) == ["ann@example.com", "bob@example.com"]  # one email per customer, not per ticket
    for sub in ("ann", "bob"):
        [note] = notes(sub)
        assert note.event_id == event_id and "2 January 2030, 18:00 UTC" in note.body and "was Tuesday 1 January" in note.body
    assert all(not notes(sub) for sub in ("cat", "dan", "eve"))
    for ticket_id in [*ann, bob, *quiet]:  # every ticket's copy of the end follows, whatever its status
        assert TicketItem.get(*TicketItem.key(ticket_id)).event_ends_at == "2030-01-02T23:00:00Z"
    job = EventChangeJobItem.get(*EventChangeJobItem.key(event_id))
    assert (job.state, int(job.told), int(job.version)) == ("completed", 2, 1)

    # the fan-out delivered again (SQS at least once), the PATCH retried: nobody told twice
    assert deliver(receipts_fn, first) == {"batchItemFailures": []}
    assert patch(catalogue, event_id, {"starts_at": "2030-01-02T18:00:00Z", "ends_at": "2030-01-02T23:00:00Z"})[0] == 200
    assert take(queue) == []
    # a change of anything holders are not told about tells nobody
    assert patch(catalogue, event_id, {"name": "Gig", "description": "Now with support act"})[0] == 200
    assert take(queue) == [] and len(sent()) == 2 and len(notes("ann")) == 1


def test_a_venue_change_is_told_too(world, catalogue, receipts_fn):
    ticket(world["event_id"], "ann")
    assert patch(catalogue, world["event_id"], {"venue": "Arena"})[0] == 200
    drain(receipts_fn, world["queue"])
    [note] = notes("ann")
    assert "Venue: Arena (was Hall)" in note.body and sent() == ["ann@example.com"]


def test_ses_failing_midway_resumes_where_it_stopped_without_telling_anyone_twice(world, catalogue, receipts_fn, monkeypatch):
    event_id, queue = world["event_id"], world["queue"]
    for sub in ("ann", "bob", "cat"):
        ticket(event_id, sub)
    real, calls = mail.send, []

    def flaky(message, **owner):
        calls.append(message["To"])
        if len(calls) == 2:
            raise mail.MailError("SES refused the email (Throttling)", retryable=True, code="Throttling")
        return real(message, **owner)

    monkeypatch.setattr(mail, "send", flaky)
    assert patch(catalogue, event_id, {"ends_at": "2030-01-01T23:30:00Z"})[0] == 200
    [message] = take(queue)
    with pytest.raises(BatchProcessingError):  # the whole batch failed: kept on the queue, SQS delivers it again
        deliver(receipts_fn, [message])
    assert len(sent()) == 1
    assert deliver(receipts_fn, [message]) == {"batchItemFailures": []}  # the redelivery resumes
    drain(receipts_fn, queue)
    assert sorted(sent()) == ["ann@example.com", "bob@example.com", "cat@example.com"]
    assert all(len(notes(sub)) == 1 for sub in ("ann", "bob", "cat"))


def test_a_patch_whose_queueing_failed_is_retried_and_then_told_once(world, catalogue, receipts_fn, monkeypatch):
    event_id, queue = world["event_id"], world["queue"]
    ticket(event_id, "ann")
    body = {"starts_at": "2030-01-01T19:00:00Z"}
    monkeypatch.setenv("RECEIPT_QUEUE_URL", queue + "-gone")
    status, answer = patch(catalogue, event_id, body)
    assert status == 503 and answer["error"]
    monkeypatch.setenv("RECEIPT_QUEUE_URL", queue)
    assert patch(catalogue, event_id, body)[0] == 200  # the client's retry: no change now, the job queued again
    drain(receipts_fn, queue)
    assert sent() == ["ann@example.com"] and len(notes("ann")) == 1


def test_a_newer_change_supersedes_an_older_ones_fan_out(world, catalogue, receipts_fn):
    event_id, queue = world["event_id"], world["queue"]
    ticket(event_id, "ann")
    assert patch(catalogue, event_id, {"starts_at": "2030-01-01T19:00:00Z"})[0] == 200
    assert patch(catalogue, event_id, {"starts_at": "2030-01-01T20:00:00Z"})[0] == 200
    assert sorted(m["version"] for m in drain(receipts_fn, queue)) == [1, 2]
    assert sent() == ["ann@example.com"]  # told the newest times only
    [note] = notes("ann")
    assert "20:00 UTC" in note.body


def test_an_address_refused_for_good_or_missing_still_gets_the_inbox_entry(world, catalogue, receipts_fn):
    event_id = world["event_id"]
    ticket(event_id, "ann", email="ánn@example.com")  # SES cannot deliver to a non-ASCII local part
    ticket(event_id, "bob", email=None)
    assert patch(catalogue, event_id, {"venue": "Arena"})[0] == 200
    drain(receipts_fn, world["queue"])
    assert sent() == []
    assert len(notes("ann")) == 1 and len(notes("bob")) == 1


def test_a_sender_that_died_after_sending_is_not_followed_by_a_second_email(world, catalogue, receipts_fn, monkeypatch):
    event_id, queue = world["event_id"], world["queue"]
    ticket(event_id, "ann")
    assert patch(catalogue, event_id, {"venue": "Arena"})[0] == 200
    [message] = take(queue)

    class Died(Exception):
        pass

    def dying(marker, outcome, message_id):
        raise Died()

    with monkeypatch.context() as patched:  # sent (and filed in the inbox), then died before recording it
        patched.setattr(event_changes, "_done", dying)
        with pytest.raises(Died):
            event_changes.run_batch(event_id, 1)
    assert sent() == ["ann@example.com"]
    clock.freeze(datetime.now(timezone.utc) + timedelta(seconds=event_changes.LEASE_SECONDS + 1))  # its lease ran out
    try:
        assert deliver(receipts_fn, [message]) == {"batchItemFailures": []}
    finally:
        clock.freeze(None)
    assert sent() == ["ann@example.com"] and len(notes("ann")) == 1


def test_a_tickets_copy_of_the_end_never_goes_back_to_an_older_change(aws):
    ticket_id = ticket("ev_1", "ann")
    assert ticket_lifecycle.restamp_event_end(ticket_id, "2030-01-03T00:00:00Z", 2)
    assert not ticket_lifecycle.restamp_event_end(ticket_id, "2030-01-02T00:00:00Z", 1)
    assert TicketItem.get(*TicketItem.key(ticket_id)).event_ends_at == "2030-01-03T00:00:00Z"
