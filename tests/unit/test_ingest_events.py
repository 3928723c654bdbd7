"""Parsing S3 notifications delivered through SQS (fixtures in the exact AWS shape)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from imgsearch.ingest.errors import is_transient
from imgsearch.ingest.events import (
    MALFORMED,
    NOT_AN_IMAGE_KEY,
    OTHER_BUCKET,
    OUTSIDE_PREFIX,
    TEST_EVENT,
    UNSUPPORTED_EVENT,
    ObjectEvent,
    parse_batch,
)
from imgsearch.ingest.pipeline import DUPLICATE, SUPERSEDED, newest_per_key
from imgsearch.store import pad_sequencer

EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "events"
SPECIAL_KEY = "images/red car+1 café 日本.jpg"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def sqs_event(*bodies: Any) -> dict[str, Any]:
    """The batch fixture's first record as a template, one record per body."""
    template = fixture("sqs-s3-batch.json")["Records"][0]
    records = []
    for number, body in enumerate(bodies):
        record = copy.deepcopy(template)
        record["messageId"] = f"msg-{number}"
        record["body"] = body if isinstance(body, str) else json.dumps(body)
        records.append(record)
    return {"Records": records}


def put_with_key(raw_key: str, **object_fields: Any) -> dict[str, Any]:
    body = fixture("s3-put.json")
    body["Records"][0]["s3"]["object"]["key"] = raw_key
    body["Records"][0]["s3"]["object"].update(object_fields)
    return body


def test_batch_fixture_parses_every_kind_of_message() -> None:
    messages = parse_batch(fixture("sqs-s3-batch.json"), prefix="images/")
    assert len(messages) == 5
    test_event, put, delete, outside, not_image = messages

    assert not test_event.events
    assert [s.reason for s in test_event.skipped] == [TEST_EVENT]
    assert test_event.correlation_id == "5582815E1AEA5ADF"

    assert not put.skipped
    (event,) = put.events
    assert event == ObjectEvent(
        message_id="059f36b4-87a3-44ab-83d2-661975830a7d",
        action="put",
        bucket="imgsearch-images",
        key=SPECIAL_KEY,
        sequencer=pad_sequencer("0055AED6DCD90281E5"),
        event_name="ObjectCreated:Put",
        event_time="2024-05-04T10:15:30.123Z",
        etag="d41d8cd98f00b204e9800998ecf8427e",
        size=1024,
        version_id=None,
        request_id="C3D13FE58DE4C810",
    )
    assert put.correlation_id == "C3D13FE58DE4C810"

    (removed,) = delete.events
    assert (removed.action, removed.key, removed.size, removed.etag) == (
        "delete",
        SPECIAL_KEY,
        None,
        "",
    )
    assert removed.sequencer > event.sequencer

    assert [(s.reason, s.key) for s in outside.skipped] == [
        (OUTSIDE_PREFIX, "docs/readme first.jpg")
    ]
    assert [(s.reason, s.key) for s in not_image.skipped] == [
        (NOT_AN_IMAGE_KEY, "images/notes (2024).txt")
    ]


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("images/a+b.jpg", "images/a b.jpg"),
        ("images/a%2Bb.jpg", "images/a+b.jpg"),
        ("images/a%2B+b%2520.png", "images/a+ b%20.png"),
        ("images/caf%C3%A9/%E6%97%A5%E6%9C%AC.webp", "images/café/日本.webp"),
        ("images%2Fencoded-slash.jpeg", "images/encoded-slash.jpeg"),
        ("images/%F0%9F%93%B7+photo.JPG", "images/📷 photo.JPG"),
    ],
)
def test_keys_are_decoded_as_s3_encodes_them(raw: str, decoded: str) -> None:
    (message,) = parse_batch(sqs_event(put_with_key(raw)), prefix="images/")
    assert [e.key for e in message.events] == [decoded]


def test_invalid_percent_escape_is_malformed_not_an_error() -> None:
    (message,) = parse_batch(sqs_event(put_with_key("images/bad%FF.jpg")), prefix="images/")
    assert not message.events
    assert [s.reason for s in message.skipped] == [MALFORMED]


@pytest.mark.parametrize(
    "body",
    ["not json at all", json.dumps(["a", "list"]), json.dumps({"Message": "an SNS envelope"})],
)
def test_bodies_that_are_not_s3_notifications_are_skipped_as_malformed(body: str) -> None:
    (message,) = parse_batch(sqs_event(body), prefix="images/")
    assert not message.events
    assert [s.reason for s in message.skipped] == [MALFORMED]
    assert message.correlation_id == "msg-0"


