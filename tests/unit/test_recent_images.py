"""The newest images a snapshot records: a bounded heap by ``updated_at``, ties by key, the same
whatever order the scan's pages arrive in; and the contracts that carry them (old payloads
without them still read)."""

from __future__ import annotations

import random

import boto3
import numpy as np
import pytest
from moto import mock_aws

from imgsearch.catalog.errors import ContractError
from imgsearch.catalog.recent import RecentImage, RecentImages, read_recent, write_recent
from imgsearch.catalog.report import SnapshotManifest
from imgsearch.core.config import ConfigError, Settings
from imgsearch.core.keys import image_id
from imgsearch.pipeline.recent import NewestImages
from imgsearch.pipeline.snapshot import scan_to_folder
from imgsearch.store import EmbeddingRecord, EmbeddingStore, table_definition

MODEL = "clip@1"
VECTOR = np.ones(4, dtype=np.float32)


def record(key: str, updated_at: str, vector: np.ndarray | None = VECTOR) -> EmbeddingRecord:
    return EmbeddingRecord(
        key=key,
        model=MODEL,
        id=image_id(key),
        status="ok" if vector is not None else "quarantined",
        sequencer="1",
        updated_at=updated_at,
        vector=vector,
    )


def stamp(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}.000000Z"


def keys(images: tuple[RecentImage, ...]) -> list[str]:
    return [image.key for image in images]


def test_keeps_the_newest_n_newest_first_whatever_the_order() -> None:
    records = [record(f"images/{i:02d}.png", stamp(i)) for i in range(40)]
    expected = [f"images/{i:02d}.png" for i in range(39, 34, -1)]
    for seed in range(5):
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        newest = NewestImages(limit=5)
        for start in range(0, len(shuffled), 7):  # pages, as a scan gives them
            newest.add(shuffled[start : start + 7])
        assert keys(newest.images()) == expected
    first = NewestImages(limit=5)
    first.add(records)
    assert first.images()[0] == RecentImage(
        key="images/39.png", id=image_id("images/39.png"), updated_at=stamp(39)
    )


def test_ties_on_updated_at_keep_the_smaller_keys_in_key_order() -> None:
    tied = [record(f"images/{name}.png", stamp(5)) for name in "edcba"]
    older = record("images/0.png", stamp(1))
    newer = record("images/z.png", stamp(9))
    for order in ([*tied, older, newer], [newer, older, *tied[::-1]]):
        newest = NewestImages(limit=4)
        newest.add(order)
        assert keys(newest.images()) == [
            "images/z.png",
            "images/a.png",
            "images/b.png",
            "images/c.png",
        ]


def test_fewer_items_than_the_limit_a_zero_limit_and_items_without_vectors() -> None:
    newest = NewestImages(limit=10)
    newest.add([record("images/a.png", stamp(1)), record("images/bad.png", stamp(9), None)])
    assert keys(newest.images()) == ["images/a.png"]
    off = NewestImages(limit=0)
    off.add([record("images/a.png", stamp(1))])
    assert off.images() == ()


def test_the_scan_feeds_every_ok_item_to_the_heap(tmp_path) -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**table_definition("embeddings"))
        store = EmbeddingStore("embeddings", client)
        for i in range(30):
            store.put(record(f"images/{i:02d}.png", stamp(i)))
        store.put(record("images/late-but-broken.png", stamp(59), None))
        newest = NewestImages(limit=3)
        count, _, _ = scan_to_folder(store, MODEL, tmp_path, segments=3, page_size=4, recent=newest)
    assert count == 30
    assert keys(newest.images()) == ["images/29.png", "images/28.png", "images/27.png"]


def test_the_setting_defaults_to_24_and_is_bounded() -> None:
    assert Settings.from_env({}).index.recent_images == 24
    assert Settings.from_env({"IMGSEARCH_RECENT_IMAGES": "0"}).index.recent_images == 0
    with pytest.raises(ConfigError, match="IMGSEARCH_RECENT_IMAGES must be between 0 and 200"):
        Settings.from_env({"IMGSEARCH_RECENT_IMAGES": "201"})


def test_a_manifest_without_recent_still_reads_and_one_with_it_round_trips() -> None:
    old = {
        "snapshot_id": "s",
        "prefix": "snapshots/s/",
        "model": MODEL,
        "dim": 4,
        "count": 1,
        "content_hash": "h",
        "scan_seconds": 0.1,
        "segments": 1,
        "taken_at": stamp(0),
    }
    assert SnapshotManifest.parse(old).recent == ()
    image = RecentImage(key="images/a.png", id=1, updated_at=stamp(1))
    manifest = SnapshotManifest.parse({**old, "recent": [image.model_dump()]})
    assert SnapshotManifest.parse_json(manifest.to_json()).recent == (image,)


def test_recent_json_is_absent_for_old_versions_and_checked_when_read() -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bucket")
        assert read_recent(s3, "bucket", "indexes/", "v1") is None
        image = RecentImage(key="images/a.png", id=1, updated_at=stamp(1))
        key = write_recent(s3, "bucket", "indexes/", RecentImages(version="v1", images=(image,)))
        assert key == "indexes/v1/recent.json"
        assert read_recent(s3, "bucket", "indexes/", "v1") == RecentImages(
            version="v1", images=(image,)
        )
        s3.put_object(Bucket="bucket", Key=key, Body=b'{"version": "v1", "images": [{"key": 3}]}')
        with pytest.raises(ContractError, match=r"recent\.json does not match its model"):
            read_recent(s3, "bucket", "indexes/", "v1")
