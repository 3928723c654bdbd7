"""S3 events delivered through SQS, parsed into typed object events.

Two shapes arrive on the ingest queue, one JSON document per SQS message:

- an S3 event notification (the stack's own bucket): an ``s3:TestEvent`` (sent once, when the
  notification is configured) or ``{"Records": [...]}`` whose object keys are URL-encoded the
  way HTML forms are (``+`` is a space, ``%2B`` a plus, UTF-8 percent-escapes);
- an Amazon EventBridge event from S3 (a bucket the user already has, through the stack's rule):
  ``{"source": "aws.s3", "detail-type": "Object Created" | "Object Deleted", "detail": {...}}``
  with one object each. Its ``detail.object.key`` is the key itself, not URL-encoded: a real
  event shows ``raw/2023-08-08T14:03:40.532432.zip`` where a notification writes ``%3A``, and
  moto (``moto/s3/notifications.py``) sends ``key.name`` there but ``quote_plus(key.name)`` in
  notifications. Decoding it would turn a literal ``+`` into a space.

Both carry S3's ``sequencer``, so both become the same ``ObjectEvent``, ordered the same way::

    messages = parse_batch(sqs_event, prefix="images/", bucket="my-bucket")
    for message in messages:
        message.events     # ObjectEvent per usable record: put or delete, decoded key, sequencer
        message.skipped    # Skip per record (or message) that is not ours, with the reason

Nothing here raises on bad input: a message that is neither becomes a ``Skip`` with reason
``malformed``, because retrying it could never succeed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from aws_lambda_powertools.utilities.data_classes import S3Event, SQSEvent
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from imgsearch.core.keys import decode_event_key, is_image_key
from imgsearch.store import pad_sequencer

Action = Literal["put", "delete"]

# Skip reasons: stable codes, used as the ``Reason`` dimension of the ``EventsSkipped`` metric.
TEST_EVENT = "test_event"
OUTSIDE_PREFIX = "outside_prefix"
NOT_AN_IMAGE_KEY = "not_an_image_key"
OTHER_BUCKET = "other_bucket"
UNSUPPORTED_EVENT = "unsupported_event"
MALFORMED = "malformed"

EVENTBRIDGE_SOURCE = "aws.s3"
EVENTBRIDGE_ACTIONS: dict[str, Action] = {"Object Created": "put", "Object Deleted": "delete"}
"""The ``detail-type`` values the stack's EventBridge rule forwards, and what each one is."""


@dataclass(frozen=True)
class ObjectEvent:
    """One ``ObjectCreated:*`` or ``ObjectRemoved:*`` record, key decoded, sequencer padded."""

    message_id: str
    action: Action
    bucket: str
    key: str
    sequencer: str
    event_name: str
    event_time: str = ""
    etag: str = ""
    size: int | None = None
    version_id: str | None = None
    request_id: str = ""


@dataclass(frozen=True)
class Skip:
    """A record (or a whole message) that is deliberately not processed."""

    message_id: str
    reason: str
    key: str = ""
    detail: str = ""


@dataclass
class Message:
    """One SQS message: its object events and what was skipped in it."""

    message_id: str
    correlation_id: str
    """The S3 request id of the first record, else the SQS message id."""
    events: list[ObjectEvent] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def action_of(event_name: str) -> Action | None:
    if event_name.startswith("ObjectCreated:"):
        return "put"
    if event_name.startswith("ObjectRemoved:"):
        return "delete"
    return None


def _not_ours(
    message_id: str, key: str, event_bucket: str, sequencer: Any, prefix: str, bucket: str
) -> Skip | None:
    """Why an event of either shape is skipped (another bucket, outside the prefix, not an
    image key, no sequencer to order it by), or ``None``."""
    if bucket and event_bucket != bucket:
        return Skip(message_id, OTHER_BUCKET, key, event_bucket)
    if not key.startswith(prefix):
        return Skip(message_id, OUTSIDE_PREFIX, key)
    if not is_image_key(key, prefix):
        return Skip(message_id, NOT_AN_IMAGE_KEY, key)
    if not sequencer or not isinstance(sequencer, str):
        return Skip(message_id, MALFORMED, key, "the event has no sequencer")
    return None


def parse_record(
    message_id: str, record: S3EventRecord, prefix: str, bucket: str = ""
) -> ObjectEvent | Skip:
    """One S3 record to an event, or the reason it is skipped."""
    try:
        raw_key = record.s3.get_object.key
        key = decode_event_key(raw_key)
    except (KeyError, TypeError, UnicodeDecodeError) as exc:
        return Skip(message_id, MALFORMED, detail=f"bad object key: {exc!r}")
    action = action_of(record.get("eventName", ""))
    if action is None:
        return Skip(message_id, UNSUPPORTED_EVENT, key, record.get("eventName", ""))
    event_bucket = record.s3.bucket.name
    obj = record.s3.get_object
    sequencer = obj.get("sequencer")
    refused = _not_ours(message_id, key, event_bucket, sequencer, prefix, bucket)
    if refused:
        return refused
    return ObjectEvent(
        message_id=message_id,
        action=action,
        bucket=event_bucket,
        key=key,
        sequencer=pad_sequencer(sequencer),
        event_name=record.event_name,
        event_time=record.get("eventTime", ""),
        etag=obj.etag,
        size=int(obj["size"]) if obj.get("size") is not None else None,
        version_id=obj.version_id or None,
        request_id=(record.get("responseElements") or {}).get("x-amz-request-id", ""),
    )


