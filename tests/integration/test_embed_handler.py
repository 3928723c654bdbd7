"""The embed function end to end on moto: real handler, S3 notifications in AWS's exact shape."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError
from ingest_support import (
    BAD_KINDS,
    BUCKET,
    EmbedStack,
    bad_image,
    embed_stack,
    emf_metrics,
    image_bytes,
    load_fixture,
    metric_by_reason,
    metric_total,
    sqs_event,
)

from imgsearch.catalog.current import CurrentIndex, write_current
from imgsearch.core.clock import now_iso
from imgsearch.core.keys import image_id
from imgsearch.model import embed_images
from imgsearch.store import EmbeddingRecord, pad_sequencer

SPECIAL_KEY = "images/red car+1 café 日本.jpg"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbedStack]:
    with embed_stack(tmp_path) as opened:
        yield opened


class CallCounter:
    """Counts AWS API calls made by the handler's clients (botocore event hooks), but not the
    reads of ``indexes/`` and ``models/`` (which models to write with: ``WriteModels``)."""

    def __init__(self, *clients: Any) -> None:
        self.calls: list[str] = []
        for client in clients:
            client.meta.events.register("before-parameter-build", self._count)

    def _count(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if not str(params.get("Key", "")).startswith(("indexes/", "models/")):
            self.calls.append(model.name)

    def count(self, name: str) -> int:
        return self.calls.count(name)


def expected_vector(stack: EmbedStack, data: bytes) -> np.ndarray:
    (vector,) = embed_images(stack.ingestor.model, [data], stack.ingestor.limits)
    assert isinstance(vector, np.ndarray)
    return vector


def test_put_with_special_key_is_embedded_exactly_as_the_fixture_names_it(
    stack: EmbedStack, capsys: pytest.CaptureFixture[str]
) -> None:
    data = image_bytes(1)
    etag = stack.s3.put_object(Bucket=BUCKET, Key=SPECIAL_KEY, Body=data)["ETag"].strip('"')
    body = load_fixture("s3-put.json")  # the fixture's own URL-encoded key, unchanged
    body["Records"][0]["s3"]["object"].update(eTag=etag, size=len(data))

    response = stack.invoke(sqs_event(body))

    assert response == {"batchItemFailures": []}
    record = stack.store.get(SPECIAL_KEY, stack.model_id)
    assert record is not None
    assert record.status == "ok"
    assert record.model == stack.model_id
    assert record.id == image_id(SPECIAL_KEY)
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert (record.etag, record.size) == (etag, len(data))
    assert record.sequencer == pad_sequencer("0055AED6DCD90281E5")
    assert record.vector is not None
    np.testing.assert_allclose(record.vector, expected_vector(stack, data), atol=2e-3)

    metrics = emf_metrics(capsys.readouterr().out)
    assert metric_total(metrics, "ImagesEmbedded") == 1
    assert metric_total(metrics, "BatchSize") == 1
    assert len(metrics["ModelLatencyPerImageMs"]) == 1
    # Log lines of this message carry the S3 request id as correlation id.
    lines = [line for line in stack.logs.lines if line.get("key") == SPECIAL_KEY]
    assert lines and all(line["correlation_id"] == "C3D13FE58DE4C810" for line in lines)


def test_batch_fixture_skips_what_is_not_ours_and_applies_the_newest_event(
    stack: EmbedStack, capsys: pytest.CaptureFixture[str]
) -> None:
    event = load_fixture("sqs-s3-batch.json")
    # The batch holds a TestEvent, a put and a newer delete of the same key, a key outside the
    # prefix and a key without an image extension.
    response = stack.invoke(event)

    assert response == {"batchItemFailures": []}
    items = stack.items()
    assert list(items) == [(SPECIAL_KEY, stack.model_id)]
    tombstone = items[SPECIAL_KEY, stack.model_id]
    assert tombstone.status == "deleted"
    assert tombstone.vector is None
    assert tombstone.deleted_at
    assert tombstone.sequencer == pad_sequencer("0055AED6DCD90281F0")
    assert [key for key, _ in stack.store.deleted_since(stack.model_id)] == [SPECIAL_KEY]

    metrics = emf_metrics(capsys.readouterr().out)
    assert metric_total(metrics, "BatchSize") == 5
    assert metric_total(metrics, "ImagesDeleted") == 1
    assert metric_total(metrics, "EventsSkipped") == 4
    assert metric_by_reason(metrics, "EventsSkipped") == {
        "test_event": 1,
        "superseded": 1,
        "outside_prefix": 1,
        "not_an_image_key": 1,
    }


def test_redelivered_event_makes_no_read_no_model_call_and_no_write(
    stack: EmbedStack, capsys: pytest.CaptureFixture[str]
) -> None:
    body = stack.uploader.put("images/cat.png", image_bytes(2))
    stack.invoke(sqs_event(body))
    first = stack.snapshot()
    capsys.readouterr()
    counter = CallCounter(stack.handler_clients.s3, stack.handler_clients.dynamodb)

    assert stack.invoke(sqs_event(body, body)) == {"batchItemFailures": []}

    assert stack.snapshot() == first
    assert counter.calls == ["BatchGetItem"]
    metrics = emf_metrics(capsys.readouterr().out)
    assert metric_total(metrics, "ImagesEmbedded") == 0
    assert "ModelLatencyPerImageMs" not in metrics
    assert metric_by_reason(metrics, "EventsSkipped") == {"duplicate": 2}


def test_out_of_order_events_never_win(stack: EmbedStack) -> None:
    up = stack.uploader
    # A put, then a delete of the same key: the delete arrives first.
    put_a = up.put("images/a.png", image_bytes(3))
    delete_a = up.delete("images/a.png")
    # A delete, then a re-upload: the re-upload arrives first.
    put_b1 = up.put("images/b.png", image_bytes(4))
    delete_b = up.delete("images/b.png")
    data_b2 = image_bytes(5)
    put_b2 = up.put("images/b.png", data_b2)
    # Two puts of one key, the newer first.
    put_c1 = up.put("images/c.png", image_bytes(6))
    data_c2 = image_bytes(7)
    put_c2 = up.put("images/c.png", data_c2)

    counter = CallCounter(stack.handler_clients.s3)
    for body in (delete_a, put_b2, put_c2):
        assert stack.invoke(sqs_event(body)) == {"batchItemFailures": []}
    for body in (put_a, delete_b, put_b1, put_c1):
        assert stack.invoke(sqs_event(body)) == {"batchItemFailures": []}

    items = stack.items()
    model = stack.model_id
    assert items["images/a.png", model].status == "deleted"
    assert items["images/b.png", model].status == "ok"
    assert items["images/b.png", model].sha256 == hashlib.sha256(data_b2).hexdigest()
    assert items["images/c.png", model].sha256 == hashlib.sha256(data_c2).hexdigest()
    assert counter.count("GetObject") == 2  # only the newest puts were read


def test_bad_images_are_quarantined_with_their_reason_and_not_retried(
    stack: EmbedStack, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = [
        stack.uploader.put(f"images/bad-{kind}.png", bad_image(kind, 1)) for kind in BAD_KINDS
    ]
    missing = stack.uploader.put("images/gone.png", image_bytes(8))
    stack.s3.delete_object(Bucket=BUCKET, Key="images/gone.png")  # its delete event is not here yet
    good = stack.uploader.put("images/good.png", image_bytes(9))

    response = stack.invoke(sqs_event(*bodies, missing, good))

    assert response == {"batchItemFailures": []}
    items = stack.items()
    before = stack.snapshot()
    model = stack.model_id
    for kind in BAD_KINDS:
        record = items[f"images/bad-{kind}.png", model]
        assert (record.status, record.reason, record.vector) == ("quarantined", kind, None)
    assert items["images/gone.png", model].reason == "object_missing"
    assert items["images/good.png", model].status == "ok"
    metrics = emf_metrics(capsys.readouterr().out)
    assert metric_total(metrics, "ImagesQuarantined") == len(BAD_KINDS) + 1
    assert metric_by_reason(metrics, "ImagesQuarantined") == {
        **{kind: 1 for kind in BAD_KINDS},
        "object_missing": 1,
    }
    # The same events again: final verdicts are not retried.
    assert stack.invoke(sqs_event(*bodies, missing)) == {"batchItemFailures": []}
    assert stack.snapshot() == before


def test_over_limit_object_is_not_even_read(stack: EmbedStack) -> None:
    body = stack.uploader.put("images/huge.png", bad_image("too_large_bytes", 2))
    counter = CallCounter(stack.handler_clients.s3)
    stack.invoke(sqs_event(body))
    assert counter.count("GetObject") == 0
    assert stack.store.get("images/huge.png", stack.model_id).reason == "too_large_bytes"


def test_same_bytes_under_several_keys_are_embedded_once(
    stack: EmbedStack, capsys: pytest.CaptureFixture[str]
) -> None:
    data = image_bytes(10)
    first = [stack.uploader.put(f"images/copy-{n}.png", data) for n in range(3)]
    stack.invoke(sqs_event(*first))
    batch_one = emf_metrics(capsys.readouterr().out)
    later = stack.uploader.put("images/copy-later.png", data)
    stack.invoke(sqs_event(later))
    batch_two = emf_metrics(capsys.readouterr().out)

    items = stack.items()
    vectors = [items[f"images/copy-{n}.png", stack.model_id].vector for n in range(3)]
    vectors.append(items["images/copy-later.png", stack.model_id].vector)
    for vector in vectors[1:]:
        np.testing.assert_array_equal(vector, vectors[0])
    assert metric_total(batch_one, "ImagesEmbedded") == 3
    assert metric_total(batch_one, "DuplicateContentReused") == 2
    assert len(batch_one["ModelLatencyPerImageMs"]) == 1  # one model call, for one image
    assert metric_total(batch_two, "DuplicateContentReused") == 1
    assert "ModelLatencyPerImageMs" not in batch_two  # copied through the by-sha256 index


def test_the_next_batch_is_read_while_this_one_is_embedded_and_written(tmp_path: Path) -> None:
    with embed_stack(tmp_path, IMGSEARCH_EMBED_BATCH_SIZE="2") as stack:
        bodies = [stack.uploader.put(f"images/b{n}.png", image_bytes(40 + n)) for n in range(4)]
        second_batch_read = threading.Event()
        first_write_saw_it: list[bool] = []

        def on_get(params: dict[str, Any], **_: Any) -> None:
            if params["Key"] in ("images/b2.png", "images/b3.png"):
                second_batch_read.set()

        def on_put(**_: Any) -> None:
            if not first_write_saw_it:  # the first batch's first write waits for the overlap
                first_write_saw_it.append(second_batch_read.wait(timeout=10))

        stack.handler_clients.s3.meta.events.register("before-parameter-build.s3.GetObject", on_get)
        stack.handler_clients.dynamodb.meta.events.register("before-call.dynamodb.PutItem", on_put)
        response = stack.invoke(sqs_event(*bodies))

        assert response == {"batchItemFailures": []}
        assert first_write_saw_it == [True]
        items = stack.items()
        assert all(items[f"images/b{n}.png", stack.model_id].status == "ok" for n in range(4))


def test_overwritten_object_event_is_superseded_without_a_write(stack: EmbedStack) -> None:
    old = stack.uploader.put("images/o.png", image_bytes(11))
    stack.s3.put_object(Bucket=BUCKET, Key="images/o.png", Body=image_bytes(12))
    assert stack.invoke(sqs_event(old)) == {"batchItemFailures": []}
    assert stack.store.get("images/o.png", stack.model_id) is None


def test_delete_tombstones_the_key_for_every_model_holding_it(stack: EmbedStack) -> None:
    body = stack.uploader.put("images/d.png", image_bytes(13))
    stack.invoke(sqs_event(body))
    old_model = EmbeddingRecord(
        key="images/d.png",
        model="older-clip@1",
        id=image_id("images/d.png"),
        status="ok",
        sequencer=pad_sequencer("01"),
        updated_at=now_iso(),
        vector=np.ones(4, dtype=np.float32),
    )
    assert stack.store.put(old_model)

    assert stack.invoke(sqs_event(stack.uploader.delete("images/d.png"))) == {
        "batchItemFailures": []
    }

    items = stack.items()
    # The older model's index (kept for a rollback) must hide the image too.
    assert sorted(items) == sorted(
        [("images/d.png", stack.model_id), ("images/d.png", "older-clip@1")]
    )
    for tombstone in items.values():
        assert (tombstone.status, tombstone.vector, tombstone.sha256) == ("deleted", None, None)
        assert tombstone.reason == "ObjectRemoved:Delete" and tombstone.deleted_at


def test_transient_errors_fail_only_their_message(
    stack: EmbedStack, capsys: pytest.CaptureFixture[str]
) -> None:
    throttled = stack.uploader.put("images/throttled.png", image_bytes(14))
    unwritable = stack.uploader.put("images/unwritable.png", image_bytes(15))
    fine = stack.uploader.put("images/fine.png", image_bytes(16))

    def slow_down(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == "images/throttled.png":
            raise ClientError(
                {
                    "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                    "ResponseMetadata": {"HTTPStatusCode": 503},
                },
                "GetObject",
            )

    def throughput(params: dict[str, Any], **_: Any) -> None:
        if params["Item"]["key"]["S"] == "images/unwritable.png":
            raise ClientError(
                {
                    "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                "PutItem",
            )

    stack.handler_clients.s3.meta.events.register("before-parameter-build.s3.GetObject", slow_down)
    stack.handler_clients.dynamodb.meta.events.register(
        "before-parameter-build.dynamodb.PutItem", throughput
    )
    event = sqs_event(throttled, unwritable, fine)
    ids = [record["messageId"] for record in event["Records"]]

    response = stack.invoke(event)

    assert response == {
        "batchItemFailures": [{"itemIdentifier": ids[0]}, {"itemIdentifier": ids[1]}]
    }
    assert set(stack.items()) == {("images/fine.png", stack.model_id)}
    metrics = emf_metrics(capsys.readouterr().out)
    assert metric_by_reason(metrics, "EventsFailed") == {"transient": 2}

    stack.handler_clients.s3.meta.events.unregister(
        "before-parameter-build.s3.GetObject", slow_down
    )
    stack.handler_clients.dynamodb.meta.events.unregister(
        "before-parameter-build.dynamodb.PutItem", throughput
    )
    assert stack.invoke(sqs_event(throttled, unwritable)) == {"batchItemFailures": []}
    assert {r.status for r in stack.items().values()} == {"ok"}
    assert len(stack.items()) == 3


def test_every_message_failing_is_still_a_partial_response(stack: EmbedStack) -> None:
    bodies = [stack.uploader.put(f"images/x{n}.png", image_bytes(17 + n)) for n in range(2)]

    def throttle(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ThrottlingException"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
            "BatchGetItem",
        )

    stack.handler_clients.dynamodb.meta.events.register(
        "before-call.dynamodb.BatchGetItem", throttle
    )
    try:
        event = sqs_event(*bodies)
        response = stack.invoke(event)
    finally:
        stack.handler_clients.dynamodb.meta.events.unregister(
            "before-call.dynamodb.BatchGetItem", throttle
        )
    assert response == {
        "batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]
    }


def test_an_unregistered_serving_model_is_logged_and_the_bundle_still_used(
    stack: EmbedStack,
) -> None:
    current = CurrentIndex(
        version="20240504T101500Z-abc123", model="other-clip@7", count=0, built_at=""
    )
    write_current(stack.s3, BUCKET, current, expected_etag=None)
    body = stack.uploader.put("images/after.png", image_bytes(30))
    stack.invoke(sqs_event(body))
    (warning,) = [line for line in stack.logs.lines if line.get("serving_model")]
    assert (warning["level"], warning["bundle_model"]) == ("WARNING", stack.model_id)
    assert stack.store.get("images/after.png", stack.model_id).status == "ok"
