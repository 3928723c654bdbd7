"""The backfill end to end: a bucket filled before the stack existed, the real ASL on moto's
Distributed Map, the real handlers; then re-runs, racing S3 events and injected faults."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from backfill_support import SERVICE_BUCKET, USER_BUCKET, BackfillStack, backfill_stack
from ingest_support import bad_image, image_bytes
from PIL import Image
from skimage import data as photos

from imgsearch.ingest.pipeline import BACKFILL_SEQUENCER


def jpeg(pixels: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


PHOTOS = {
    "images/photos/astronaut.jpg": lambda: jpeg(photos.astronaut()),
    "images/photos/coffee.jpg": lambda: jpeg(photos.coffee()),
    "images/photos/chelsea the cat.jpg": lambda: jpeg(photos.chelsea()),
    "images/photos/rocket+launch.jpg": lambda: jpeg(photos.rocket()),
}
AWKWARD = ["images/ünïcödé/ñ 1.png", "images/100%/a%2Bb.png", "images/deep/a/b/c/d.PNG"]
BAD = {"images/bad/truncated.png": "truncated", "images/bad/not-an-image.png": "not_an_image"}
IGNORED = ["images/notes.txt", "images/folder/"]
OUTSIDE = ["other/x.png", "imagesX/y.png"]


class Bucket:
    """What the user's bucket held before the stack: key -> bytes, by kind."""

    def __init__(self) -> None:
        self.good: dict[str, bytes] = {key: make() for key, make in PHOTOS.items()}
        for n, key in enumerate(AWKWARD):
            self.good[key] = image_bytes(100 + n)
        for n in range(8):
            self.good[f"images/plain/{n:02d}.png"] = image_bytes(n)
        # The same bytes under another key: embedded once, the copy reuses the vector.
        self.good["images/copies/astronaut again.jpg"] = self.good["images/photos/astronaut.jpg"]
        self.bad = {key: bad_image(kind, 7) for key, kind in BAD.items()}

    def fill(self, s3: Any) -> None:
        for key, body in {**self.good, **self.bad}.items():
            s3.put_object(Bucket=USER_BUCKET, Key=key, Body=body)
        for key in IGNORED + OUTSIDE:
            s3.put_object(Bucket=USER_BUCKET, Key=key, Body=b"x" if key.endswith("/") else b"hi")


def check_table(stack: BackfillStack, bucket: Bucket) -> None:
    items = stack.items()
    ok = {k for k, r in items.items() if r.status == "ok"}
    assert ok == set(bucket.good)
    quarantined = {k: r.reason for k, r in items.items() if r.status == "quarantined"}
    assert set(quarantined) == set(bucket.bad)
    assert all(quarantined.values())
    for key, record in items.items():
        body = bucket.good.get(key) or bucket.bad[key]
        assert record.sha256 == hashlib.sha256(body).hexdigest(), key
        assert record.sequencer == BACKFILL_SEQUENCER
        assert record.model == stack.model_id


