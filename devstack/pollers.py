"""SQS event-source mappings and schedules, run locally.

A poller does what Lambda's SQS poller does: receive a batch, invoke the function with a real
SQS event, delete what succeeded. With ReportBatchItemFailures only the reported messages stay;
an unhandled error keeps the whole batch. Kept messages come back after the visibility timeout
and reach the DLQ by the queue's own redrive policy (maxReceiveCount). Locally the visibility of
a failed message can be shortened (``retry_visibility_s``) so retries happen in seconds.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

from devstack.invoker import Invoker
from devstack.template import REGION, SqsSource


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record of the event Lambda receives from SQS."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
            "SenderId": attributes.get("SenderId", "AIDAIENQZJOLO23YVJ4VO"),
            "ApproximateFirstReceiveTimestamp": attributes.get(
                "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
            ),
        },
        "messageAttributes": {
            name: {
                "stringValue": attr.get("StringValue"),
                "binaryValue": attr.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": attr.get("DataType", "String"),
            }
            for name, attr in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


class SqsPoller(threading.Thread):
    def __init__(
        self,
        *,
        function: str,
        source: SqsSource,
        queue_url: str,
        queue_arn: str,
        sqs: Any,
        invoker: Invoker,
        stop: threading.Event,
        retry_visibility_s: int | None,
        log: Any,
    ) -> None:
        super().__init__(name=f"poller-{function}-{source.queue}", daemon=True)
        self.function, self.source = function, source
        self.queue_url, self.queue_arn = queue_url, queue_arn
        self.sqs, self.invoker, self.stop = sqs, invoker, stop
        self.retry_visibility_s = retry_visibility_s
        self.log = log

    def _receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + min(self.source.batching_window_s, 1)
        while len(messages) < self.source.batch_size and not self.stop.is_set():
            wanted = min(10, self.source.batch_size - len(messages))
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=wanted,
                WaitTimeSeconds=0 if messages else 1,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            messages.extend(got)
            if not got or time.monotonic() >= deadline:
                break
        return messages

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                messages = self._receive()
                if messages:
                    self._deliver(messages)
            except Exception as exc:  # keep polling: the endpoint may be restarting
                if not self.stop.is_set():
                    self.log(f"poller {self.source.queue} -> {self.function}: {type(exc).__name__}: {exc}")
                    time.sleep(1)

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        event = {"Records": [sqs_record(m, self.queue_arn) for m in messages]}
        result = self.invoker.invoke(self.function, event)
        by_id = {m["MessageId"]: m for m in messages}
        if result.function_error:
            failed = set(by_id)
        elif self.source.report_failures and isinstance(result.payload, dict):
            failed = {f["itemIdentifier"] for f in result.payload.get("batchItemFailures") or []}
            unknown = failed - set(by_id)
            if unknown:  # Lambda treats an unknown identifier as a failure of the whole batch
                failed = set(by_id)
        else:
            failed = set()
        done = [m for mid, m in by_id.items() if mid not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        if failed and self.retry_visibility_s is not None:
            retry = [by_id[mid] for mid in failed]
            for start in range(0, len(retry), 10):
                chunk = retry[start : start + 10]
                self.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {
                            "Id": str(i),
                            "ReceiptHandle": m["ReceiptHandle"],
                            "VisibilityTimeout": self.retry_visibility_s,
                        }
                        for i, m in enumerate(chunk)
                    ],
                )
        self.log(
            f"invoked {self.function} with {len(messages)} SQS record(s) from {self.source.queue}: "
            f"{len(done)} done, {len(failed)} failed" + (" (function error)" if result.function_error else "")
        )


class ScheduleRunner(threading.Thread):
    def __init__(
        self,
        *,
        function: str,
        name: str,
        every_s: float,
        payload: str | None,
        invoker: Invoker,
        stop: threading.Event,
        log: Any,
    ) -> None:
        super().__init__(name=f"schedule-{function}-{name}", daemon=True)
        self.function, self.schedule_name, self.every_s = function, name, every_s
        self.payload = json.loads(payload) if payload else {}
        self.invoker, self.stop, self.log = invoker, stop, log

    def run(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                result = self.invoker.invoke(self.function, self.payload)
                self.log(f"schedule {self.schedule_name} invoked {self.function}: {json.dumps(result.payload)[:200]}")
            except Exception as exc:
                self.log(f"schedule {self.schedule_name} -> {self.function}: {type(exc).__name__}: {exc}")
