"""S3 notifications delivered through SQS, parsed into typed object events.

S3 puts one JSON document in each SQS message: an ``s3:TestEvent`` (sent once, when the
notification is configured) or ``{"Records": [...]}`` whose object keys are URL-encoded the way
HTML forms are (``+`` is a space, ``%2B`` a plus, UTF-8 percent-escapes)::

    messages = parse_batch(sqs_event, prefix="images/", bucket="my-bucket")
    for message in messages:
        message.events     # ObjectEvent per usable record: put or delete, decoded key, sequencer
        message.skipped    # Skip per record (or message) that is not ours, with the reason

Nothing here raises on bad input: a message that is not an S3 notification becomes a ``Skip``
with reason ``malformed``, because retrying it could never succeed.
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
    if bucket and event_bucket != bucket:
        return Skip(message_id, OTHER_BUCKET, key, event_bucket)
    if not key.startswith(prefix):
        return Skip(message_id, OUTSIDE_PREFIX, key)
    if not is_image_key(key, prefix):
        return Skip(message_id, NOT_AN_IMAGE_KEY, key)
    obj = record.s3.get_object
    sequencer = obj.get("sequencer")
    if not sequencer:
        return Skip(message_id, MALFORMED, key, "record has no sequencer")
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


def parse_message(record: SQSRecord, prefix: str, bucket: str = "") -> Message:
    """The S3 notification in one SQS message."""
    message_id = record.message_id
    try:
        body: Any = record.json_body
    except (TypeError, ValueError) as exc:
        return Message(
            message_id, message_id, skipped=[Skip(message_id, MALFORMED, detail=str(exc))]
        )
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
