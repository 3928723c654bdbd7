"""The fresh segment through the real query handler (moto): images embedded after the served
index was built are found by every search at once, merged with the index's hits by score, a
changed image with its new vector, deletes hidden, pages consistent, ``/recent`` newest first;
past its bound the function starts one early index build and raises ``FreshSegmentFull``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import boto3
import pytest
from query_support import (
    REGION,
    Image,
    Stack,
    demo_model,
    get,
    http_event,
    invoke,
    make_images,
    query_stack,
    record,
    tombstone,
)

from imgsearch.core.clock import now_iso

pytestmark = pytest.mark.slow

FRESH = {"IMGSEARCH_FRESH_REFRESH_SECONDS": "0"}


@pytest.fixture(scope="module")
def model():
    return demo_model()


@pytest.fixture(scope="module")
def images(model) -> list[Image]:
    return make_images(model, 40, seed=23)


@pytest.fixture
def stack(tmp_path: Path, model, images) -> Iterator[Stack]:
    with query_stack(tmp_path, model, images[:30], FRESH) as stack:
        yield stack


def upload(stack: Stack, image: Image) -> None:
    """What the embed function leaves for a new upload: the object and its embedding."""
    stack.s3.put_object(Bucket=stack.settings.bucket, Key=image.key, Body=image.data)
    stack.store.put(record(stack.model_id, image, updated_at=now_iso()))


def image_search(handler, image: Image, k: int = 10, cursor: str | None = None) -> dict:
    query = {"k": str(k), **({"cursor": cursor} if cursor else {})}
    event = http_event("POST", "/search", query, image.data, {"content-type": "image/png"})
    reply = invoke(handler, event)
    assert reply.status == 200, reply.text
    return reply.json


def keys(body: dict) -> list[str]:
    return [r["key"] for r in body["results"]]


@pytest.mark.parametrize(("engine", "dtype"), [("faiss", "f16"), ("usearch", "i8")])
def test_an_upload_after_the_build_is_found_by_every_search_at_once(
    tmp_path: Path, model, images: list[Image], engine: str, dtype: str
) -> None:
    kind = {"IMGSEARCH_INDEX_ENGINE": engine, "IMGSEARCH_INDEX_DTYPE": dtype}
    with query_stack(tmp_path, model, images[:30], {**FRESH, **kind}) as s:
        found_at_once(s, images)


def found_at_once(stack: Stack, images: list[Image]) -> None:
    stack.publish()
    handler = stack.load_handler()
    new = images[30]
    assert new.key not in keys(image_search(handler, new))

    upload(stack, new)

    body = image_search(handler, new)
    assert keys(body)[0] == new.key and body["results"][0]["score"] == pytest.approx(1, abs=1e-3)
    # Merged by score with the index's hits: the same order as one search over both.
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and len(set(keys(body))) == len(scores)
    text = get(handler, "/search", q=f"a {new.scene.colour} {new.scene.shape}", k="40").json
    assert new.key in keys(text)
    similar = get(handler, f"/images/{quote(images[0].key, safe='')}/similar", k="40").json
    assert new.key in keys(similar)
    assert get(handler, f"/images/{quote(new.key, safe='')}/similar").status == 200
    assert get(handler, "/recent", k="1").json["results"][0]["key"] == new.key


def test_a_changed_image_is_found_by_its_new_content_not_its_old(
    stack: Stack, images: list[Image]
) -> None:
    stack.publish()
    handler = stack.load_handler()
    old, replacement = images[0], images[35]
    assert keys(image_search(handler, old))[0] == old.key

    changed = Image(old.key, replacement.data, replacement.scene, replacement.vector)
    stack.store.put(record(stack.model_id, changed, sequencer="0" * 31 + "9"))

    assert keys(image_search(handler, replacement))[0] == old.key
    found = image_search(handler, old, k=40)
    assert keys(found).count(old.key) == 1  # once, with its new vector's score
    score = next(r["score"] for r in found["results"] if r["key"] == old.key)
    assert score < 0.999


def test_a_fresh_image_deleted_since_is_hidden_and_one_uploaded_again_is_not(
    stack: Stack, images: list[Image]
) -> None:
    stack.publish()
    handler = stack.load_handler()
    new, indexed = images[31], images[1]
    upload(stack, new)
    assert keys(image_search(handler, new))[0] == new.key

    stack.store.put(tombstone(stack.model_id, new.key))
    stack.store.put(tombstone(stack.model_id, indexed.key))
    assert new.key not in keys(image_search(handler, new, k=40))
    assert indexed.key not in keys(image_search(handler, indexed, k=40))

    stack.store.put(record(stack.model_id, indexed, sequencer="0" * 31 + "9"))  # uploaded again
    assert keys(image_search(handler, indexed))[0] == indexed.key


def test_pages_over_the_index_and_the_fresh_set_neither_repeat_nor_skip(
    stack: Stack, images: list[Image]
) -> None:
    stack.publish()
    handler = stack.load_handler()
    for image in images[30:]:
        upload(stack, image)
    probe = images[2]
    whole = keys(image_search(handler, probe, k=40))
    assert set(whole) == {i.key for i in images}

    paged: list[str] = []
    cursor = None
    while True:
        body = image_search(handler, probe, k=7, cursor=cursor)
        paged += keys(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert paged == whole


def test_past_its_bound_it_stops_growing_starts_one_early_build_and_alarms(
    tmp_path: Path, model, images: list[Image], capsys: pytest.CaptureFixture[str]
) -> None:
    arn = f"arn:aws:states:{REGION}:123456789012:stateMachine:index-pipeline"
    overrides = {**FRESH, "IMGSEARCH_FRESH_MAX_VECTORS": "3", "IMGSEARCH_STATE_MACHINE_ARN": arn}
    with query_stack(tmp_path, model, images[:30], overrides) as stack:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        created = sfn.create_state_machine(
            name="index-pipeline",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/pipeline",
        )
        assert created["stateMachineArn"] == arn
        current = stack.publish()
        handlers = [stack.load_handler(), stack.load_handler()]  # two instances
        for image in images[30:35]:
            upload(stack, image)
        capsys.readouterr()

        for handler in handlers:
            found = keys(image_search(handler, images[34], k=40))
            assert images[32].key in found and images[34].key not in found  # the first 3 only

        executions = sfn.list_executions(stateMachineArn=arn)["executions"]
        assert [e["name"] for e in executions] == [f"fresh-full-{current.version}"]
        metrics = [
            json.loads(line)
            for line in capsys.readouterr().out.splitlines()
            if '"FreshSegmentFull"' in line
        ]
        assert len(metrics) == 2 and all(m["FreshSegmentFull"] == [1.0] for m in metrics)
        assert all(m["service"] == "imgsearch-query" and "route" not in m for m in metrics)
