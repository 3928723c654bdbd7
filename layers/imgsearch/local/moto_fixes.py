"""Where moto's server differs from AWS in ways our code or its users would notice, fixed.

- S3 event notifications: S3 puts ``s3.object.sequencer`` (hex; for one key, a later event has
  a greater value once both are left-padded to one length) in every object event, and the embed
  function orders writes by it. moto leaves it out (and ``versionId`` on versioned buckets), so
  the local stack wraps the one function that builds them, ``moto.s3.notifications.
  _get_s3_event``.
- Deleting from a versioned bucket (the template turns versioning on): S3 sends
  ``ObjectRemoved:DeleteMarkerCreated``; moto sends nothing. The wrapper around
  ``S3Backend._set_delete_marker`` sends it. Remove events carry no ``size``/``eTag``, as S3's.
- Step Functions ``StartExecution`` without a ``name``: AWS generates a UUID; moto's interpreter
  backend names every such execution ``None``, so the second one fails with
  ``ExecutionAlreadyExists``. The wrapper supplies the UUID.

All only while the local stack runs::

    with moto_fixes():
        s3.put_object(...)                      # the notification carries s3.object.sequencer
        sfn.start_execution(stateMachineArn=arn)  # twice: two executions
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

_lock = threading.Lock()
_last = 0


def next_sequencer() -> str:
    """Strictly increasing across the process: nanoseconds, bumped on a tie; 18 hex digits."""
    global _last
    with _lock:
        _last = max(_last + 1, time.time_ns())
        return f"{_last:018X}"


@contextmanager
def s3_event_sequencers() -> Iterator[None]:
    from moto.s3 import notifications

    original = notifications._get_s3_event

    def with_sequencer(event_name: str, bucket: Any, key: Any, notification_id: str) -> Any:
        event = original(event_name, bucket, key, notification_id)
        for record in event["Records"]:
            obj = record["s3"]["object"]
            obj.setdefault("sequencer", next_sequencer())
            if event_name.startswith("s3:ObjectRemoved"):
                obj.pop("size", None)
                obj.pop("eTag", None)
            version = getattr(key, "version_id", None)
            if version and version != "null":
                obj.setdefault("versionId", version)
        return event

    notifications._get_s3_event = with_sequencer
    try:
        yield
    finally:
        notifications._get_s3_event = original


@dataclass(frozen=True)
class _DeleteMarkerView:
    """What ``_get_s3_event`` reads from a key, for a delete marker (which has no body)."""

    name: str
    version_id: str
    etag: str = ""
    size: int = 0


@contextmanager
def delete_marker_events() -> Iterator[None]:
    from moto.s3 import notifications
    from moto.s3.models import S3Backend

    original = S3Backend._set_delete_marker

    def set_delete_marker(self: Any, bucket_name: str, key_name: str) -> Any:
        marker = original(self, bucket_name, key_name)
        notifications.send_event(
            self.account_id,
            notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_MARKER_CREATED_EVENT,
            self.get_bucket(bucket_name),
            _DeleteMarkerView(marker.name, marker.version_id),
        )
        return marker

    S3Backend._set_delete_marker = set_delete_marker  # type: ignore[method-assign]
    try:
        yield
    finally:
        S3Backend._set_delete_marker = original  # type: ignore[method-assign]


@contextmanager
def execution_names() -> Iterator[None]:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.start_execution

    def start_execution(self: Any, state_machine_arn: str, name: Any = None, *args: Any) -> Any:
        return original(self, state_machine_arn, name or str(uuid.uuid4()), *args)

    StepFunctionsParserBackend.start_execution = start_execution  # type: ignore[method-assign]
    try:
        yield
    finally:
        StepFunctionsParserBackend.start_execution = original  # type: ignore[method-assign]


@contextmanager
def moto_fixes() -> Iterator[None]:
    with ExitStack() as stack:
        stack.enter_context(s3_event_sequencers())
        stack.enter_context(delete_marker_events())
        stack.enter_context(execution_names())
        yield
