"""``imgsearch local up --existing-bucket NAME``: the images in a bucket the stack does not own.

The stack is created with ``ExistingBucketName``: the bucket (there before the stack, with
EventBridge notifications on, as its owner would have it) gets no notification of the stack's,
its events reach the ingest queue through moto's EventBridge and the template's rule, and the
embed and query functions read it while the stack's own bucket holds only the index. Driven in
a subprocess, as a user runs it (the session's seeded stack holds this process's moto).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from urllib.request import urlopen

import boto3
import pytest
from imgsearch_devkit.demo.scenes import generate
from imgsearch_devkit.target import Target
from stack_support import jpeg
from test_local_stack import get_json, interrupt, start_local_up

pytestmark = pytest.mark.slow

PHOTOS = "my-photos"


def plain_client(target: Target, service: str) -> Any:
    """A user's own boto3 client at the stack's endpoint."""
    return boto3.client(
        service,
        endpoint_url=target.aws_endpoint,
        region_name=target.region,
        aws_access_key_id="any",
        aws_secret_access_key="any",
    )


def items_by_key(target: Target) -> dict[str, str]:
    dynamodb = plain_client(target, "dynamodb")
    items = dynamodb.scan(TableName=target.table)["Items"]
    return {item["key"]["S"]: item["status"]["S"] for item in items}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def test_images_put_in_an_existing_bucket_are_embedded_served_and_kept(tmp_path: Path) -> None:
    process, _ = start_local_up(tmp_path, "--existing-bucket", PHOTOS)
    try:
        target = Target.from_state_file(tmp_path / ".imgsearch" / "local.json")
        assert target.image_bucket == PHOTOS and target.bucket != PHOTOS
        s3 = plain_client(target, "s3")
        own = s3.get_bucket_notification_configuration(Bucket=target.bucket)
        assert "QueueConfigurations" not in own, "the stack's bucket has no notification"

        uploaded = {}
        for i, (image, scene) in enumerate(generate(6, seed=31, balanced=True)):
            key = f"images/mine/{i} {scene.colour}+{scene.shape}.jpg"
            s3.put_object(Bucket=PHOTOS, Key=key, Body=jpeg(image))
            uploaded[key] = scene
        s3.put_object(Bucket=PHOTOS, Key="archive/skip.jpg", Body=b"x")
        wait_for("the uploads were not embedded", lambda: len(items_by_key(target)) >= 6)
        assert items_by_key(target) == dict.fromkeys(uploaded, "ok")

        gone = next(iter(uploaded))
        s3.delete_object(Bucket=PHOTOS, Key=gone)
        wait_for("the delete did not arrive", lambda: items_by_key(target)[gone] == "deleted")

        sfn = plain_client(target, "stepfunctions")
        arn = sfn.start_execution(stateMachineArn=target.state_machine_arn, input="{}")
        wait_for(
            "the pipeline did not finish",
            lambda: sfn.describe_execution(executionArn=arn["executionArn"])["status"] != "RUNNING",
            timeout=180,
        )
        run = sfn.describe_execution(executionArn=arn["executionArn"])
        assert run["status"] == "SUCCEEDED", run
        wait_for(
            "the new index is not served",
            lambda: get_json(target.api_url + "/version")["image_count"] == 5,
        )
        hits = get_json(f"{target.api_url}/search?{urlencode({'q': 'a red circle', 'k': 5})}")[
            "results"
        ]
        assert {h["key"] for h in hits} <= set(uploaded) - {gone}
        # Presigned for the user's bucket, where the image is.
        assert urlsplit(hits[0]["url"]).path.startswith(f"/{PHOTOS}/")
        with urlopen(hits[0]["url"], timeout=30) as image:
            assert image.read(3) == b"\xff\xd8\xff"
        listed = s3.list_objects_v2(Bucket=target.bucket, Prefix="images/")
        assert listed["KeyCount"] == 0, "nothing of the images is copied into the stack's bucket"
    finally:
        interrupt(process)

    # Stopped and started again: the user's bucket, its images and the index come back.
    process, state = start_local_up(tmp_path, "--existing-bucket", PHOTOS)
    try:
        assert get_json(state["api_url"] + "/version")["image_count"] == 5
        target = Target.from_state_file(tmp_path / ".imgsearch" / "local.json")
        listed = plain_client(target, "s3").list_objects_v2(Bucket=PHOTOS, Prefix="images/")
        assert {o["Key"] for o in listed["Contents"]} == set(uploaded) - {gone}
    finally:
        interrupt(process)
