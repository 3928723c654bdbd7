"""Writing the usage log: one JSON line per record on the function's standard output.

Lambda sends a function's output to its CloudWatch Logs group; a subscription filter there
(``{ $.usage = "*" }``) streams the records to Kinesis Data Firehose, which writes them to S3
under ``usage/YYYY/MM/DD/HH/`` (template.yaml). So logging is a ``write`` to a pipe on the
request's thread: no network call, nothing that a slow or failing stream can stall, and nothing
queued in memory that a frozen or recycled environment could lose::

    usage_log.emit(record)          # SearchRecord, FeedbackRecord or IngestRecord

It is a standard ``logging`` logger (``imgsearch-usage``, not propagated): the local stack adds
a handler that emulates the CloudWatch Logs path (``imgsearch_devkit.local.usage_stream``), and
tests add one to read what was logged.
"""

from __future__ import annotations

import logging
import sys

from imgsearch.usage.records import Record

LOGGER_NAME = "imgsearch-usage"
"""Outside the ``imgsearch`` hierarchy: the library's own loggers (Powertools JSON lines) are
neither its parents nor its children, so neither side's handlers see the other's records."""


class StdoutLine(logging.Handler):
    """The record's message as one line on ``sys.stdout`` as it is now (tests capture it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(record.getMessage() + "\n")
        except Exception:  # a log line must never fail the request that wrote it
            self.handleError(record)


def usage_logger() -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, StdoutLine) for h in logger.handlers):
        logger.addHandler(StdoutLine())
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


class UsageLog:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or usage_logger()

    def emit(self, record: Record) -> None:
        try:
            self._logger.info(record.to_json())
        except Exception:  # a record that cannot be written is lost, the answer is not
            logging.getLogger(__name__).exception("usage record not written")


usage_log = UsageLog()
