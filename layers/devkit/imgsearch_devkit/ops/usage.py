"""The usage log seen from the operator's side: joined searches and feedback for a window, the
monitor's reports, and running the monitor now.

::

    joined, stats = feedback_window(target, since, until)      # JoinedQuery list, JoinStats
    report = read_report(target)                               # the latest, or run=...
    summary = invoke_monitor(target, window_minutes=60)        # the monitor function's answer
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from imgsearch.core.clock import ISO_FORMAT
from imgsearch.monitor.run import LATEST_FILE, PICTURE_FILE, REPORT_FILE
from imgsearch.usage.join import JoinedQuery, JoinStats, join_window
from imgsearch.usage.reader import UsageReader
from imgsearch_devkit.target import Target


class UsageError(RuntimeError):
    """The monitor or its reports are missing or failed."""


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``2026-12-01``, ``2026-12-01T10:00``, with or without ``Z``), UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def feedback_window(
    target: Target, since: datetime, until: datetime
) -> tuple[list[JoinedQuery], JoinStats]:
    """The searches of ``[since, until)`` with their feedback, however late it came (within
    the feedback's lifetime, ``IMGSEARCH_FEEDBACK_MAX_AGE_SECONDS``)."""
    settings = target.settings()
    reader = UsageReader(target.client("s3"), target.bucket, settings.usage.prefix)
    grace = timedelta(seconds=settings.usage.feedback_max_age_seconds)
    return join_window(reader, since, until, min(grace, datetime.now(UTC) - until))


def read_report(target: Target, run: str | None = None) -> tuple[dict[str, Any], str | None]:
    """A monitor report (the latest when ``run`` is None) and its picture, if it has one."""
    s3 = target.client("s3")
    prefix = target.settings().monitor.prefix
    key = f"{prefix}{run}/{REPORT_FILE}" if run else prefix + LATEST_FILE
    try:
        report = json.loads(s3.get_object(Bucket=target.bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        raise UsageError(
            f"no monitor report at s3://{target.bucket}/{key}"
            + ("" if run else ": run `imgsearch monitor run` first")
        ) from None
    try:
        picture_key = f"{prefix}{report['run']}/{PICTURE_FILE}"
        svg = s3.get_object(Bucket=target.bucket, Key=picture_key)["Body"].read().decode()
    except s3.exceptions.NoSuchKey:
        svg = None
    return report, svg


def invoke_monitor(
    target: Target, now: datetime | None = None, window_minutes: int | None = None
) -> dict[str, Any]:
    """Run the monitor function once, now; its answer (the report's key and flags)."""
    if not target.monitor_function:
        raise UsageError("this stack has no monitor function (MonitorFunctionName output)")
    event: dict[str, Any] = {"trigger": "manual"}
    if now is not None:
        event["now"] = now.strftime(ISO_FORMAT)
    if window_minutes:
        event["window_minutes"] = window_minutes
    answer = target.client("lambda").invoke(
        FunctionName=target.monitor_function, Payload=json.dumps(event).encode()
    )
    payload = json.loads(answer["Payload"].read() or b"null")
    if answer.get("FunctionError"):
        message = payload.get("errorMessage") if isinstance(payload, dict) else payload
        raise UsageError(f"the monitor failed: {message}")
    return payload
