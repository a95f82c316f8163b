"""Telling ticket holders that an event's times or venue changed (issue 17).

`record_change` writes an organiser's edit of `starts_at`, `ends_at` or `venue` that
changes something, in one transaction with this change's fan-out job
(`EventChangeJobItem`, one per event, `version` = the event's new `times_version`), then
queues the job on the receipt queue (off the request path: holders can be many). An edit
that changes none of them writes no job and tells nobody; one that sends them unchanged
(a retried PATCH) only queues a job that is still running again, in case the first
request could not.

`run_batch` (the receipts function, from the queue) takes the next `EVENT_CHANGE_BATCH`
(setting, default 100) tickets of the
event (GSI3, from the job's cursor):
- every ticket's copy of the event's end (`event_ends_at`, tickets of a fixture keep the
  fixture's) is re-stamped, conditional on the ticket not showing a newer change already;
- each customer with a `valid` ticket is told once: one email (SES, filed in the inbox as
  `event_changed` by the mail hook) however many tickets and orders they hold. A marker
  per customer and change (`EventChangeNoticeItem`) is claimed with a lease before the
  email goes and recorded after, so a retried or duplicated batch tells nobody twice; an
  address SES refuses for good gets the inbox entry alone.
SES failing saves the cursor at that customer and fails the message, so SQS delivers it
again and the job resumes there. Only the delivery that moves the job on (a conditional
write on `batches`) queues the next batch, and a newer change supersedes an older one's
job, whose holders are then told the newest times.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from ticketing import clock, inbox, mail
from ticketing.config import settings
from ticketing.errors import Conflict, DependencyUnavailable
from ticketing.lifecycle import TicketStatus
from ticketing.lifecycle import tickets as ticket_lifecycle
from ticketing.lifecycle.writes import condition_failed
from ticketing.observability import logger, metrics
from ticketing.pages import gather
from ticketing.table import EventChangeJobItem, EventChangeNoticeItem, EventItem, TicketItem, connection, event_index_partitions

WATCHED = ("starts_at", "ends_at", "venue")  # what ticket holders are told about
LEASE_SECONDS = 60  # a customer's notice, claimed while its email is sent
SAFETY_MS = 15_000  # stop a batch early with this much of the invocation left


class RetryLater(Exception):
    """The batch stopped at a customer who could not be told yet (SES failing, another
    delivery sending to them): the message goes back to the queue and the job resumes there."""


def changes(event: EventItem, new: dict[str, str]) -> bool:
    """Whether `new` (ISO times, venue) differs from the event in anything holders are told."""
    return any(field in new and new[field] != getattr(event, field) for field in WATCHED)


def record_change(event: EventItem, actions: list[Any], new: dict[str, str]) -> None:
    """Write the event's edit (`actions`) and this change's job in one transaction, then
    queue the job. Conflict if the event was canceled or changed meanwhile (read it again)."""
    previous = int(event.times_version or 0)
    version = previous + 1
    now = clock.iso(clock.now())
    same = EventItem.times_version.does_not_exist() if previous == 0 else EventItem.times_version == previous
    job = EventChangeJobItem(
        *EventChangeJobItem.key(event.event_id), event_id=event.event_id, version=version, state="running",
        starts_at=new.get("starts_at", event.starts_at), ends_at=new.get("ends_at", event.ends_at),
        venue=new.get("venue", event.venue), was_starts_at=event.starts_at, was_ends_at=event.ends_at,
        was_venue=event.venue, cursor=None, batches=0, told=0, created_at=now, updated_at=now,
    )
    try:
        with TransactWrite(connection=connection()) as transaction:
            transaction.update(event, actions=[*actions, EventItem.times_version.set(version)],
                               condition=(EventItem.status == "on_sale") & same)
            transaction.save(job)  # replaces an older change's job: its holders hear the newest times
    except TransactWriteError as exc:
        if condition_failed(exc):
            raise Conflict(f"Event {event.event_id} was canceled or changed meanwhile; read it and try again.",
                           code="event_changed_meanwhile") from exc
        raise
    logger.info("event times changed", extra={"event_id": event.event_id, "version": version})
    enqueue(event.event_id, version)


def resume(event_id: str) -> None:
    """A PATCH that sent the watched fields unchanged may be a retry of one whose queueing
    failed: queue the job again if it is still running (a second message is harmless)."""
    try:
        job = EventChangeJobItem.get(*EventChangeJobItem.key(event_id), consistent_read=True)
    except EventChangeJobItem.DoesNotExist:
        return
    if job.state == "running":
        enqueue(event_id, int(job.version))


def _sqs() -> Any:
    """botocore's SQS client (the catalogue function bundles botocore, not boto3)."""
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "sqs", region_name=settings().region,
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}),
    )


