"""The embed function fed through EventBridge, on moto: a bucket the stack does not own.

A real moto bucket with EventBridge notifications on, the template's own ``ImageEventsRule``
(its event pattern resolved for ``ExistingBucketName``) with the ingest queue as its target, and
the real embed handler reading the queue's messages as Lambda's event source mapping hands them
over. moto sends S3's EventBridge events with one constant sequencer (and a few fields unlike
AWS's): ``imgsearch_devkit.local.moto_fixes.eventbridge_s3_events`` mends that, as the local
stack does, and the first test pins what moto does without it::

    with bridged_stack(tmp_path) as bridged:
        bridged.s3.put_object(Bucket=PHOTOS, Key="images/a.jpg", Body=...)
        bridged.deliver()               # the queue's messages, in batches, to the handler
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from imgsearch_devkit.local.moto_fixes import delete_marker_events, eventbridge_s3_events
from imgsearch_devkit.local.template import StackTemplate
from ingest_support import (
    REGION,
    EmbedStack,
    bad_image,
    embed_stack,
    image_bytes,
    sqs_record,
)
from template_support import STACK_NAME, load_template

PHOTOS = "my-photos"
"""The user's bucket (``ExistingBucketName``)."""
QUEUE = "ingest"


def template_rule_pattern() -> dict[str, Any]:
    """The template's ImageEventsRule pattern for a stack with ``ExistingBucketName=PHOTOS``."""
    stack = StackTemplate(load_template(), STACK_NAME, REGION, {"ExistingBucketName": PHOTOS})
    return stack.resolve(stack.properties("ImageEventsRule")["EventPattern"])


@dataclass
class Bridged:
    embed: EmbedStack
    s3: Any
    sqs: Any
    queue_url: str

    def receive(self) -> list[dict[str, Any]]:
        """Every message waiting on the ingest queue (deleted from it)."""
        messages: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10
        ).get("Messages", []):
            for message in batch:
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
            messages += batch
        return messages

    def deliver(self, messages: list[dict[str, Any]] | None = None) -> None:
        """Hand ``messages`` (default: the queue's) to the handler, ten at a time."""
        bodies = [m["Body"] for m in (self.receive() if messages is None else messages)]
        for start in range(0, len(bodies), 10):
            event = {"Records": [sqs_record(body) for body in bodies[start : start + 10]]}
            assert self.embed.invoke(event) == {"batchItemFailures": []}

    def item(self, key: str) -> Any:
        return self.embed.store.get(key, self.embed.model_id)


