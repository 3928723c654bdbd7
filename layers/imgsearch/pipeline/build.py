"""Build: an HNSW index over a snapshot, keyed by the stable 63-bit image ids.

Cosine similarity; the engine (faiss by default, or usearch: :mod:`imgsearch.ann`), the stored
scalar type (``f16`` by default, or ``f32``; ``i8`` with usearch), connectivity and expansion
come from ``settings.index``. Vectors are added in batches straight from the snapshot's
float16 memmap, on every thread the function has::

    index = build_index(local.vectors, local.ids, settings.index, threads=6)
    result = build_version(settings, s3, manifest)   # uploads indexes/<version>/index.faiss,
                                                     # keys, recent.json and reference.npy

When the serving index was built from the same model at the same settings, Build starts from
it and changes only what the snapshot changed (``imgsearch.pipeline.incremental``); the result
says which mode ran and why. The saved file carries its scalar type and dimensions, and the
result its engine, so the query function opens it memory-mapped
(``open_index(engine, path, view=True)``) and gets the same index back. ``BuildResult``, the
step's output, is part of the version's report: :mod:`imgsearch.catalog.report` defines it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.ann import AnnIndex, new_index
from imgsearch.catalog.errors import PipelineError
from imgsearch.catalog.keytable import KeyTable
from imgsearch.catalog.layout import KEYS_FILE, index_file, new_version, version_key
from imgsearch.catalog.recent import RecentImages, write_recent
from imgsearch.catalog.reference import sample_rows, write_reference
from imgsearch.catalog.report import BuildResult, SnapshotManifest
from imgsearch.core.clock import now_iso
from imgsearch.core.config import IndexSettings, Settings
from imgsearch.core.vectors import metric_for
from imgsearch.pipeline.incremental import (
    BuildPlan,
    Change,
    apply_changes,
    plan_build,
    restore_base,
)
from imgsearch.pipeline.snapshot import LocalSnapshot
from imgsearch.pipeline.validate import content_rng

logger = logging.getLogger(__name__)

ADD_BATCH = 65_536
"""Rows converted and added per call: bounds the float32 copy made of each batch."""


class BuildError(PipelineError):
    """The snapshot cannot become an index (duplicate ids, or the index lost vectors)."""


def check_unique(ids: np.ndarray) -> None:
    ordered = np.sort(ids)
    clashes = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(clashes):
        raise BuildError(f"{len(clashes)} duplicate image ids, e.g. {int(clashes[0])}")


def build_index(
    vectors: np.ndarray, ids: np.ndarray, settings: IndexSettings, threads: int
) -> AnnIndex:
    """Add ``vectors`` (rows, any float dtype) under ``ids`` to a new index, in batches."""
    if len(vectors) != len(ids):
        raise BuildError(f"{len(vectors)} vectors but {len(ids)} ids")
    check_unique(ids)
    index = new_index(settings.engine, vectors.shape[1], settings)
    started = time.perf_counter()
    for begin in range(0, len(ids), ADD_BATCH):
        end = min(begin + ADD_BATCH, len(ids))
        index.add(ids[begin:end], vectors[begin:end], threads=threads)
        logger.info(
            "build: %d/%d vectors added (%.1f s)", end, len(ids), time.perf_counter() - started
        )
    if len(index) != len(ids):
        raise BuildError(f"index holds {len(index)} vectors, snapshot {len(ids)}")
    return index


def build_version(
    settings: Settings, s3: Any, manifest: SnapshotManifest, workdir: str | None = None
) -> BuildResult:
    """Download the snapshot, build, upload the index and ``keys`` under a new version."""
    version = new_version()
    threads = settings.model.threads
    with tempfile.TemporaryDirectory(dir=workdir) as name:
        folder = Path(name)
        local = LocalSnapshot.download(s3, settings.bucket, manifest, folder)
        plan = plan_build(settings, s3, manifest)
        started = time.perf_counter()
        index, change, plan = _build(settings, s3, local, plan, folder, threads)
        build_seconds = time.perf_counter() - started
        index_name = index_file(index.engine)
        index_path, keys_path = folder / index_name, folder / KEYS_FILE
        index.save(index_path)
        KeyTable.write(keys_path, local.ids, local.keys())
        index_key = version_key(settings.index.prefix, version, index_name)
        keys_key = version_key(settings.index.prefix, version, KEYS_FILE)
        s3.upload_file(str(index_path), settings.bucket, index_key)
        s3.upload_file(str(keys_path), settings.bucket, keys_key)
        # What the drift monitor compares new images with, while this version serves.
        reference = sample_rows(
            local.vectors, settings.monitor.reference_samples, content_rng(manifest)
        )
        write_reference(s3, settings.bucket, settings.index.prefix, version, reference)
        # The page's first view: the snapshot's newest images, served with this version.
        write_recent(
            s3,
            settings.bucket,
            settings.index.prefix,
            RecentImages(version=version, images=manifest.recent),
        )
        result = BuildResult(
            version=version,
            index_key=index_key,
            keys_key=keys_key,
            count=len(index),
            dim=manifest.dim,
            engine=index.engine,
            metric=metric_for(settings.index.dtype),
            dtype=settings.index.dtype,
            connectivity=settings.index.connectivity,
            expansion_add=settings.index.expansion_add,
            threads=threads,
            build_seconds=round(build_seconds, 3),
            index_bytes=index_path.stat().st_size,
            keys_bytes=keys_path.stat().st_size,
            memory_bytes=index.memory_usage,
            built_at=now_iso(),
            mode=plan.mode,
            mode_reason=plan.reason,
            base_version=plan.base_version,
            added=change.added if change else 0,
            removed=change.removed if change else 0,
            changed=change.changed if change else 0,
            removed_since_full=(
                plan.removed_before + change.removed + change.changed if change else 0
            ),
        )
    logger.info(
        "build: version %s (%s: %s), %d vectors, %.1f s on %d threads, %d bytes",
        version,
        result.mode,
        result.mode_reason,
        result.count,
        result.build_seconds,
        threads,
        result.index_bytes,
    )
    return result


def _build(
    settings: Settings,
    s3: Any,
    local: LocalSnapshot,
    plan: BuildPlan,
    folder: Path,
    threads: int,
) -> tuple[AnnIndex, Change | None, BuildPlan]:
    """The index of ``local``: from the serving one when ``plan`` says so and the change is
    small enough, else built from scratch (the plan then says why)."""
    if plan.mode == "incremental":
        index = restore_base(s3, settings, plan, folder)
        change = apply_changes(index, local.vectors, local.ids, threads)
        if change is not None:
            if len(index) != len(local.ids):
                raise BuildError(f"index holds {len(index)} vectors, snapshot {len(local.ids)}")
            return index, change, plan
        plan = BuildPlan(
            "full", f"more than half of the snapshot is new or changed since {plan.base_version}"
        )
    return build_index(local.vectors, local.ids, settings.index, threads), None, plan
