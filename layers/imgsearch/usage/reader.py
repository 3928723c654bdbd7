"""Reading the usage log back from S3, for a time window.

Firehose writes objects under ``<prefix>YYYY/MM/DD/HH/`` by the hour they arrived (UTC). An
object holds newline-delimited records when the stream extracts the log messages (as deployed:
template.yaml), or gzipped CloudWatch Logs envelopes, concatenated, when it does not (moto's
Firehose, or a stream changed by hand): both are read. Records are kept by their own ``time``,
so the hours either side of the window are listed too (a record reaches Firehose a little after
it was written)::

    reader = UsageReader(s3, bucket, "usage/")
    for record in reader.records(start, end):   # SearchRecord | FeedbackRecord | IngestRecord
        ...
    reader.stats.objects, reader.stats.malformed
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from imgsearch.core.clock import ISO_FORMAT
from imgsearch.usage.records import USAGE_FIELD, Record, RecordError, parse_record

logger = logging.getLogger(__name__)

ARRIVAL_SLACK = timedelta(hours=1)
"""Hours listed either side of a window: Firehose buffers up to 15 minutes before it writes."""
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class ReadStats:
    objects: int = 0
    records: int = 0
    malformed: int = 0
    """Lines that looked like usage records but did not parse (logged, then skipped)."""


def folders(prefix: str, start: datetime, end: datetime) -> list[str]:
    """The ``prefix`` folders Firehose may have written records of ``[start, end)`` to: a day's
    folder for each whole day the window spans, hours at its two ends (a 30-day window is about
    30 listings, not 720)."""
    hour = (start - ARRIVAL_SLACK).replace(minute=0, second=0, microsecond=0)
    last = end + ARRIVAL_SLACK
    listed = []
    while hour <= last:
        if hour.hour == 0 and hour + timedelta(hours=23) <= last:
            listed.append(f"{prefix}{hour:%Y/%m/%d}/")
            hour += timedelta(days=1)
        else:
            listed.append(f"{prefix}{hour:%Y/%m/%d/%H}/")
            hour += timedelta(hours=1)
    return listed


def _values(text: str) -> Iterator[Any]:
    """Every JSON value in ``text``: one per line, or concatenated with nothing between."""
    decoder = json.JSONDecoder()
    position, size = 0, len(text)
    while position < size:
        while position < size and text[position].isspace():
            position += 1
        if position >= size:
            return
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            newline = text.find("\n", position)
            position = size if newline < 0 else newline + 1
            yield None
            continue
        yield value


def _messages(body: bytes) -> Iterator[Any]:
    """The parsed log messages of one object, unwrapping CloudWatch Logs envelopes."""
    if body[:2] == _GZIP_MAGIC:
        body = gzip.decompress(body)
    for value in _values(body.decode("utf-8", errors="replace")):
        if isinstance(value, dict) and "logEvents" in value:
            for event in value["logEvents"]:
                message = event.get("message", "")
                try:
                    yield json.loads(message)
                except json.JSONDecodeError:
                    continue  # another line of the function's log (START, REPORT, text)
        else:
            yield value


class UsageReader:
    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.stats = ReadStats()

    def keys(self, start: datetime, end: datetime) -> Iterator[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for folder in folders(self.prefix, start, end):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
                for item in page.get("Contents", []):
                    yield item["Key"]

    def records(self, start: datetime, end: datetime) -> Iterator[Record]:
        """The records written in ``[start, end)`` (aware datetimes, UTC)."""
        low, high = start.strftime(ISO_FORMAT), end.strftime(ISO_FORMAT)
        for key in self.keys(start, end):
            self.stats.objects += 1
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            for value in _messages(body):
                if not isinstance(value, dict) or USAGE_FIELD not in value:
                    continue
                try:
                    record = parse_record(value)
                except RecordError as exc:
                    self.stats.malformed += 1
                    logger.warning("usage log %s: %s", key, exc)
                    continue
                if low <= record.time < high:
                    self.stats.records += 1
                    yield record