def enqueue(event_id: str, version: int) -> None:
    import os

    from botocore.exceptions import BotoCoreError, ClientError

    url = os.environ.get("RECEIPT_QUEUE_URL", "")
    try:
        if not url:
            raise ValueError("RECEIPT_QUEUE_URL is not set")
        _sqs().send_message(QueueUrl=url, MessageBody=json.dumps({"event_changed": event_id, "version": version}))
    except (BotoCoreError, ClientError, ValueError) as exc:
        raise DependencyUnavailable("The notification queue is unavailable; send the change again to tell the ticket holders.",
                                    retry_after=5) from exc


# ---------------------------------------------------------------- the worker
def dedupe(event_id: str, version: int) -> str:
    """The inbox key of a change's notice: one entry per customer and change."""
    return f"event_changed:{event_id}:{version}"


def _done(marker: EventChangeNoticeItem, outcome: str, message_id: str | None) -> None:
    actions = [EventChangeNoticeItem.sent_at.set(clock.iso(clock.now())), EventChangeNoticeItem.outcome.set(outcome),
               EventChangeNoticeItem.claimed_until.remove()]
    if message_id:
        actions.append(EventChangeNoticeItem.message_id.set(message_id))
    marker.update(actions=actions)


def _notice(job: EventChangeJobItem, event_name: str, ticket: TicketItem) -> mail.EventChangedNotice:
    front = settings().frontend_url
    return mail.EventChangedNotice(
        event_id=job.event_id, order_id=ticket.order_id, to_email=ticket.holder_email or "", to_name=ticket.holder_name,
        event_name=event_name, starts_at=job.starts_at, ends_at=job.ends_at, venue=job.venue,
        was_starts_at=job.was_starts_at, was_ends_at=job.was_ends_at, was_venue=job.was_venue,
        dedupe=dedupe(job.event_id, int(job.version)), event_url=f"{front}/events/{job.event_id}" if front else None,
    )


def _inbox_only(job: EventChangeJobItem, notice: mail.EventChangedNotice, sub: str) -> None:
    """The email cannot go (no address, or one SES refuses for good): the inbox says it."""
    text = " ".join(line.strip() for line in mail._changed_text(notice).splitlines()[1:] if line.strip())
    inbox.record(sub, "event_changed", f"{notice.event_name}: new date, time or venue", text,
                 dedupe=notice.dedupe, order_id=notice.order_id, event_id=job.event_id)


def _tell(job: EventChangeJobItem, event_name: str, ticket: TicketItem) -> bool:
    """Tell the ticket's customer once; True if told now. RetryLater if not possible yet."""
    sub, version = ticket.customer_sub, int(job.version)
    marker = EventChangeNoticeItem(*EventChangeNoticeItem.key(job.event_id, version, sub))
    now = clock.now()
    try:
        marker.update(
            actions=[EventChangeNoticeItem.sub.set(sub), EventChangeNoticeItem.attempts.add(1),
                     EventChangeNoticeItem.claimed_until.set(clock.iso(now + timedelta(seconds=LEASE_SECONDS)))],
            condition=EventChangeNoticeItem.sent_at.does_not_exist()
            & (EventChangeNoticeItem.claimed_until.does_not_exist() | (EventChangeNoticeItem.claimed_until < clock.iso(now))),
        )
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        fresh = EventChangeNoticeItem.get(*EventChangeNoticeItem.key(job.event_id, version, sub), consistent_read=True)
        if fresh.sent_at:
            return False
        raise RetryLater(f"another delivery is telling customer {sub}") from None
    notice = _notice(job, event_name, ticket)
    if int(marker.attempts) > 1 and inbox.filed(sub, notice.dedupe):
        _done(marker, "emailed", None)  # an attempt that died after sending: the mail hook filed it
        return True
    if not notice.to_email:
        _inbox_only(job, notice, sub)
        _done(marker, "no_address", None)
        return True
    try:
        message_id = mail.send(mail.build_event_changed(notice), customer_sub=sub, event_id=job.event_id)
    except mail.MailError as exc:
        if exc.retryable:
            marker.update(actions=[EventChangeNoticeItem.claimed_until.remove()])
            raise RetryLater(f"email failed ({exc.code})") from exc
        _inbox_only(job, notice, sub)
        _done(marker, "undeliverable", None)
        metrics.add_metric(name="EventChangeUndeliverable", unit="Count", value=1)
        return True
    _done(marker, "emailed", message_id)
    metrics.add_metric(name="EventChangeNotices", unit="Count", value=1)
    return True


