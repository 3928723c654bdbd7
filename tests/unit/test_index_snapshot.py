"""Snapshot: the parallel scan keeps ok items of one model, streams aligned files, and hashes
the embedding set the same whatever order the segments return it in."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from imgsearch.core.clock import now_iso
from imgsearch.core.keys import image_id
from imgsearch.pipeline.snapshot import (
    IDS_FILE,
    KEYS_FILE,
    VECTORS_FILE,
    SnapshotError,
    scan_to_folder,
)
from imgsearch.store import EmbeddingRecord, EmbeddingStore

MODEL = "clip@1"


def record(key: str, vector: np.ndarray | None, status: str = "ok", model: str = MODEL):
    return EmbeddingRecord(
        key=key,
        model=model,
        id=image_id(key),
        status=status,  # type: ignore[arg-type]
        sequencer="1",
        updated_at=now_iso(),
        vector=vector,
        reason="corrupt" if status == "quarantined" else None,
    )


def fill(store: EmbeddingStore, n: int = 60, dim: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    vectors = {}
    for i in range(n):
        key = f"images/{i:03d}.jpg"
        vectors[key] = rng.standard_normal(dim).astype(np.float16).astype(np.float32)
        store.put(record(key, vectors[key]))
    store.put(record("images/bad.jpg", None, status="quarantined"))
    store.put(record("images/gone.jpg", None, status="deleted"))
    store.put(record("images/000.jpg", np.ones(dim, dtype=np.float32), model="other@2"))
    return vectors


def read(folder: Path, dim: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    vectors = np.fromfile(folder / VECTORS_FILE, dtype="<f2").reshape(-1, dim)
    ids = np.fromfile(folder / IDS_FILE, dtype="<i8")
    keys = [json.loads(line) for line in (folder / KEYS_FILE).read_text().splitlines()]
    return vectors, ids, keys


def test_scan_keeps_ok_items_of_the_model_in_aligned_files(store, tmp_path: Path) -> None:
    expected = fill(store)
    count, dim, _ = scan_to_folder(store, MODEL, tmp_path, segments=3, page_size=7)
    vectors, ids, keys = read(tmp_path, dim)
    assert (count, dim) == (60, 8) and sorted(keys) == sorted(expected)
    for row, key in enumerate(keys):
        assert ids[row] == image_id(key)
        assert np.array_equal(vectors[row].astype(np.float32), expected[key])


def test_content_hash_ignores_order_and_sees_any_change(store, tmp_path: Path) -> None:
    fill(store)
    hashes = set()
    for segments, page_size in ((1, 100), (3, 7), (4, 5)):
        folder = tmp_path / f"{segments}-{page_size}"
        folder.mkdir()
        hashes.add(scan_to_folder(store, MODEL, folder, segments, page_size)[2])
    assert len(hashes) == 1 and next(iter(hashes)).endswith("-60")
    changed = record("images/007.jpg", np.zeros(8, dtype=np.float32))
    store.put(dataclasses.replace(changed, sequencer="2"))
    (tmp_path / "after").mkdir()
    assert scan_to_folder(store, MODEL, tmp_path / "after", 2)[2] not in hashes


def test_mixed_dimensions_are_refused(store, tmp_path: Path) -> None:
    store.put(record("images/a.jpg", np.ones(8, dtype=np.float32)))
    store.put(record("images/b.jpg", np.ones(4, dtype=np.float32)))
    with pytest.raises(SnapshotError, match="dimensions in one model"):
        scan_to_folder(store, MODEL, tmp_path, segments=1, page_size=1)


def test_index_age_is_zero_when_current_and_grows_while_stale() -> None:
    from datetime import UTC, datetime

    from imgsearch.catalog.layout import new_version
    from imgsearch.pipeline.snapshot import SnapshotManifest, index_age_seconds

    built = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    base = SnapshotManifest(
        snapshot_id="s",
        prefix="snapshots/s/",
        model=MODEL,
        dim=4,
        count=1,
        content_hash="h",
        scan_seconds=0.1,
        segments=1,
        taken_at="t",
    )
    assert index_age_seconds(base) is None  # nothing serves yet
    serving = base.model_copy(update={"serving_version": new_version(built)})
    later = datetime(2026, 1, 1, 14, 0, 0, tzinfo=UTC)
    assert index_age_seconds(serving, later) == 7200.0
    assert index_age_seconds(serving.model_copy(update={"unchanged": True}), later) == 0.0
