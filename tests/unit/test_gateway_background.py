"""The local gateway's SQS pollers: they long-poll as Lambda's do (an idle queue costs a
request a poll, not one a second), a message that arrives during a poll is delivered at
once, and stopping the gateway does not wait for a poll in flight."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from local.gateway.background import LONG_POLL_SECONDS, Background
from local.template import SqsEvent


class Queue:
    """An SQS client whose ReceiveMessage waits, as the stand-in's does, for a message or
    the end of the poll."""

    def __init__(self) -> None:
        self.waits: list[int] = []
        self.messages: list[dict] = []
        self.deleted: list[str] = []
        self.answered = 0
        self.fail: Exception | None = None  # what the poll in flight raises once woken
        self.changed = threading.Condition()

    def get_queue_url(self, QueueName: str) -> dict:  # noqa: N803 (boto3's names)
        return {"QueueUrl": f"local/{QueueName}"}

    def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int, WaitTimeSeconds: int, **_: object) -> dict:  # noqa: N803
        with self.changed:
            self.waits.append(WaitTimeSeconds)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.messages or self.fail, timeout=WaitTimeSeconds)
            got, self.messages = self.messages[:MaxNumberOfMessages], self.messages[MaxNumberOfMessages:]
            self.answered += 1
            self.changed.notify_all()
            if self.fail is not None:
                raise self.fail
        return {"Messages": got}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict]) -> None:  # noqa: N803
        self.deleted += [entry["ReceiptHandle"] for entry in Entries]

    def send(self, body: str) -> None:
        with self.changed:
            self.messages.append({"MessageId": body, "ReceiptHandle": f"rh-{body}", "Body": body})
            self.changed.notify_all()

    def polls(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.waits) >= count, timeout=30)

    def answers(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.answered >= count, timeout=30)


def _running(queue: Queue, invoke) -> tuple[Background, SimpleNamespace]:
    source = SqsEvent(function="ConsumeFunction", name="Jobs", queue="JobsQueue")
    gateway = SimpleNamespace(
        region="us-east-1", template=SimpleNamespace(schedules=[], sqs_events=[source]),
        pools={"ConsumeFunction": object()}, context={}, stopping=threading.Event(), invoke=invoke, log=print,
    )
    background = Background(gateway)
    background._sqs_client = lambda: queue
    before = set(threading.enumerate())
    background.start()
    gateway.threads = set(threading.enumerate()) - before  # its poller
    return background, gateway


def test_an_idle_queue_is_long_polled_and_a_message_is_delivered_during_the_poll():
    queue, delivered = Queue(), []
    done = threading.Event()

    def invoke(function, event):
        delivered.extend(record["body"] for record in event["Records"])
        done.set()
        return SimpleNamespace(status="ok", value=None)

    background, gateway = _running(queue, invoke)
    try:
        assert queue.polls(1)
        queue.send("one")  # during the first poll
        assert done.wait(30)
        assert delivered == ["one"] and queue.deleted == ["rh-one"]
        assert queue.polls(2)
        assert queue.waits[:2] == [LONG_POLL_SECONDS, LONG_POLL_SECONDS]
    finally:
        gateway.stopping.set()


def test_stopping_waits_for_an_invocation_in_flight():
    queue = Queue()
    release, invoked, stopped = threading.Event(), threading.Event(), threading.Event()

    def invoke(function, event):
        invoked.set()
        release.wait(30)
        return SimpleNamespace(status="ok", value=None)

    background, gateway = _running(queue, invoke)
    queue.send("slow")
    assert invoked.wait(30)

    def stop() -> None:
        gateway.stopping.set()
        background.join(timeout=30)
        stopped.set()

    threading.Thread(target=stop, daemon=True).start()
    assert not stopped.wait(0.5)  # the invocation is still running
    release.set()
    assert stopped.wait(30)
    assert queue.deleted == ["rh-slow"]


def test_stopping_does_not_wait_for_a_poll_in_flight_nor_report_its_failure():
    queue, logged = Queue(), []
    background, gateway = _running(queue, lambda function, event: SimpleNamespace(status="ok", value=None))
    gateway.log = logged.append
    assert queue.polls(1)
    gateway.stopping.set()
    background.join(timeout=30)
    assert queue.answered == 0  # the poll (LONG_POLL_SECONDS) is still waiting: the join did not wait for it
    # The stand-in stops after the gateway: the poll fails, quietly, and the poller ends.
    queue.fail = ConnectionError("the stand-in stopped")
    with queue.changed:
        queue.changed.notify_all()
    assert queue.answers(1)
    for thread in gateway.threads:
        thread.join(timeout=30)  # the poller has ended
        assert not thread.is_alive()
    assert logged == []
