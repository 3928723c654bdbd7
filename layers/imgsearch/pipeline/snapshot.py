"""Snapshot: the embeddings the next index is built from, scanned from the table into S3.

A parallel scan (``settings.index.scan_segments`` segments, one thread each) keeps the ``ok``
items of the serving model and streams them, a page at a time, into three local files, then
uploads them with ``snapshot.json`` under ``<snapshot_prefix><snapshot id>/``::

    vectors.f16    count x dim little-endian float16, row i belongs to ids[i] and keys[i]
    ids.i64        count little-endian int64 stable image ids
    keys.jsonl     count lines, one JSON string (the S3 key) each
    snapshot.json  counts, dim, model, the content hash and the newest images (``recent``, at
                   most ``IMGSEARCH_RECENT_IMAGES``: ``pipeline.recent``) (``SnapshotManifest``,
                   defined in ``imgsearch.catalog.report``: each version's report records it)

Memory stays bounded by a page per segment whatever the table holds. The content hash is
order-free (the sum, mod 2**128, of blake2b-128 over each item's id and float16 vector), so two
scans of the same embedding set hash alike although parallel scans return pages in any order::

    result = take_snapshot(settings, s3, store, force=False)
    result.unchanged       # True: the serving index was built from this very embedding set
    local = LocalSnapshot.download(s3, settings.bucket, result.manifest_key, workdir)
    local.vectors.shape    # (count, dim) float16 memmap
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from imgsearch.catalog.current import CurrentIndex, read_current
from imgsearch.catalog.errors import ContractError, PipelineError
from imgsearch.catalog.layout import new_version, version_time
from imgsearch.catalog.report import SnapshotManifest
from imgsearch.core.clock import now_iso
from imgsearch.core.config import Settings
from imgsearch.model.bundle import bundle_model_id
from imgsearch.pipeline.contracts import StartInput
from imgsearch.pipeline.recent import NewestImages
from imgsearch.store import EmbeddingRecord, EmbeddingStore

logger = logging.getLogger(__name__)

VECTORS_FILE = "vectors.f16"
IDS_FILE = "ids.i64"
KEYS_FILE = "keys.jsonl"
_HASH_MASK = (1 << 128) - 1


class SnapshotError(PipelineError):
    """The table holds embeddings that cannot share one index."""


def parse_start_input(event: Any) -> StartInput:
    """The execution input (``StartInput``): ``{}``, ``{"force": true}``, ``{"model": ...}``."""
    if event is None:
        return StartInput()
    if not isinstance(event, dict):
        raise ContractError(
            f'the execution input must be a JSON object such as {{"force": true}}, got {event!r}'
        )
    return StartInput.parse(event)


def serving_model(settings: Settings, current: CurrentIndex | None, s3: Any) -> str:
    """The model whose embeddings the index holds: the serving index's, else the configured one."""
    if current is not None:
        return current.model
    return bundle_model_id(settings.model.uri, s3, settings.model.cache_dir)


class _SnapshotWriter:
    """Appends pages to the three files under one lock, so row i is the same item in each."""

    def __init__(self, folder: Path, recent: NewestImages | None = None) -> None:
        self.folder = folder
        self.recent = recent
        self._lock = threading.Lock()
        self._vectors: IO[bytes] = (folder / VECTORS_FILE).open("wb")
        self._ids: IO[bytes] = (folder / IDS_FILE).open("wb")
        self._keys: IO[str] = (folder / KEYS_FILE).open("w", encoding="utf-8")
        self.count = 0
        self.dim = 0
        self.hash_sum = 0

    def add_page(self, records: list[EmbeddingRecord]) -> None:
        rows = [r for r in records if r.vector is not None]
        if not rows:
            return
        vectors = np.stack([r.vector for r in rows]).astype("<f2")
        ids = np.fromiter((r.id for r in rows), dtype="<i8", count=len(rows))
        page_hash = 0
        id_bytes = ids.tobytes()
        for i in range(len(rows)):
            digest = hashlib.blake2b(
                id_bytes[8 * i : 8 * i + 8] + vectors[i].tobytes(), digest_size=16
            ).digest()
            page_hash += int.from_bytes(digest, "little")
        keys = "".join(json.dumps(r.key, ensure_ascii=False) + "\n" for r in rows)
        with self._lock:
            if self.dim and vectors.shape[1] != self.dim:
                raise SnapshotError(
                    f"embeddings of {vectors.shape[1]} and {self.dim} dimensions in one model"
                )
            self.dim = vectors.shape[1]
            self._vectors.write(vectors.tobytes())
            self._ids.write(id_bytes)
            self._keys.write(keys)
            self.count += len(rows)
            self.hash_sum = (self.hash_sum + page_hash) & _HASH_MASK
            if self.recent is not None:
                self.recent.add(rows)

    def close(self) -> None:
        for handle in (self._vectors, self._ids, self._keys):
            handle.close()

    @property
    def content_hash(self) -> str:
        return f"{self.hash_sum:032x}-{self.count}"


