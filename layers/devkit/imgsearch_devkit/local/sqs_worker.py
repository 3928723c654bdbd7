"""Lambda's SQS event source mapping, emulated: poll a queue, call a handler with batches.

What it reproduces, because the embed handler depends on it:

- long polling, then a batching window: messages accumulate until ``batch_size`` or until
  ``batch_window`` seconds passed since the first one (``MaximumBatchingWindowInSeconds``);
- the event is Lambda's SQS event (``Records`` with ``messageId``, ``receiptHandle``,
  ``attributes.ApproximateReceiveCount``, ``eventSourceARN`` ...);
- ``ReportBatchItemFailures``: successful records are deleted, the ones named in
  ``batchItemFailures`` stay in flight; an exception, or a malformed response, fails the batch;
- nothing else: failed messages come back after the queue's visibility timeout and SQS itself
  moves them to the DLQ after ``maxReceiveCount`` receives (moto implements the redrive policy).

Usage::

    mapping = SqsEventSourceMapping(sqs, queue_url, queue_arn, embed_handler, batch_size=10)
    mapping.start()
    ...
    mapping.stop()      # finishes the batch in hand, then returns
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imgsearch_devkit.local.lambda_context import LambdaContext

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class MappingCounters:
    """What the mapping did so far (read by ``wait_idle`` and the demo's progress line)."""

    batches: int = 0
    records: int = 0
    succeeded: int = 0
    failed: int = 0
    handler_errors: int = 0


def _attribute_to_lambda(value: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {
        "dataType": value["DataType"],
        "stringListValues": value.get("StringListValues", []),
        "binaryListValues": [
            base64.b64encode(v).decode("ascii") for v in value.get("BinaryListValues", [])
        ],
    }
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    return converted


def to_lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One ``ReceiveMessage`` message as a record of Lambda's SQS event."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _attribute_to_lambda(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_ids(response: Any, records: list[dict[str, Any]]) -> set[str]:
    """Message ids to keep, per Lambda's partial batch response rules.

    ``None``/``{}``/empty list: all succeeded. An item without a known ``itemIdentifier`` or a
    response of the wrong shape fails the whole batch, as Lambda does.
    """
    every = {r["messageId"] for r in records}
    if response is None:
        return set()
    if not isinstance(response, dict):
        return every
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return every
    ids: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in every:
            return every
        ids.add(identifier)
    return ids


class SqsEventSourceMapping:
    """One poller thread feeding ``handler`` with batches from ``queue_url``."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        handler: Handler,
        batch_size: int = 10,
        batch_window: float = 1.0,
        wait_seconds: int = 2,
        function_name: str = "embed",
        timeout_seconds: int = 60,
        region: str = "us-east-1",
    ) -> None:
        # Lambda long-polls for up to 20 s; a shorter wait only adds empty receives and keeps
        # Ctrl-C prompt (stop() waits for the receive in flight).
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.handler = handler
        self.batch_size = batch_size
        self.batch_window = batch_window
        self.wait_seconds = wait_seconds
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        self.region = region
        self.counters = MappingCounters()
        self._stop = threading.Event()
        self._busy = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="imgsearch-sqs-esm", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    @property
    def busy(self) -> bool:
        """A batch is being collected or handled right now."""
        return self._busy.is_set()

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(10, count),
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return response.get("Messages", [])

    def poll_once(self) -> int:
        """Collect one batch (long poll + batching window), hand it over; records handled."""
        messages = self._receive(self.batch_size, self.wait_seconds)
        if not messages:
            return 0
        self._busy.set()
        try:
            deadline = time.monotonic() + self.batch_window
            while len(messages) < self.batch_size and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                more = self._receive(self.batch_size - len(messages), min(int(left + 0.999), 20))
                messages.extend(more)
            self.deliver(messages)
        finally:
            self._busy.clear()
        return len(messages)

    def deliver(self, messages: list[dict[str, Any]]) -> None:
        records = [to_lambda_record(m, self.queue_arn, self.region) for m in messages]
        context = LambdaContext(
            self.function_name, timeout_seconds=self.timeout_seconds, region=self.region
        )
        self.counters.batches += 1
        self.counters.records += len(records)
        try:
            response = self.handler({"Records": records}, context)
            keep = failed_ids(response, records)
        except Exception:
            logger.exception(
                "embed handler failed: the batch of %d returns to the queue", len(records)
            )
            self.counters.handler_errors += 1
            keep = {r["messageId"] for r in records}
        done = [r for r in records if r["messageId"] not in keep]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            result = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)
                ],
            )
            for failure in result.get("Failed", []):
                logger.warning("could not delete a handled message: %s", failure)
        self.counters.succeeded += len(done)
        self.counters.failed += len(keep)
        if keep:
            logger.warning(
                "%d of %d records failed; SQS will redeliver them", len(keep), len(records)
            )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stop.is_set():
                    return
                logger.exception("polling %s failed; retrying in 1 s", self.queue_url)
                self._stop.wait(1.0)