def test_record_without_sequencer_is_malformed() -> None:
    body = put_with_key("images/a.jpg")
    del body["Records"][0]["s3"]["object"]["sequencer"]
    (message,) = parse_batch(sqs_event(body), prefix="images/")
    assert [s.reason for s in message.skipped] == [MALFORMED]


def test_prefix_extension_event_name_and_bucket_filters() -> None:
    tagging = put_with_key("images/a.jpg")
    tagging["Records"][0]["eventName"] = "ObjectTagging:Put"
    folder = put_with_key("images/folder/")
    no_extension = put_with_key("images/README")
    other_bucket = put_with_key("images/a.jpg")
    other_bucket["Records"][0]["s3"]["bucket"]["name"] = "someone-else"
    prefix_lookalike = put_with_key("images-old/a.jpg")
    messages = parse_batch(
        sqs_event(tagging, folder, no_extension, other_bucket, prefix_lookalike),
        prefix="images/",
        bucket="imgsearch-images",
    )
    assert [[s.reason for s in m.skipped] for m in messages] == [
        [UNSUPPORTED_EVENT],
        [NOT_AN_IMAGE_KEY],
        [NOT_AN_IMAGE_KEY],
        [OTHER_BUCKET],
        [OUTSIDE_PREFIX],
    ]
    assert all(not m.events for m in messages)


def test_versioned_bucket_fields_and_delete_marker() -> None:
    body = fixture("s3-delete.json")
    body["Records"][0]["eventName"] = "ObjectRemoved:DeleteMarkerCreated"
    body["Records"][0]["s3"]["object"]["versionId"] = "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"
    put = put_with_key("images/v.png", versionId="096fKKXTRTtl3on89fVO.nfljtsv6qko")
    deleted, created = parse_batch(sqs_event(body, put), prefix="images/")
    assert deleted.events[0].action == "delete"
    assert deleted.events[0].version_id == "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"
    assert created.events[0].version_id == "096fKKXTRTtl3on89fVO.nfljtsv6qko"


def test_several_records_in_one_message() -> None:
    body = put_with_key("images/one.jpg")
    second = copy.deepcopy(body["Records"][0])
    second["s3"]["object"]["key"] = "other/two.jpg"
    third = copy.deepcopy(body["Records"][0])
    third["s3"]["object"]["key"] = "images/three.gif"
    body["Records"] += [second, third]
    (message,) = parse_batch(sqs_event(body), prefix="images/")
    assert [e.key for e in message.events] == ["images/one.jpg", "images/three.gif"]
    assert [s.reason for s in message.skipped] == [OUTSIDE_PREFIX]


def test_sequencers_of_different_lengths_compare_in_event_order() -> None:
    assert pad_sequencer("0055AED6DCD90281E5") < pad_sequencer("0055AED6DCD90281E5A0")
    assert pad_sequencer("FF") < pad_sequencer("0100")