def _is_eventbridge(body: Any) -> bool:
    return isinstance(body, dict) and body.get("source") == EVENTBRIDGE_SOURCE


def parse_eventbridge(
    message_id: str, body: dict[str, Any], prefix: str, bucket: str = ""
) -> ObjectEvent | Skip:
    """One EventBridge S3 event to an event, or the reason it is skipped::

    parse_eventbridge("m-1", {"source": "aws.s3", "detail-type": "Object Created",
                              "detail": {"object": {"key": "images/a.jpg", ...}, ...}},
                      prefix="images/")
    """
    detail = body.get("detail")
    obj = detail.get("object") if isinstance(detail, dict) else None
    if (
        not isinstance(detail, dict)
        or not isinstance(obj, dict)
        or not isinstance(obj.get("key"), str)
    ):
        return Skip(message_id, MALFORMED, detail="EventBridge event without detail.object.key")
    key: str = obj["key"]  # the key itself, not URL-encoded (module docstring)
    detail_type = str(body.get("detail-type", ""))
    action = EVENTBRIDGE_ACTIONS.get(detail_type)
    if action is None:
        return Skip(message_id, UNSUPPORTED_EVENT, key, detail_type)
    event_bucket = str((detail.get("bucket") or {}).get("name", ""))
    sequencer = obj.get("sequencer")
    refused = _not_ours(message_id, key, event_bucket, sequencer, prefix, bucket)
    if refused:
        return refused
    version = obj.get("version-id")
    size = obj.get("size")
    return ObjectEvent(
        message_id=message_id,
        action=action,
        bucket=event_bucket,
        key=key,
        sequencer=pad_sequencer(sequencer),
        # "Object Created:PutObject", "Object Deleted:DeleteObject": what, through which API.
        event_name=f"{detail_type}:{detail.get('reason', '')}",
        event_time=str(body.get("time", "")),
        # A delete carries neither, as a notification's ObjectRemoved record does not.
        etag=str(obj.get("etag") or "") if action == "put" else "",
        size=int(size) if size is not None and action == "put" else None,
        # "null" names an object written while versioning was off (or never on): the event
        # means the current object, which the ETag (If-Match) pins.
        version_id=str(version) if version and version != "null" else None,
        request_id=str(detail.get("request-id") or ""),
    )


def _eventbridge_message(
    message_id: str, body: dict[str, Any], prefix: str, bucket: str
) -> Message:
    try:
        parsed = parse_eventbridge(message_id, body, prefix, bucket)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        parsed = Skip(message_id, MALFORMED, detail=f"{type(exc).__name__}: {exc}")
    detail = body.get("detail")
    request_id = detail.get("request-id") if isinstance(detail, dict) else None
    message = Message(message_id, str(request_id or message_id))
    if isinstance(parsed, ObjectEvent):
        message.events.append(parsed)
    else:
        message.skipped.append(parsed)
    return message


def parse_message(record: SQSRecord, prefix: str, bucket: str = "") -> Message:
    """The S3 notification or EventBridge S3 event in one SQS message."""
    message_id = record.message_id
    try:
        body: Any = record.json_body
    except (TypeError, ValueError) as exc:
        return Message(
            message_id, message_id, skipped=[Skip(message_id, MALFORMED, detail=str(exc))]
        )
    if _is_eventbridge(body):
        return _eventbridge_message(message_id, body, prefix, bucket)
    if isinstance(body, dict) and body.get("Event") == "s3:TestEvent":
        request_id = str(body.get("RequestId") or message_id)
        return Message(message_id, request_id, skipped=[Skip(message_id, TEST_EVENT)])
    if not isinstance(body, dict) or not isinstance(body.get("Records"), list):
        detail = "body is not an S3 event notification"
        return Message(message_id, message_id, skipped=[Skip(message_id, MALFORMED, detail=detail)])
    request_ids = [
        (r.get("responseElements") or {}).get("x-amz-request-id") if isinstance(r, dict) else None
        for r in body["Records"]
    ]
    message = Message(message_id, next((r for r in request_ids if r), message_id))
    for s3_record in S3Event(body).records:
        try:
            parsed = parse_record(message_id, s3_record, prefix, bucket)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            parsed = Skip(message_id, MALFORMED, detail=f"{type(exc).__name__}: {exc}")
        if isinstance(parsed, ObjectEvent):
            message.events.append(parsed)
        else:
            message.skipped.append(parsed)
    if not message.events and not message.skipped:
        message.skipped.append(Skip(message_id, MALFORMED, detail="no records"))
    return message


def parse_batch(event: dict[str, Any], prefix: str, bucket: str = "") -> list[Message]:
    """Every message of Lambda's SQS batch event, in order."""
    return [parse_message(record, prefix, bucket) for record in SQSEvent(event).records]