@contextmanager
def bridged_stack(tmp_path: Path, versioned: bool = False) -> Iterator[Bridged]:
    with (
        embed_stack(tmp_path, IMGSEARCH_IMAGE_BUCKET=PHOTOS) as embed,
        ExitStack() as fixes,
    ):
        fixes.enter_context(eventbridge_s3_events())
        fixes.enter_context(delete_marker_events())
        s3 = embed.s3
        s3.create_bucket(Bucket=PHOTOS)
        if versioned:
            s3.put_bucket_versioning(Bucket=PHOTOS, VersioningConfiguration={"Status": "Enabled"})
        # What the README tells the bucket's owner to run.
        s3.put_bucket_notification_configuration(
            Bucket=PHOTOS, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        sqs = embed.sqs
        queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        events = boto3.client("events", region_name=REGION)
        events.put_rule(Name="images", EventPattern=json.dumps(template_rule_pattern()))
        events.put_targets(
            Rule="images", Targets=[{"Id": "ingest", "Arn": arn["Attributes"]["QueueArn"]}]
        )
        yield Bridged(embed, s3, sqs, queue_url)


def test_moto_alone_sends_every_event_with_one_sequencer(tmp_path: Path) -> None:
    """Why the local stack mends moto (moto_fixes.eventbridge_s3_events): without it, a put and
    the delete after it would look like one event."""
    with embed_stack(tmp_path) as embed:
        s3, sqs = embed.s3, embed.sqs
        s3.create_bucket(Bucket=PHOTOS)
        s3.put_bucket_notification_configuration(
            Bucket=PHOTOS, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        events = boto3.client("events", region_name=REGION)
        events.put_rule(Name="images", EventPattern=json.dumps(template_rule_pattern()))
        events.put_targets(
            Rule="images", Targets=[{"Id": "q", "Arn": arn["Attributes"]["QueueArn"]}]
        )
        s3.put_object(Bucket=PHOTOS, Key="images/a b+c.jpg", Body=b"x")
        s3.delete_object(Bucket=PHOTOS, Key="images/a b+c.jpg")
        bodies = [
            json.loads(m["Body"])
            for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        ]
    objects = [body["detail"]["object"] for body in bodies]
    assert len({o["sequencer"] for o in objects}) == 1, objects
    assert all("eTag" in o and "etag" not in o for o in objects)
    # What moto does get right, and the parser relies on: the key as it is.
    assert {o["key"] for o in objects} == {"images/a b+c.jpg"}


def test_uploads_and_deletes_in_an_existing_bucket_end_in_the_table(tmp_path: Path) -> None:
    good = {
        "images/plain.png": image_bytes(1),
        "images/a b+c%2B café 日本.png": image_bytes(2),
        "images/deep/x:y=z&w.jpg": image_bytes(3, fmt="JPEG"),
    }
    with bridged_stack(tmp_path) as bridged:
        s3 = bridged.s3
        for key, data in good.items():
            s3.put_object(Bucket=PHOTOS, Key=key, Body=data)
        s3.put_object(Bucket=PHOTOS, Key="images/broken.jpg", Body=bad_image("truncated", 4))
        s3.put_object(Bucket=PHOTOS, Key="images/notes.txt", Body=b"not an image key")
        s3.put_object(Bucket=PHOTOS, Key="elsewhere/outside.png", Body=image_bytes(5))
        s3.put_object(Bucket=PHOTOS, Key="images/gone.png", Body=image_bytes(6))
        s3.delete_object(Bucket=PHOTOS, Key="images/gone.png")
        replaced = image_bytes(7)
        s3.put_object(Bucket=PHOTOS, Key="images/plain.png", Body=replaced)
        messages = bridged.receive()
        keys = [json.loads(m["Body"])["detail"]["object"]["key"] for m in messages]
        # The rule's prefix filter: nothing outside ImagePrefix reaches the queue at all.
        assert "elsewhere/outside.png" not in keys and "images/notes.txt" in keys
        bridged.deliver(messages)

        items = bridged.embed.items()
        model = bridged.embed.model_id
        assert {key for key, _ in items} == {*good, "images/broken.jpg", "images/gone.png"}
        for key in good:
            record = items[key, model]
            expected = replaced if key == "images/plain.png" else good[key]
            assert record.status == "ok", key
            assert record.sha256 == hashlib.sha256(expected).hexdigest(), key
        assert items["images/broken.jpg", model].status == "quarantined"
        assert items["images/gone.png", model].status == "deleted"
        assert items["images/gone.png", model].reason == "Object Deleted:DeleteObject"
        # The stack only read the user's bucket: it holds what the test put there, no more.
        listed = s3.list_objects_v2(Bucket=PHOTOS)["Contents"]
        assert {o["Key"] for o in listed} == {
            *good,
            "images/broken.jpg",
            "images/notes.txt",
            "elsewhere/outside.png",
        }


def test_a_versioned_bucket_keeps_the_newest_event_whatever_the_delivery_order(
    tmp_path: Path,
) -> None:
    with bridged_stack(tmp_path, versioned=True) as bridged:
        s3, key = bridged.s3, "images/v.png"
        first, second = image_bytes(10), image_bytes(11)
        s3.put_object(Bucket=PHOTOS, Key=key, Body=first)
        s3.put_object(Bucket=PHOTOS, Key=key, Body=second)
        older, newer = bridged.receive()
        # Delivered newest first, in separate batches: the late, older event loses.
        bridged.deliver([newer])
        bridged.deliver([older])
        record = bridged.item(key)
        assert record.sha256 == hashlib.sha256(second).hexdigest()
        # The events name the versions (read with VersionId): the newer one is S3's current.
        current = s3.head_object(Bucket=PHOTOS, Key=key)["VersionId"]
        assert json.loads(newer["Body"])["detail"]["object"]["version-id"] == current

        s3.delete_object(Bucket=PHOTOS, Key=key)  # a delete marker
        (marker,) = bridged.receive()
        detail = json.loads(marker["Body"])["detail"]
        assert detail["deletion-type"] == "Delete Marker Created"
        bridged.deliver([marker])
        assert bridged.item(key).status == "deleted"
        bridged.deliver([newer])  # redelivered after the delete: still deleted
        assert bridged.item(key).status == "deleted"


@pytest.mark.parametrize("kind", ["empty", "not_an_image"])
def test_bad_files_are_quarantined_with_their_reason(tmp_path: Path, kind: str) -> None:
    with bridged_stack(tmp_path) as bridged:
        bridged.s3.put_object(Bucket=PHOTOS, Key="images/bad.jpg", Body=bad_image(kind, 1))
        bridged.deliver()
        record = bridged.item("images/bad.jpg")
        assert (record.status, record.reason) == ("quarantined", kind)