def test_newest_event_per_key_wins_inside_a_batch() -> None:
    def event(message_id: str, key: str, sequencer: str, action: str = "put") -> ObjectEvent:
        return ObjectEvent(message_id, action, "b", key, pad_sequencer(sequencer), "x")  # type: ignore[arg-type]

    events = [
        event("m1", "images/a.jpg", "10"),
        event("m2", "images/a.jpg", "20", "delete"),
        event("m3", "images/a.jpg", "20", "delete"),
        event("m4", "images/b.jpg", "05"),
    ]
    newest, dropped = newest_per_key(events)
    assert [(e.message_id, e.key) for e in newest] == [
        ("m2", "images/a.jpg"),
        ("m4", "images/b.jpg"),
    ]
    assert sorted((o.message_id, o.reason) for o in dropped) == [
        ("m1", SUPERSEDED),
        ("m3", DUPLICATE),
    ]


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_client_error("SlowDown", 503), True),
        (_client_error("ProvisionedThroughputExceededException", 400), True),
        (_client_error("ThrottlingException", 400), True),
        (_client_error("InternalError", 500), True),
        (_client_error("Whatever", 502), True),
        (EndpointConnectionError(endpoint_url="https://s3.amazonaws.com"), True),
        (ReadTimeoutError(endpoint_url="https://s3.amazonaws.com"), True),
        (_client_error("AccessDenied", 403), False),
        (_client_error("NoSuchKey", 404), False),
        (_client_error("ValidationException", 400), False),
        (ValueError("bug"), False),
    ],
)
def test_transient_classification(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


# ---------------------------------------------------------------- EventBridge S3 events
# The fixtures follow AWS's "EventBridge event message structure" examples (Object Created,
# Object Deleted with a delete marker). The key is written as it is: EventBridge does not
# URL-encode it (imgsearch.ingest.events says how that was established).


def eventbridge(name: str = "eventbridge-s3-put.json", **object_fields: Any) -> dict[str, Any]:
    body = fixture(name)
    body["detail"]["object"].update(object_fields)
    return body


def test_an_eventbridge_put_is_the_same_object_event() -> None:
    (message,) = parse_batch(sqs_event(eventbridge()), prefix="images/", bucket="my-photos")
    assert not message.skipped
    assert message.events == [
        ObjectEvent(
            message_id="msg-0",
            action="put",
            bucket="my-photos",
            key=SPECIAL_KEY,
            sequencer=pad_sequencer("0055AED6DCD90281E5"),
            event_name="Object Created:PutObject",
            event_time="2024-05-04T10:15:30Z",
            etag="d41d8cd98f00b204e9800998ecf8427e",
            size=1024,
            version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
            request_id="N4N7GDK58NMKJ12R",
        )
    ]
    assert message.correlation_id == "N4N7GDK58NMKJ12R"


def test_an_eventbridge_delete_carries_no_size_or_etag() -> None:
    (message,) = parse_batch(sqs_event(fixture("eventbridge-s3-delete.json")), prefix="images/")
    (event,) = message.events
    assert (event.action, event.key, event.size, event.etag) == ("delete", SPECIAL_KEY, None, "")
    assert event.version_id == "1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF"
    assert event.event_name == "Object Deleted:DeleteObject"


@pytest.mark.parametrize(
    "key", ["images/a+b.jpg", "images/a%2Bb.jpg", "images/100%.png", "images/x:y=z&w.webp"]
)
def test_eventbridge_keys_are_taken_as_they_are(key: str) -> None:
    """What a notification would decode (``+``, ``%2B``) is the key itself here."""
    (message,) = parse_batch(sqs_event(eventbridge(key=key)), prefix="images/")
    assert [e.key for e in message.events] == [key]


def test_an_unversioned_bucket_reads_the_current_object() -> None:
    (message,) = parse_batch(sqs_event(eventbridge(**{"version-id": "null"})), prefix="images/")
    assert message.events[0].version_id is None
    body = eventbridge()
    del body["detail"]["object"]["version-id"]
    (message,) = parse_batch(sqs_event(body), prefix="images/")
    assert message.events[0].version_id is None


def test_eventbridge_events_are_filtered_as_notifications_are() -> None:
    tags = eventbridge()
    tags["detail-type"] = "Object Tags Added"
    other_bucket = eventbridge()
    other_bucket["detail"]["bucket"]["name"] = "someone-else"
    no_sequencer = eventbridge()
    del no_sequencer["detail"]["object"]["sequencer"]
    no_object = eventbridge()
    del no_object["detail"]["object"]
    messages = parse_batch(
        sqs_event(
            tags,
            other_bucket,
            eventbridge(key="docs/a.jpg"),
            eventbridge(key="images/notes.txt"),
            eventbridge(key="images/folder/"),
            no_sequencer,
            no_object,
            {"source": "aws.s3", "detail-type": "Object Created", "detail": "not an object"},
        ),
        prefix="images/",
        bucket="my-photos",
    )
    assert [[s.reason for s in m.skipped] for m in messages] == [
        [UNSUPPORTED_EVENT],
        [OTHER_BUCKET],
        [OUTSIDE_PREFIX],
        [NOT_AN_IMAGE_KEY],
        [NOT_AN_IMAGE_KEY],
        [MALFORMED],
        [MALFORMED],
        [MALFORMED],
    ]
    assert all(not m.events for m in messages)


def test_both_shapes_in_one_batch_order_by_the_same_sequencer() -> None:
    """One queue may carry both (a stack moved to ExistingBucketName keeps old messages): the
    newest event of a key wins whichever shape brought it."""
    notification = put_with_key("images/k.jpg", sequencer="0055AED6DCD90281F5")
    bridged_delete = eventbridge("eventbridge-s3-delete.json", key="images/k.jpg")
    bridged_put = eventbridge(key="images/k.jpg", sequencer="0055AED6DCD9028200")
    messages = parse_batch(sqs_event(bridged_put, notification, bridged_delete), prefix="images/")
    events = [e for m in messages for e in m.events]
    assert [e.key for e in events] == ["images/k.jpg"] * 3
    newest, dropped = newest_per_key(events)
    assert [(e.message_id, e.action) for e in newest] == [("msg-0", "put")]
    assert sorted(o.message_id for o in dropped) == ["msg-1", "msg-2"]