def scan_to_folder(
    store: EmbeddingStore,
    model: str,
    folder: Path,
    segments: int,
    page_size: int = 1000,
    recent: NewestImages | None = None,
) -> tuple[int, int, str]:
    """Scan the ``ok`` items of ``model`` into ``folder``: returns (count, dim, content hash).

    ``recent``, when given, is fed every item written (the newest images, for ``recent.json``).
    """
    writer = _SnapshotWriter(folder, recent)
    progress_lock = threading.Lock()
    pages = 0

    def scan_segment(segment: int) -> None:
        nonlocal pages
        for page in store.scan_pages(model, segment, segments, status="ok", page_size=page_size):
            writer.add_page(page)
            with progress_lock:
                pages += 1
                if pages % 100 == 0:
                    logger.info("snapshot: %d pages, %d items so far", pages, writer.count)

    try:
        with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="scan") as pool:
            # list() re-raises the first segment's error here.
            list(pool.map(scan_segment, range(segments)))
    finally:
        writer.close()
    return writer.count, writer.dim, writer.content_hash


def index_age_seconds(manifest: SnapshotManifest, now: datetime | None = None) -> float | None:
    """How stale the serving index is, for the ``IndexAgeSeconds`` alarm.

    0 when the snapshot shows it holds the current embedding set (nothing to rebuild); else the
    time since it was built, which keeps growing while runs fail or are rejected. ``None`` before
    the first publish.
    """
    if not manifest.serving_version:
        return None
    if manifest.unchanged:
        return 0.0
    now = now or datetime.now(UTC)
    return max(0.0, (now - version_time(manifest.serving_version)).total_seconds())


def take_snapshot(
    settings: Settings,
    s3: Any,
    store: EmbeddingStore,
    force: bool = False,
    workdir: str | None = None,
    model: str = "",
) -> SnapshotManifest:
    """Scan the table for ``model`` (default: the serving one); upload the snapshot unless it
    equals the serving index's (and not forced)."""
    current = read_current(s3, settings.bucket, settings.index.prefix)
    model = model or serving_model(settings, current, s3)
    snapshot_id = new_version()
    prefix = f"{settings.index.snapshot_prefix}{snapshot_id}/"
    segments = settings.index.scan_segments
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        recent = NewestImages(settings.index.recent_images)
        count, dim, content_hash = scan_to_folder(
            store, model, Path(folder), segments, recent=recent
        )
        manifest = SnapshotManifest(
            snapshot_id=snapshot_id,
            prefix=prefix,
            model=model,
            dim=dim,
            count=count,
            content_hash=content_hash,
            scan_seconds=round(time.perf_counter() - started, 3),
            segments=segments,
            taken_at=now_iso(),
            serving_version=current.version if current else "",
            serving_etag=current.etag if current else "",
            recent=recent.images(),
        )
        logger.info(
            "snapshot: %d items of %s (dim %d) in %.1f s", count, model, dim, manifest.scan_seconds
        )
        if count == 0:
            # A fresh stack on its schedule: nothing to do is a skip, not a failed run (which
            # would raise the failed-pipeline alarm every hour until the first upload).
            kept = f"; the serving index {current.version} stays" if current else ""
            reason = f"nothing to index: no ok embeddings of {model} in the table yet{kept}"
            return manifest.model_copy(update={"unchanged": True, "reason": reason})
        if current is not None and current.snapshot_hash == content_hash and not force:
            reason = (
                f"nothing changed: the serving index {current.version} holds the same "
                f'{count} embeddings of {model} (start with {{"force": true}} to rebuild)'
            )
            return manifest.model_copy(update={"unchanged": True, "reason": reason})
        for name in (VECTORS_FILE, IDS_FILE, KEYS_FILE):
            s3.upload_file(str(Path(folder) / name), settings.bucket, prefix + name)
    s3.put_object(
        Bucket=settings.bucket,
        Key=manifest.manifest_key,
        Body=manifest.to_json(),
        ContentType="application/json",
    )
    return manifest


@dataclass(frozen=True)
class LocalSnapshot:
    """A snapshot downloaded to local disk: float16 vectors (memmap), ids and keys."""

    manifest: SnapshotManifest
    vectors: np.ndarray
    ids: np.ndarray
    folder: Path

    def keys(self) -> list[str]:
        with (self.folder / KEYS_FILE).open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]

    @classmethod
    def download(
        cls, s3: Any, bucket: str, manifest: SnapshotManifest, folder: Path
    ) -> LocalSnapshot:
        for name in (VECTORS_FILE, IDS_FILE, KEYS_FILE):
            s3.download_file(bucket, manifest.prefix + name, str(folder / name))
        vectors = np.memmap(
            folder / VECTORS_FILE, dtype="<f2", mode="r", shape=(manifest.count, manifest.dim)
        )
        ids = np.fromfile(folder / IDS_FILE, dtype="<i8")
        if len(ids) != manifest.count:
            raise SnapshotError(
                f"snapshot {manifest.snapshot_id}: {len(ids)} ids but snapshot.json says "
                f"{manifest.count}"
            )
        return cls(manifest=manifest, vectors=vectors, ids=ids, folder=folder)
