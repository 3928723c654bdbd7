"""The backfill's listing (moto S3): options checked before any work, every key in exactly one
chunk across calls, S3 Inventory reports read as the bucket would be listed."""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from moto import mock_aws

from imgsearch.backfill.contracts import BackfillOptions, ChunkManifest, ListingState
from imgsearch.backfill.errors import BackfillError
from imgsearch.backfill.layout import RunLayout
from imgsearch.backfill.listing import begin, list_more
from imgsearch.catalog.errors import ContractError
from imgsearch.core.config import Settings
from imgsearch.ingest.pipeline import ListedObject, backfill_verdict
from imgsearch.store import EmbeddingRecord

IMAGES = "user-photos"
SERVICE = "imgsearch-service"
INVENTORY = "inventory-reports"


@pytest.fixture()
def s3(demo_bundle: Any) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in (IMAGES, SERVICE, INVENTORY):
            client.create_bucket(Bucket=bucket)
        yield client


def settings(demo_bundle: Any, **environment: str) -> Settings:
    return Settings.from_env(
        {
            "IMGSEARCH_BUCKET": SERVICE,
            "IMGSEARCH_IMAGE_BUCKET": IMAGES,
            "IMGSEARCH_MODEL_URI": str(demo_bundle),
            "IMGSEARCH_BACKFILL_MAX_CONCURRENCY": "8",
            **environment,
        }
    )


def listed_keys(s3: Any, config: Settings, state: ListingState) -> list[str]:
    layout = RunLayout(config.backfill.prefix, state.run_id)
    items = json.loads(s3.get_object(Bucket=SERVICE, Key=state.items_key)["Body"].read())
    assert [item["chunk"] for item in items] == list(range(1, state.chunks + 1))
    keys = []
    for item in items:
        assert item["manifest"] == layout.manifest(item["chunk"])
        body = s3.get_object(Bucket=SERVICE, Key=item["manifest"])["Body"].read()
        manifest = ChunkManifest.parse_json(body)
        assert manifest.bucket == IMAGES and len(manifest.objects) <= state.chunk_size
        keys.extend(o.key for o in manifest.objects)
    return keys


def run_listing(s3: Any, config: Settings, options: BackfillOptions) -> tuple[ListingState, int]:
    state = begin(config, s3, options, run_id="run-1", started_at="2025-01-01T00:00:00.000000Z")
    calls = 0
    while not state.done:
        state = list_more(config, s3, state, deadline=time.monotonic() + 60)
        calls += 1
    return state, calls


def test_every_image_key_lands_in_exactly_one_chunk_across_calls(s3, demo_bundle) -> None:
    keys = [f"images/{n:04d}.jpg" for n in range(230)] + ["images/a b+c/ü.png"]
    for key in [*keys, "images/readme.txt", "images/folder/", "other/x.png"]:
        s3.put_object(Bucket=IMAGES, Key=key, Body=b"x")
    config = settings(demo_bundle, IMGSEARCH_BACKFILL_LIST_OBJECTS_PER_CALL="50")
    state, calls = run_listing(s3, config, BackfillOptions(chunk_size=40))
    assert calls == 5  # 233 objects under the prefix, 50 a call
    assert listed_keys(s3, config, state) == sorted(keys)
    assert (state.listed, state.queued, state.ignored) == (233, 231, 2)
    assert state.max_concurrency == 8 and state.model == "demo-clip@1"
    assert not s3.list_objects_v2(Bucket=IMAGES, Prefix="backfill/").get("Contents")


def test_a_call_past_its_deadline_stops_after_one_page_and_says_where(s3, demo_bundle) -> None:
    for n in range(25):
        s3.put_object(Bucket=IMAGES, Key=f"images/{n:02d}.png", Body=b"x")
    config = settings(demo_bundle, IMGSEARCH_BACKFILL_LIST_OBJECTS_PER_CALL="10")
    state = begin(config, s3, BackfillOptions(), run_id="late", started_at="")
    state = list_more(config, s3, state, deadline=time.monotonic() - 1)
    assert not state.done and state.resume.start_after == "images/09.png"
    assert state.chunks == 1 and state.queued == 10


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (BackfillOptions(prefix="other/"), "outside the image prefix"),
        (BackfillOptions(model="clip-b32@1"), "nor a registered model"),
        (BackfillOptions(max_concurrency=9), "above the stack's limit 8"),
        (
            BackfillOptions(inventory=f"s3://{INVENTORY}/x/manifest.json"),
            "no S3 Inventory manifest",
        ),
    ],
)
def test_options_that_cannot_work_are_refused_before_any_work(
    s3, demo_bundle, options, message
) -> None:
    with pytest.raises(BackfillError, match=message):
        begin(settings(demo_bundle), s3, options, run_id="r", started_at="")
    assert not s3.list_objects_v2(Bucket=SERVICE).get("Contents")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"force": "yes"}, '"force" must be true or false'),
        ({"chunk_size": 20_000}, "chunk_size"),
        ({"inventory": "s3://b/report.csv"}, "manifest.json"),
        ({"schema_version": "2.0"}, "newer than this code understands"),
    ],
)
def test_the_execution_input_is_checked_field_by_field(payload, message) -> None:
    with pytest.raises(ContractError, match=message):
        BackfillOptions.parse(payload)


