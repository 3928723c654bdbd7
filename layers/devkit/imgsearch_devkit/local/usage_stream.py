"""The usage log's way to S3 without AWS: what Lambda and CloudWatch Logs do for a deployed stack.

On AWS, a function's usage records are lines on its output; Lambda sends them to the function's
log group, whose subscription filter streams them to Firehose (template.yaml). Here the handlers
run in-process, so ``UsageStream`` is that capture: a handler on the ``imgsearch-usage`` logger
that queues each record and, on a thread of its own, puts them into the emitting function's log
group on moto (``PutLogEvents``), whose subscription filter sends them on to moto's Firehose and
so to the bucket, as gzipped CloudWatch Logs envelopes (``imgsearch.usage.reader`` reads both
forms). A slow or failing moto only fills the queue; past ``max_queued`` records are dropped and
counted, as a request must never wait for its log::

    stream = UsageStream(logs, {"search": "/aws/lambda/s/query", "feedback": "/aws/lambda/s/query",
                                "ingest": "/aws/lambda/s/embed"})
    with stream.installed():
        ...                     # handlers emit records
        stream.flush()          # every queued record is in moto (tests)
    stream.dropped, stream.failed
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

from imgsearch.usage.log import LOGGER_NAME
from imgsearch.usage.records import USAGE_FIELD

logger = logging.getLogger(__name__)

STREAM_NAME = "local/usage"
MAX_BATCH = 1000
"""Events per ``PutLogEvents`` (the API takes up to 10,000 or 1 MB)."""


class UsageStream(logging.Handler):
    def __init__(
        self,
        logs: Any,
        groups: Mapping[str, str],
        max_queued: int = 10_000,
        linger_seconds: float = 0.2,
    ) -> None:
        super().__init__()
        self.logs = logs
        self.groups = dict(groups)
        """Record kind (``usage`` field) -> the log group of the function that writes it."""
        self.linger_seconds = linger_seconds
        self.dropped = 0
        self.failed = 0
        self._queue: queue.Queue[tuple[str, int, str] | None] = queue.Queue(max_queued)
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        try:
            kind = json.loads(message).get(USAGE_FIELD)
        except (ValueError, AttributeError):
            return
        group = self.groups.get(kind)
        if group is None:
            return
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait((group, int(record.created * 1000), message))
        except queue.Full:
            self.dropped += 1
            self._done(1)

    def _done(self, count: int) -> None:
        with self._idle:
            self._pending -= count
            if self._pending == 0:
                self._idle.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record emitted so far is in moto (or dropped); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _send(self, batch: list[tuple[str, int, str]]) -> None:
        by_group: dict[str, list[dict[str, Any]]] = {}
        for group, timestamp, message in batch:
            by_group.setdefault(group, []).append({"timestamp": timestamp, "message": message})
        for group, events in by_group.items():
            events.sort(key=lambda event: event["timestamp"])  # threads emit out of order
            try:
                self.logs.put_log_events(
                    logGroupName=group, logStreamName=STREAM_NAME, logEvents=events
                )
            except Exception:
                self.failed += len(events)
                logger.exception("usage records not delivered to %s", group)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            deadline = time.monotonic() + self.linger_seconds
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._send(batch)
            self._done(len(batch))
            if stop:
                return

    @contextmanager
    def installed(self) -> Iterator[UsageStream]:
        """Create the log streams, start the sender, attach to the usage logger; undo all."""
        for group in set(self.groups.values()):
            with suppress(self.logs.exceptions.ResourceAlreadyExistsException):
                self.logs.create_log_stream(logGroupName=group, logStreamName=STREAM_NAME)
        self._thread = threading.Thread(target=self._run, name="imgsearch-usage", daemon=True)
        self._thread.start()
        usage = logging.getLogger(LOGGER_NAME)
        usage.addHandler(self)
        try:
            yield self
        finally:
            usage.removeHandler(self)
            self.flush()
            self._queue.put(None)
            self._thread.join(timeout=10)
