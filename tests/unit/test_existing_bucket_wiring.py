"""``ExistingBucketName`` as the devkit reads it: the template resolved both ways, what moto's
CloudFormation is sent, how the local stack finds the images' route, and the operator's
``Target`` (the local stack runs it end to end in tests/e2e/test_existing_bucket.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from imgsearch_devkit.local.moto_fixes import (
    eventbridge_s3_event,
    for_moto_cloudformation,
    queue_notifications,
)
from imgsearch_devkit.local.resources import _eventbridge_route, _notification_route
from imgsearch_devkit.local.template import StackTemplate, load_template
from imgsearch_devkit.target import STACK_OUTPUTS, Target

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = "my-photos"


@pytest.fixture(scope="module")
def own() -> StackTemplate:
    return StackTemplate(load_template(ROOT / "template.yaml"), "imgsearch-local", "us-east-1")


@pytest.fixture(scope="module")
def existing() -> StackTemplate:
    return StackTemplate(
        load_template(ROOT / "template.yaml"),
        "imgsearch-local",
        "us-east-1",
        {"ExistingBucketName": PHOTOS},
    )


def test_the_stacks_own_bucket_keeps_its_notification_only_without_an_existing_bucket(
    own: StackTemplate, existing: StackTemplate
) -> None:
    assert [c["Events"] for c in queue_notifications(own, "ImageBucket")] == [
        ["s3:ObjectCreated:*"],
        ["s3:ObjectRemoved:*"],
    ]
    assert queue_notifications(existing, "ImageBucket") == []
    route = _notification_route(own)
    assert route is not None and route.prefix == "images/" and route.queue == "IngestQueue"
    assert _eventbridge_route(own) is None  # the rule's Condition is false


def test_the_images_route_is_the_rule_with_an_existing_bucket(existing: StackTemplate) -> None:
    assert _notification_route(existing) is None
    route = _eventbridge_route(existing)
    assert route is not None
    assert (route.bucket, route.prefix, route.queue) == (PHOTOS, "images/", "IngestQueue")
    embed = existing.functions()["EmbedFunction"].environment
    assert embed["IMGSEARCH_IMAGE_BUCKET"] == PHOTOS
    assert embed["IMGSEARCH_BUCKET"] != PHOTOS  # indexes stay in the stack's own bucket


def test_moto_cloudformation_gets_the_rule_and_no_notification(existing: StackTemplate) -> None:
    resources = for_moto_cloudformation(existing)["Resources"]
    rule = resources["ImageEventsRule"]
    assert rule["Properties"]["Targets"] == [
        {"Id": "ingest-queue", "Arn": {"Fn::GetAtt": ["IngestQueue", "Arn"]}}
    ]
    assert "AWS::NoValue" not in json.dumps(resources["EmbedFunctionRole"])
    assert "IngestQueuePolicy" not in resources  # no model in moto (nor checked by it)


class _Bucket:
    name = PHOTOS
    region_name = "us-east-1"
    arn = f"arn:aws:s3:::{PHOTOS}"


class _Key:
    name = "images/a b+c.jpg"
    size = 5
    etag = '"b1946ac92492d2347c6235b4d2611184"'
    version_id = "null"


def test_mended_eventbridge_events_have_aws_shape() -> None:
    put = eventbridge_s3_event("123456789012", _Bucket(), "s3:ObjectCreated:Put", _Key())
    delete = eventbridge_s3_event("123456789012", _Bucket(), "s3:ObjectRemoved:Delete", _Key())
    assert put["detail-type"] == "Object Created" and delete["detail-type"] == "Object Deleted"
    assert put["detail"]["object"] == {
        "key": "images/a b+c.jpg",
        "size": 5,
        "etag": "b1946ac92492d2347c6235b4d2611184",
        "sequencer": put["detail"]["object"]["sequencer"],
    }
    assert set(delete["detail"]["object"]) == {"key", "sequencer"}
    assert delete["detail"]["object"]["sequencer"] > put["detail"]["object"]["sequencer"]
    assert (put["detail"]["reason"], delete["detail"]["reason"]) == ("PutObject", "DeleteObject")
    assert delete["detail"]["deletion-type"] == "Permanently Deleted"
    assert put["id"] != delete["id"]
    assert put["detail"]["request-id"] != delete["detail"]["request-id"]


def test_target_knows_the_image_bucket(tmp_path: Path) -> None:
    assert STACK_OUTPUTS["ImageBucketName"] == "image_bucket"
    plain = Target(region="us-east-1", bucket="stack-bucket", table="t")
    assert plain.image_bucket == "stack-bucket"
    assert plain.settings().image_bucket == "stack-bucket"
    mine = Target(region="us-east-1", bucket="stack-bucket", table="t", image_bucket=PHOTOS)
    assert (mine.settings().bucket, mine.settings().image_bucket) == ("stack-bucket", PHOTOS)
    # A state file written before image_bucket existed: the images are in the bucket.
    state = json.loads(mine.to_json())
    del state["image_bucket"]
    path = tmp_path / "local.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    assert Target.from_state_file(path).image_bucket == "stack-bucket"
    path.write_text(mine.to_json(), encoding="utf-8")
    assert Target.from_state_file(path) == mine