def write_inventory(s3: Any, rows: list[list[str]], schema: str, files: int = 2) -> str:
    """An S3 Inventory report as S3 delivers it: manifest.json naming gzipped CSV files."""
    keys = []
    for part in range(files):
        text = io.StringIO()
        csv.writer(text).writerows(rows[part::files])
        key = f"user-photos/daily/data/{part}.csv.gz"
        s3.put_object(Bucket=INVENTORY, Key=key, Body=gzip.compress(text.getvalue().encode()))
        keys.append(key)
    manifest = {
        "sourceBucket": IMAGES,
        "destinationBucket": f"arn:aws:s3:::{INVENTORY}",
        "fileFormat": "CSV",
        "fileSchema": schema,
        "files": [{"key": key, "size": 1, "MD5checksum": ""} for key in keys],
    }
    key = "user-photos/daily/2025-01-01T00-00Z/manifest.json"
    s3.put_object(Bucket=INVENTORY, Key=key, Body=json.dumps(manifest).encode())
    return f"s3://{INVENTORY}/{key}"


def test_an_inventory_report_lists_the_current_live_objects(s3, demo_bundle) -> None:
    schema = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag"
    rows = []
    wanted = []
    for n in range(30):
        key = f"images/inv/{n:02d} photo+{n}.jpg"
        rows.append([IMAGES, quote_plus(key, safe="/"), "v2", "true", "false", "10", "", f"e{n}"])
        rows.append([IMAGES, quote_plus(key, safe="/"), "v1", "false", "false", "9", "", "old"])
        wanted.append(key)
    rows.append([IMAGES, "images/inv/deleted.jpg", "v3", "true", "true", "", "", ""])
    rows.append([IMAGES, "other/outside.jpg", "v1", "true", "false", "1", "", "e"])
    uri = write_inventory(s3, rows, schema)
    config = settings(demo_bundle, IMGSEARCH_BACKFILL_LIST_OBJECTS_PER_CALL="7")
    state, calls = run_listing(s3, config, BackfillOptions(chunk_size=8, inventory=uri))
    assert calls > 2
    assert sorted(listed_keys(s3, config, state)) == sorted(wanted)
    body = s3.get_object(Bucket=SERVICE, Key=RunLayout("backfill/", "run-1").manifest(1))
    first = ChunkManifest.parse_json(body["Body"].read()).objects[0]
    assert first.etag.startswith("e") and first.size == 10


def test_an_inventory_without_the_needed_fields_or_in_orc_is_refused(s3, demo_bundle) -> None:
    uri = write_inventory(s3, [], "Bucket, Key, Size")
    with pytest.raises(BackfillError, match="the inventory has no ETag field"):
        begin(settings(demo_bundle), s3, BackfillOptions(inventory=uri), run_id="r", started_at="")
    manifest = json.loads(s3.get_object(Bucket=INVENTORY, Key=uri.split("/", 3)[3])["Body"].read())
    manifest["fileFormat"] = "ORC"
    s3.put_object(Bucket=INVENTORY, Key=uri.split("/", 3)[3], Body=json.dumps(manifest).encode())
    with pytest.raises(BackfillError, match="configure the inventory as CSV"):
        begin(settings(demo_bundle), s3, BackfillOptions(inventory=uri), run_id="r", started_at="")


@pytest.mark.parametrize(
    ("held", "force", "verdict"),
    [
        (None, False, None),
        (("ok", "e1"), False, "unchanged"),
        (("quarantined", "e1"), False, "unchanged"),
        (("ok", "e1"), True, None),
        (("ok", "e0"), False, None),  # another version: the If-Match read decides
        (("deleted", "e1"), False, None),  # a tombstone: the read tells if it is back
    ],
)
def test_what_the_backfill_embeds(held, force, verdict) -> None:
    obj = ListedObject(key="images/a.jpg", etag="e1", size=3)
    record = None
    if held:
        status, etag = held
        record = EmbeddingRecord("images/a.jpg", "m@1", 1, status, "0" * 32, "t", etag=etag)
    assert backfill_verdict(obj, record, force) == verdict