def run_batch(event_id: str, version: int, time_left_ms: Callable[[], int] = lambda: 10**9) -> dict[str, Any]:
    """The job's next batch of tickets (see the module's docstring). Raises RetryLater,
    after saving where it stopped, when a customer must be told later."""
    try:
        job = EventChangeJobItem.get(*EventChangeJobItem.key(event_id), consistent_read=True)
    except EventChangeJobItem.DoesNotExist:
        return {"event_id": event_id, "state": "none"}
    if int(job.version) != version or job.state != "running":
        return {"event_id": event_id, "state": "superseded" if int(job.version) != version else job.state}
    try:
        event_name = EventItem.get(*EventItem.key(event_id), attributes_to_get=["name"]).name
    except EventItem.DoesNotExist:
        return {"event_id": event_id, "state": "none"}
    found, cursor_after = gather(TicketItem, event_index_partitions(event_id, "TICKETS"),
                                 settings().event_change_batch, job.cursor)
    subs = list(dict.fromkeys(t.customer_sub for t in found if t.status == TicketStatus.VALID))
    keys = [EventChangeNoticeItem.key(event_id, version, sub) for sub in subs]
    told_before = {m.sub for m in EventChangeNoticeItem.batch_get(keys, consistent_read=True) if m.sent_at} if keys else set()
    seen: set[str] = set()
    processed, told, retry = 0, 0, None
    for ticket in found:
        if processed and time_left_ms() < SAFETY_MS:  # the rest in the next message (each makes progress)
            break
        if ticket.fixture_id is None and ticket.event_ends_at != job.ends_at:
            ticket_lifecycle.restamp_event_end(ticket.ticket_id, job.ends_at, version)
        sub = ticket.customer_sub
        if ticket.status == TicketStatus.VALID and sub not in seen and sub not in told_before:
            try:
                told += _tell(job, event_name, ticket)
            except RetryLater as exc:
                retry = exc
                break
            seen.add(sub)
        processed += 1

    cursor = cursor_after(processed)
    finished = retry is None and processed == len(found) and cursor is None
    now = clock.iso(clock.now())
    actions = [EventChangeJobItem.batches.add(1), EventChangeJobItem.updated_at.set(now)]
    if told:
        actions.append(EventChangeJobItem.told.add(told))
    if finished:
        actions += [EventChangeJobItem.state.set("completed"), EventChangeJobItem.completed_at.set(now),
                    EventChangeJobItem.cursor.remove()]
    else:
        actions.append(EventChangeJobItem.cursor.set(cursor) if cursor else EventChangeJobItem.cursor.remove())
    same_place = ((EventChangeJobItem.batches == int(job.batches)) & (EventChangeJobItem.version == version)
                  & (EventChangeJobItem.state == "running"))
    try:
        EventChangeJobItem(*EventChangeJobItem.key(event_id)).update(actions=actions, condition=same_place)
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        return {"event_id": event_id, "state": "superseded", "told": told}  # another delivery, or a newer change
    if retry is not None:
        logger.warning("event change: customer told later", extra={"event_id": event_id, "why": str(retry)})
        raise retry
    if finished:
        logger.info("event change told", extra={"event_id": event_id, "version": version})
        return {"event_id": event_id, "state": "completed", "told": told}
    enqueue(event_id, version)
    return {"event_id": event_id, "state": "running", "told": told}
