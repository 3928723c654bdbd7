"""Recent images, end to end: the pipeline records the snapshot's newest images with the version
(``indexes/<version>/recent.json``), and ``GET /recent`` serves them with presigned URLs, hiding
images deleted since the build; empty before any index and for a version built without them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pipeline_support import BUCKET as PIPELINE_BUCKET
from pipeline_support import pipeline_environment, running_stack
from query_support import Image, Stack, demo_model, get, make_images, query_stack, tombstone
from tiny_bundle import make_tiny_bundle

from imgsearch.catalog.current import CurrentIndex
from imgsearch.catalog.layout import RECENT_FILE, version_key
from imgsearch.catalog.recent import RecentImage, RecentImages, read_recent, write_recent
from imgsearch.core.keys import image_id

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    return demo_model()


@pytest.fixture(scope="module")
def images(model) -> list[Image]:
    return make_images(model, 12, seed=5)


@pytest.fixture
def stack(tmp_path: Path, model, images) -> Iterator[Stack]:
    with query_stack(tmp_path, model, images) as stack:
        yield stack


def stamp(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}.000000Z"


def publish_with_recent(stack: Stack, newest: list[Image]) -> CurrentIndex:
    """Publish the stack's images, with ``newest`` as Build would write them (newest first)."""
    current = stack.publish()
    recent = tuple(
        RecentImage(key=image.key, id=image_id(image.key), updated_at=stamp(59 - n))
        for n, image in enumerate(newest)
    )
    prefix = stack.settings.index.prefix
    write_recent(
        stack.s3,
        stack.settings.bucket,
        prefix,
        RecentImages(version=current.version, images=recent),
    )
    return current


def test_before_any_index_recent_is_empty_not_503(stack: Stack) -> None:
    reply = get(stack.load_handler(), "/recent")
    assert reply.status == 200, reply.text
    assert reply.json == {"index_version": None, "k": 10, "results": []}


def test_recent_images_come_newest_first_with_presigned_urls(stack: Stack) -> None:
    newest = stack.images[:6]
    current = publish_with_recent(stack, newest)
    handler = stack.load_handler()

    body = get(handler, "/recent", k="4").json
    assert body["index_version"] == current.version and body["k"] == 4
    assert [r["key"] for r in body["results"]] == [i.key for i in newest[:4]]
    first = body["results"][0]
    assert set(first) == {"key", "id", "updated_at", "url"}  # a search hit's shape, no score
    assert first["id"] == str(image_id(newest[0].key)) and first["updated_at"] == stamp(59)
    url = urlsplit(first["url"])
    assert url.path.endswith(newest[0].key) and "X-Amz-Signature=" in url.query
    # The default k (10 here) is more than the list holds: all of it.
    assert len(get(handler, "/recent").json["results"]) == 6


@pytest.mark.parametrize("k", ["0", "51", "many"])
def test_k_is_bounded_as_for_searches(stack: Stack, k: str) -> None:
    publish_with_recent(stack, stack.images[:3])
    reply = get(stack.load_handler(), "/recent", k=k)
    assert reply.status == 422, reply.text
    assert reply.json["error"] == "invalid_parameter"


def test_images_deleted_since_the_build_are_hidden(stack: Stack) -> None:
    newest = stack.images[:5]
    publish_with_recent(stack, newest)
    handler = stack.load_handler()
    assert get(handler, "/recent").json["results"][1]["key"] == newest[1].key

    stack.store.put(tombstone(stack.model_id, newest[1].key))  # what the embed function writes

    keys = [r["key"] for r in get(handler, "/recent", k="3").json["results"]]
    assert keys == [newest[0].key, newest[2].key, newest[3].key]


def test_a_version_without_recent_json_serves_an_empty_list(stack: Stack) -> None:
    current = stack.publish()  # as every version built before recent.json existed
    handler = stack.load_handler()
    body = get(handler, "/recent").json
    assert body == {"index_version": current.version, "k": 10, "results": []}
    assert get(handler, "/search", q="a red circle").status == 200


def test_a_broken_recent_json_costs_the_list_not_the_version(stack: Stack) -> None:
    current = stack.publish()
    key = version_key(stack.settings.index.prefix, current.version, RECENT_FILE)
    stack.s3.put_object(Bucket=stack.settings.bucket, Key=key, Body=b"{not json")
    handler = stack.load_handler()
    assert get(handler, "/recent").json["results"] == []
    assert get(handler, "/search", q="a red circle").json["index_version"] == current.version


# -- the pipeline writes it --------------------------------------------------------------------


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Any]:
    bundle = make_tiny_bundle(tmp_path / "tiny", dim=32)
    environment = {**pipeline_environment(bundle, tmp_path), "IMGSEARCH_RECENT_IMAGES": "5"}
    with running_stack(environment, bundle) as (stack, _dispatch):
        yield stack


def test_the_pipeline_writes_the_snapshots_newest_images_with_the_version(pipeline) -> None:
    pipeline.put_images(per_kind=10)  # written one after another: later keys are newer
    assert pipeline.run({"force": True})["status"] == "SUCCEEDED"
    version = pipeline.current_version()

    recent = read_recent(pipeline.s3, PIPELINE_BUCKET, "indexes/", version)
    assert recent is not None and recent.version == version
    rows = [r for page in pipeline.store.scan_pages(pipeline.model.model_id) for r in page]
    by_key = sorted(rows, key=lambda r: r.key)  # ties on updated_at: smaller keys first
    table = sorted(by_key, key=lambda r: r.updated_at, reverse=True)
    assert len(rows) == 40
    assert [(i.key, i.updated_at) for i in recent.images] == [
        (r.key, r.updated_at) for r in table[:5]
    ]
    # The report's snapshot records the same list (the Snapshot step's output).
    assert [i["key"] for i in pipeline.report(version)["snapshot"]["recent"]] == [
        i.key for i in recent.images
    ]
