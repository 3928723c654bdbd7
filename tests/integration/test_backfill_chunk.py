"""One backfill chunk against moto with AWS throttling injected into its clients: the objects
that failed transiently get more rounds, nothing is embedded twice, the result counts all."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from ingest_support import REGION, bad_image, bundle_uri, image_bytes
from moto import mock_aws

from imgsearch.backfill.chunk import embed_chunk, record_failure
from imgsearch.backfill.contracts import ChunkInput, ChunkItem, ChunkManifest, ChunkResult
from imgsearch.backfill.layout import RunLayout
from imgsearch.catalog.contract import read_object, write_object
from imgsearch.core.config import Settings
from imgsearch.ingest import Ingestor
from imgsearch.ingest.pipeline import ListedObject
from imgsearch.pipeline.contracts import CaughtError
from imgsearch.store import EmbeddingStore, table_definition

IMAGES, SERVICE, TABLE = "user-photos", "imgsearch-service", "embeddings"


class Throttle:
    """Answers the first ``times`` calls of each named operation with a throttling error."""

    def __init__(self, times: dict[str, int]) -> None:
        self.left = dict(times)
        self.raised: dict[str, int] = {}

    def __call__(self, model: Any, **_: Any) -> None:
        if self.left.get(model.name, 0) > 0:
            self.left[model.name] -= 1
            self.raised[model.name] = self.raised.get(model.name, 0) + 1
            code = "ThrottlingException" if model.name != "GetObject" else "SlowDown"
            raise ClientError(
                {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {}},
                model.name,
            )


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        for bucket in (IMAGES, SERVICE):
            s3.create_bucket(Bucket=bucket)
        dynamodb.create_table(**table_definition(TABLE))
        settings = Settings.from_env(
            {
                "IMGSEARCH_BUCKET": SERVICE,
                "IMGSEARCH_IMAGE_BUCKET": IMAGES,
                "IMGSEARCH_TABLE": TABLE,
                "IMGSEARCH_MODEL_URI": bundle_uri(),
                "IMGSEARCH_MODEL_CACHE_DIR": str(tmp_path / "models"),
                "IMGSEARCH_THREADS": "1",
            }
        )
        # The chunk's own clients, so that only its calls are throttled.
        own_s3 = boto3.client("s3", region_name=REGION)
        own_dynamodb = boto3.client("dynamodb", region_name=REGION)
        ingestor = Ingestor.from_settings(settings, s3=own_s3, dynamodb=own_dynamodb)
        yield {
            "s3": s3,
            "own": (own_s3, own_dynamodb),
            "settings": settings,
            "ingestor": ingestor,
            "store": EmbeddingStore(TABLE, dynamodb),
        }


def chunk(world: dict[str, Any], bodies: dict[str, bytes]) -> ChunkInput:
    s3 = world["s3"]
    objects = []
    for key, body in bodies.items():
        etag = s3.put_object(Bucket=IMAGES, Key=key, Body=body)["ETag"].strip('"')
        objects.append(ListedObject(key=key, etag=etag, size=len(body)))
    layout = RunLayout(world["settings"].backfill.prefix, "run-1")
    manifest = ChunkManifest(run_id="run-1", chunk=1, bucket=IMAGES, objects=objects)
    write_object(s3, SERVICE, layout.manifest(1), manifest)
    return ChunkInput(
        run_id="run-1",
        model=world["ingestor"].model_id,
        item=ChunkItem(chunk=1, manifest=layout.manifest(1)),
    )


def test_throttled_objects_get_more_rounds_and_all_are_embedded_once(world) -> None:
    bodies = {f"images/{n}.png": image_bytes(n) for n in range(12)}
    bodies["images/bad.png"] = bad_image("truncated", 1)
    payload = chunk(world, bodies)
    throttle = Throttle({"PutItem": 5, "GetObject": 3, "BatchGetItem": 1})
    for client in world["own"]:
        client.meta.events.register("before-call", throttle)
    sleeps: list[float] = []
    result = embed_chunk(world["settings"], world["s3"], world["ingestor"], payload, sleeps.append)
    assert throttle.left == {"PutItem": 0, "GetObject": 0, "BatchGetItem": 0}
    assert result.failed == 0 and result.attempts >= 2 and len(sleeps) == result.attempts - 1
    assert (result.embedded, result.quarantined) == (12, {"truncated": 1})
    # An image is embedded again only when its write failed, never once it was written.
    assert 12 <= result.model_images <= 12 + throttle.raised["PutItem"]
    for key, body in bodies.items():
        record = world["store"].get(key, world["ingestor"].model_id)
        assert record.sha256 == hashlib.sha256(body).hexdigest()
    layout = RunLayout(world["settings"].backfill.prefix, "run-1")
    assert read_object(world["s3"], SERVICE, layout.result(1), ChunkResult) == result


def test_a_chunk_that_stays_throttled_counts_its_objects_failed(world) -> None:
    payload = chunk(world, {f"images/{n}.png": image_bytes(n) for n in range(4)})
    throttle = Throttle({"PutItem": 1_000})
    world["own"][1].meta.events.register("before-call", throttle)
    result = embed_chunk(world["settings"], world["s3"], world["ingestor"], payload, lambda s: None)
    assert result.attempts == world["settings"].backfill.attempts
    assert result.failed == 4 and result.embedded == 0
    assert "ThrottlingException" in result.failures[0].error


def test_the_catch_path_records_every_object_failed(world) -> None:
    payload = chunk(world, {f"images/{n}.png": image_bytes(n) for n in range(3)})
    cause = '{"errorType": "Runtime.OutOfMemory", "errorMessage": "out of memory"}'
    failed = payload.model_copy(
        update={"error": CaughtError(Error="Runtime.OutOfMemory", Cause=cause)}
    )
    result = record_failure(world["settings"], world["s3"], failed)
    assert (result.objects, result.failed) == (3, 3)
    assert result.failures[0].error == "Runtime.OutOfMemory: out of memory"