def test_a_backfill_embeds_exactly_the_images_the_bucket_held(tmp_path: Path) -> None:
    bucket = Bucket()
    # Chunks of 3 and listing calls of 4 objects: several chunks, and the List -> ListMore loop.
    with backfill_stack(
        tmp_path, fill=bucket.fill, IMGSEARCH_BACKFILL_LIST_OBJECTS_PER_CALL="4"
    ) as stack:
        described = stack.run({"chunk_size": 3, "max_concurrency": 2})
        assert described["status"] == "SUCCEEDED", described
        check_table(stack, bucket)
        report = stack.report(described)
        images = len(bucket.good) + len(bucket.bad)
        assert report["status"] == "succeeded"
        assert report["listed"] == images + len(IGNORED)
        assert (report["queued"], report["ignored"]) == (images, len(IGNORED))
        # Four objects a listing call: each call ends its last chunk, whole or not.
        listing_calls = len(stack.dispatch.calls("BackfillListFunction"))
        assert listing_calls == -(-report["listed"] // 4)
        assert -(-images // 3) <= report["chunks"] <= listing_calls * 2
        assert report["embedded"] == len(bucket.good)
        assert report["reused"] == 1
        assert report["model_images"] == len(bucket.good) - 1
        assert sum(report["quarantined"].values()) == len(bucket.bad)
        assert report["failed"] == 0 and report["chunks_failed"] == 0
        assert stack.alerts() == []
        listing = stack.s3.list_objects_v2(Bucket=SERVICE_BUCKET, Prefix="backfill/backfill-1/")
        assert listing["KeyCount"] > 0
        # Nothing was written to the user's bucket.
        keys = {o["Key"] for o in stack.s3.list_objects_v2(Bucket=USER_BUCKET)["Contents"]}
        assert keys == set(bucket.good) | set(bucket.bad) | set(IGNORED) | set(OUTSIDE)

        # A second run: every object is already embedded, no model call, nothing rewritten.
        before = {k: r.to_item() for k, r in stack.items().items()}
        again = stack.run({})
        assert again["status"] == "SUCCEEDED", again
        second = stack.report(again)
        assert second["model_images"] == 0
        assert second["embedded"] == 0
        assert second["skipped"] == {"unchanged": images}
        assert {k: r.to_item() for k, r in stack.items().items()} == before


def test_the_listing_goes_on_across_calls_and_chunks_stay_whole(tmp_path: Path) -> None:
    def fill(s3: Any) -> None:
        body = image_bytes(1)
        for n in range(25):
            s3.put_object(Bucket=USER_BUCKET, Key=f"images/{n:03d}.png", Body=body)

    with backfill_stack(tmp_path, fill=fill, IMGSEARCH_BACKFILL_LIST_OBJECTS_PER_CALL="1") as s:
        # One chunk at a time: each later chunk finds the bytes embedded (by-sha256).
        described = s.run({"chunk_size": 10, "max_concurrency": 1})
        assert described["status"] == "SUCCEEDED", described
        report = s.report(described)
        assert report["queued"] == 25
        assert report["embedded"] == 25 and report["model_images"] == 1
        # One object a call: 25 calls (and one more that finds the listing's end), 25 chunks.
        assert len(s.dispatch.calls("BackfillListFunction")) in (25, 26)
        assert {o["chunk"] for o in _results(s)} == set(range(1, report["chunks"] + 1))


def _results(stack: BackfillStack) -> list[dict[str, Any]]:
    listing = stack.s3.list_objects_v2(Bucket=SERVICE_BUCKET, Prefix="backfill/backfill-1/results/")
    return [
        json.loads(stack.s3.get_object(Bucket=SERVICE_BUCKET, Key=o["Key"])["Body"].read())
        for o in listing.get("Contents", [])
    ]


def test_real_events_win_over_a_backfill(tmp_path: Path) -> None:
    """Uploads and deletes racing with a run end with the newest state, in every interleaving:
    a backfill write only fills what is missing or older than the object."""
    originals = {f"images/race/{n:02d}.png": image_bytes(200 + n) for n in range(12)}

    def fill(s3: Any) -> None:
        for key, body in originals.items():
            s3.put_object(Bucket=USER_BUCKET, Key=key, Body=body)

    with backfill_stack(tmp_path, fill=fill) as stack:
        up = stack.uploader
        overwritten = {key: image_bytes(300 + n) for n, key in enumerate(sorted(originals)[:4])}
        deleted = sorted(originals)[4:8]

        def race() -> None:
            for key, body in overwritten.items():
                stack.event(up.put(key, body))
            for key in deleted:
                stack.event(up.delete(key))

        execution = stack.start({"chunk_size": 2, "max_concurrency": 3})
        racer = threading.Thread(target=race)
        racer.start()
        racer.join()
        described = stack.wait(execution)
        assert described["status"] == "SUCCEEDED", described
        items = stack.items()
        for key, body in overwritten.items():
            assert items[key].status == "ok"
            assert items[key].sha256 == hashlib.sha256(body).hexdigest(), key
            assert items[key].sequencer != BACKFILL_SEQUENCER
        for key in deleted:
            assert items[key].status == "deleted", key
        for key in sorted(originals)[8:]:
            assert items[key].sha256 == hashlib.sha256(originals[key]).hexdigest()

        # A later event of a key the backfill wrote replaces it.
        key = sorted(originals)[-1]
        assert items[key].sequencer == BACKFILL_SEQUENCER
        newer = image_bytes(999)
        stack.event(up.put(key, newer))
        assert stack.items()[key].sha256 == hashlib.sha256(newer).hexdigest()


def test_an_object_changed_without_an_event_is_filled_by_the_next_backfill(tmp_path: Path) -> None:
    with backfill_stack(tmp_path) as stack:
        key = "images/lost-event.png"
        stack.event(stack.uploader.put(key, image_bytes(1)))
        # Overwritten while events were not flowing: the table's item is older than the object.
        stack.s3.put_object(Bucket=USER_BUCKET, Key=key, Body=image_bytes(2))
        described = stack.run({})
        assert described["status"] == "SUCCEEDED", described
        assert stack.items()[key].sha256 == hashlib.sha256(image_bytes(2)).hexdigest()
        assert stack.report(described)["embedded"] == 1


def test_a_failing_chunk_retries_and_a_chunk_that_gives_up_is_reported(tmp_path: Path) -> None:
    def fill(s3: Any) -> None:
        for n in range(6):
            s3.put_object(Bucket=USER_BUCKET, Key=f"images/{n}.png", Body=image_bytes(n))

    with backfill_stack(tmp_path, fill=fill) as stack:
        chunk_function = "BackfillChunkFunction"
        # Lambda throttles twice: the state's Retry takes it, nothing is lost.
        stack.dispatch.fail_next(chunk_function, "Lambda.TooManyRequestsException", times=2)
        described = stack.run({"chunk_size": 2, "max_concurrency": 1})
        assert described["status"] == "SUCCEEDED", described
        report = stack.report(described)
        assert (report["status"], report["embedded"], report["failed"]) == ("succeeded", 6, 0)

        # A function error that no retry helps (the sandbox ran out of memory): recorded, the
        # run goes on with the other chunks, reports the chunk's objects as failed, alerts.
        stack.s3.put_object(Bucket=USER_BUCKET, Key="images/0-new/a.png", Body=image_bytes(50))
        stack.s3.put_object(Bucket=USER_BUCKET, Key="images/0-new/b.png", Body=image_bytes(51))
        # The first chunk in key order holds the two new images.
        stack.dispatch.fail_next(chunk_function, "Runtime.OutOfMemory", "out of memory")
        failed = stack.run({"chunk_size": 2, "max_concurrency": 1})
        assert failed["status"] == "SUCCEEDED", failed
        report = stack.report(failed)
        assert report["status"] == "completed_with_failures"
        assert (report["chunks_failed"], report["failed"]) == (1, 2)
        assert "Runtime.OutOfMemory" in report["failures"][0]["error"]
        alerts = stack.alerts()
        assert len(alerts) == 1 and "completed_with_failures" in alerts[0]["Subject"]
        # Re-running fills the gap and embeds nothing twice.
        again = stack.run({"chunk_size": 2})
        third = stack.report(again)
        assert (third["status"], third["embedded"], third["failed"]) == ("succeeded", 2, 0)
        assert third["skipped"] == {"unchanged": 6}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"prefix": "other/"}, "outside the image prefix"),
        ({"model": "clip-b32@9"}, "cannot backfill with clip-b32@9"),
        ({"max_concurrency": 10_000}, "above the stack's limit"),
        ({"force": "yes"}, '"force" must be true or false'),
        ({"inventory": "s3://b/not-a-manifest.csv"}, "inventory must be the s3:// URI"),
    ],
)
def test_a_bad_input_fails_the_run_at_once_with_a_report(
    tmp_path: Path, payload: dict[str, Any], message: str
) -> None:
    with backfill_stack(tmp_path) as stack:
        described = stack.run(payload)
        assert described["status"] == "FAILED"
        assert message in described.get("cause", ""), described
        report = stack.report(described)
        assert report["status"] == "failed" and message in report["error"]
        assert stack.dispatch.calls("BackfillChunkFunction") == []
        assert len(stack.alerts()) == 1
