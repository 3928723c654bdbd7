"""The embeddings table: ordering by sequencer, tombstones, GSIs, paged scans (moto)."""

from __future__ import annotations

import numpy as np

from imgsearch.core.keys import image_id
from imgsearch.store import EmbeddingRecord, EmbeddingStore, pad_sequencer

MODEL = "demo-clip@1"


def record(key: str, sequencer: str, status: str = "ok", **fields: object) -> EmbeddingRecord:
    vector = np.linspace(-1, 1, 8, dtype=np.float32) if status == "ok" else None
    return EmbeddingRecord(
        key=key,
        model=MODEL,
        id=image_id(key),
        status=status,
        sequencer=pad_sequencer(sequencer),
        updated_at="t",
        vector=vector,
        **fields,
    )


def test_sequencers_of_different_lengths_compare_in_event_order() -> None:
    assert pad_sequencer("0055AED6DCD90281E5") < pad_sequencer("0055AED6DCD90281E6")
    assert pad_sequencer("FF") < pad_sequencer("0100")


def test_round_trip_with_float16_vector(store: EmbeddingStore) -> None:
    assert store.put(record("images/a b+c.jpg", "01", sha256="h", etag="e", size=10))
    got = store.get("images/a b+c.jpg", MODEL)
    assert got is not None and got.sha256 == "h" and got.size == 10 and got.status == "ok"
    np.testing.assert_allclose(got.vector, np.linspace(-1, 1, 8), atol=1e-3)


def test_only_a_newer_event_wins(store: EmbeddingStore) -> None:
    assert store.put(record("images/a.jpg", "05"))
    assert not store.put(record("images/a.jpg", "05"))  # redelivered: nothing written
    assert not store.put(record("images/a.jpg", "04", status="deleted", deleted_at="t"))
    assert store.get("images/a.jpg", MODEL).status == "ok"
    assert store.put(record("images/a.jpg", "06", status="deleted", deleted_at="2026-01-01"))
    assert not store.put(record("images/a.jpg", "05"))  # a late put cannot resurrect it
    assert store.get("images/a.jpg", MODEL).status == "deleted"


def test_tombstones_are_listed_by_time(store: EmbeddingStore) -> None:
    store.put(record("images/old.jpg", "01", status="deleted", deleted_at="2026-01-01T00:00:00Z"))
    store.put(record("images/new.jpg", "01", status="deleted", deleted_at="2026-02-01T00:00:00Z"))
    store.put(record("images/live.jpg", "01"))
    assert [k for k, _ in store.deleted_since(MODEL)] == ["images/old.jpg", "images/new.jpg"]
    assert [k for k, _ in store.deleted_since(MODEL, "2026-01-15")] == ["images/new.jpg"]


def test_find_by_sha256_and_batch_get(store: EmbeddingStore) -> None:
    store.put(record("images/one.jpg", "01", sha256="same"))
    store.put(record("images/two.jpg", "01", status="quarantined", reason="corrupt", sha256="bad"))
    assert store.find_by_sha256("same", MODEL).key == "images/one.jpg"
    assert store.find_by_sha256("bad", MODEL) is None  # quarantined bytes are not reused
    found = store.batch_get([f"images/{n}.jpg" for n in ("one", "two", "three")] * 60, MODEL)
    assert sorted(found) == ["images/one.jpg", "images/two.jpg"]


def test_parallel_scan_pages_keep_ok_items_of_one_model(store: EmbeddingStore) -> None:
    for i in range(25):
        store.put(record(f"images/{i}.jpg", "01"))
    store.put(record("images/q.jpg", "01", status="quarantined", reason="empty"))
    store.put(
        EmbeddingRecord(
            key="images/0.jpg",
            model="other@2",
            id=image_id("images/0.jpg"),
            status="ok",
            sequencer="1",
            updated_at="t",
            vector=np.ones(4),
        )
    )
    keys = [
        r.key
        for seg in range(3)
        for page in store.scan_pages(MODEL, seg, 3, page_size=4)
        for r in page
    ]
    assert sorted(keys) == sorted(f"images/{i}.jpg" for i in range(25))
    assert store.models_for_key("images/0.jpg") == ["demo-clip@1", "other@2"]


def test_a_write_conditional_on_the_item_read_loses_to_any_write_since(store) -> None:
    key = "images/listed.png"
    assert store.put_if_unchanged(record(key, "0"), read=None)
    assert not store.put_if_unchanged(record(key, "0"), read=None), "the item exists now"
    read = store.get(key, MODEL)
    # An S3 event writes between the backfill's read and its write: the backfill loses.
    assert store.put(record(key, "0055AED6DCD90281E5"))
    assert not store.put_if_unchanged(record(key, "0"), read=read)
    assert store.get(key, MODEL).sequencer == pad_sequencer("0055AED6DCD90281E5")
    # Unchanged since read: the write goes through.
    latest = store.get(key, MODEL)
    assert store.put_if_unchanged(record(key, "0055AED6DCD90281E5", reason="again"), read=latest)
