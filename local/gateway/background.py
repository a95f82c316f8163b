"""Events that do not come over HTTP, as Lambda's event sources deliver them: Schedule
rules on a short local interval, and SQS queues long-polled from the AWS stand-in, as
Lambda's pollers do (failed messages come back after their visibility timeout; partial
batch failures honoured)."""

from __future__ import annotations

import base64
import threading
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from local.template import ACCOUNT_ID, ScheduleEvent, SqsEvent

if TYPE_CHECKING:
    from local.gateway.gateway import Gateway

# Lambda's SQS pollers wait up to 20 s for a message: an idle queue costs a request a poll,
# and the stand-in answers as soon as one arrives.
LONG_POLL_SECONDS = 20


class Background:
    """One thread per Schedule and per SQS event source of the template."""

    def __init__(self, gateway: "Gateway"):
        self.gateway = gateway
        self.region = gateway.region
        self._busy = 0  # invocations in flight
        self._idle = threading.Condition()

    def start(self) -> None:
        gw = self.gateway
        for schedule in gw.template.schedules:
            if schedule.enabled and schedule.function in gw.pools:
                self._thread(self._schedule_loop, schedule, f"schedule-{schedule.function}")
        for sqs in gw.template.sqs_events:
            if sqs.enabled and sqs.function in gw.pools:
                self._thread(self._sqs_loop, sqs, f"sqs-{sqs.function}")

    def _thread(self, target: Any, arg: Any, name: str) -> None:
        threading.Thread(target=target, args=(arg,), name=name, daemon=True).start()

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` for the invocations in flight. A poller waiting on its queue
        is a daemon thread: it goes with the process, and is not waited for."""
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout=timeout)

    @property
    def _stopping(self) -> threading.Event:
        return self.gateway.stopping

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        with self._idle:
            self._busy += 1
        try:
            return self.gateway.invoke(function, event)
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def _log(self, message: str) -> None:
        self.gateway.log(message)

    def _schedule_loop(self, schedule: ScheduleEvent) -> None:
        rule = f"arn:aws:events:{self.region}:{ACCOUNT_ID}:rule/{schedule.function}-{schedule.name}"
        while not self._stopping.wait(self.gateway.schedule_seconds):
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": ACCOUNT_ID,
                "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": self.region,
                "resources": [rule],
                "detail": {},
            }
            result = self.invoke(schedule.function, event)
            if result.status not in ("ok", "unavailable"):
                self._log(f"{schedule.function}: scheduled invocation ({schedule.name}) failed: {result.status} {result.value or ''}")

    def _sqs_client(self) -> Any:
        import boto3

        env = self.gateway.base_env
        session = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
            region_name=self.region,
        )
        endpoint = env.get("AWS_ENDPOINT_URL_SQS") or env.get("AWS_ENDPOINT_URL") or None
        return session.client("sqs", endpoint_url=endpoint)

    def _sqs_loop(self, sqs: SqsEvent) -> None:
        name = str(self.gateway.context.get(f"{sqs.queue}.QueueName", sqs.queue))
        arn = f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{name}"
        batch = max(1, int(sqs.batch_size))
        client = None
        url = None
        last_error = None
        while not self._stopping.is_set():
            try:
                if client is None:
                    client = self._sqs_client()
                if url is None:
                    url = client.get_queue_url(QueueName=name)["QueueUrl"]
                    last_error = None
                messages: list[dict[str, Any]] = []
                wait = LONG_POLL_SECONDS
                while len(messages) < batch and not self._stopping.is_set():
                    want = min(10, batch - len(messages))
                    got = client.receive_message(
                        QueueUrl=url,
                        MaxNumberOfMessages=want,
                        WaitTimeSeconds=wait,
                        AttributeNames=["All"],
                        MessageAttributeNames=["All"],
                    ).get("Messages", [])
                    messages += got
                    if len(got) < want:
                        break
                    wait = 0
            except Exception as exc:  # noqa: BLE001 - keep polling whatever happens
                if self._stopping.is_set():
                    return  # a poll outlived the gateway's stop (it is not waited for): nothing to report
                text = f"{type(exc).__name__}: {exc}"
                if text != last_error:
                    self._log(f"{sqs.function}: polling queue {name!r} failed ({text}); retrying")
                    last_error = text
                if "NonExistentQueue" in text or "QueueDoesNotExist" in text:
                    url = None
                self._stopping.wait(2)
                continue
            if not messages:
                continue
            records = [self._sqs_record(m, arn) for m in messages]
            result = self.invoke(sqs.function, {"Records": records})
            if result.status != "ok":
                if result.status != "unavailable":
                    self._log(f"{sqs.function}: SQS batch of {len(records)} failed ({result.status}); messages will reappear")
                continue
            keep: set[str] = set()
            if sqs.report_batch_item_failures and isinstance(result.value, dict):
                failures = result.value.get("batchItemFailures") or []
                ids = {r["messageId"] for r in records}
                try:
                    keep = {str(f["itemIdentifier"]) for f in failures}
                except (KeyError, TypeError):
                    keep = ids
                if not keep <= ids:
                    keep = ids  # an unknown identifier fails the whole batch, as Lambda does
            entries = [
                {"Id": str(i), "ReceiptHandle": r["receiptHandle"]}
                for i, r in enumerate(records)
                if r["messageId"] not in keep
            ]
            try:
                for start in range(0, len(entries), 10):
                    client.delete_message_batch(QueueUrl=url, Entries=entries[start : start + 10])
            except Exception as exc:  # noqa: BLE001
                self._log(f"{sqs.function}: deleting messages from {name!r} failed: {exc}")

    def _sqs_record(self, message: dict[str, Any], arn: str) -> dict[str, Any]:
        attributes = {}
        for key, value in (message.get("MessageAttributes") or {}).items():
            binary = value.get("BinaryValue")
            attributes[key] = {
                "stringValue": value.get("StringValue"),
                "binaryValue": base64.b64encode(binary).decode() if isinstance(binary, bytes) else binary,
                "stringListValues": value.get("StringListValues", []),
                "binaryListValues": value.get("BinaryListValues", []),
                "dataType": value.get("DataType"),
            }
            if attributes[key]["stringValue"] is None:
                del attributes[key]["stringValue"]
            if attributes[key]["binaryValue"] is None:
                del attributes[key]["binaryValue"]
        record = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": dict(message.get("Attributes") or {}),
            "messageAttributes": attributes,
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": self.region,
        }
        if message.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record


