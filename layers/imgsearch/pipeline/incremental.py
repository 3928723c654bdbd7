"""Builds that cost what changed: the serving version's index, changed by what the snapshot
changed, instead of every vector added again.

``plan_build`` decides, from the serving version's ``current.json`` and ``report.json``, whether
Build may start from it, and says why not: no serving version, another model, other index
settings (dimensions, scalar type, connectivity, expansion), or too many tombstones
(``IMGSEARCH_INDEX_INCREMENTAL_MAX_REMOVED``: usearch's ``remove`` leaves them and keeps their
memory, unum-cloud/USearch#726). ``apply_changes`` then compares the snapshot with the restored
index: ids only in the snapshot are added, ids only in the index removed, and an id in both whose
stored vector differs from the snapshot's (a new embedding of the key) is removed and added
again::

    plan = plan_build(settings, s3, manifest)
    if plan.mode == "incremental":
        index = restore_base(s3, settings, plan.base_version, folder)
        change = apply_changes(index, local.vectors, local.ids, settings.index, threads)
        change.added, change.removed, change.changed

Validate judges the result as it judges a full build; the report says which mode ran and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from usearch.index import Index

from imgsearch.catalog.current import read_current
from imgsearch.catalog.layout import INDEX_FILE, version_key
from imgsearch.catalog.report import SnapshotManifest, read_report
from imgsearch.core.config import IndexSettings, Settings
from imgsearch.core.vectors import prepare, scalar_name

logger = logging.getLogger(__name__)

COMPARE_BATCH = 65_536
"""Rows compared per step: bounds the float32 copies of stored and snapshot vectors."""
FLOAT_TOLERANCE = 2e-3
"""A stored float vector differs from the snapshot's past this (per component): float16
rounding is below 1e-3 on unit vectors, a new embedding of an image far above."""
I8_TOLERANCE = 1
"""The same for i8 rows: one quantisation step."""
MAX_CHANGED_SHARE = 0.5
"""Past this share of the snapshot added or replaced, a full build does less work."""


@dataclass(frozen=True)
class BuildPlan:
    mode: Literal["full", "incremental"]
    reason: str
    base_version: str = ""
    removed_before: int = 0
    """Tombstones the base index holds already (its report's ``removed_since_full``)."""


@dataclass(frozen=True)
class Change:
    added: int
    removed: int
    changed: int


def plan_build(settings: Settings, s3: Any, manifest: SnapshotManifest) -> BuildPlan:
    """Full or incremental, and why (the serving version named by the snapshot)."""
    options = settings.index
    if options.incremental_max_removed <= 0:
        return BuildPlan(
            "full", "incremental builds are off (IMGSEARCH_INDEX_INCREMENTAL_MAX_REMOVED=0)"
        )
    version = manifest.serving_version
    if not version:
        return BuildPlan("full", "no index is serving")
    current = read_current(s3, settings.bucket, options.prefix)
    if current is None or current.version != version:
        return BuildPlan("full", f"the serving index changed since the snapshot ({version})")
    if current.model != manifest.model:
        return BuildPlan("full", f"the model changed ({current.model} -> {manifest.model})")
    report = read_report(s3, settings.bucket, options.prefix, version)
    if report is None:
        return BuildPlan("full", f"the serving index {version} has no report")
    built = report.build
    wanted = (manifest.dim, options.dtype, options.connectivity, options.expansion_add)
    served = (built.dim, built.dtype, built.connectivity, built.expansion_add)
    if wanted != served:
        return BuildPlan(
            "full",
            "the index settings changed (dim, dtype, connectivity, expansion_add: "
            f"{served} -> {wanted})",
        )
    if built.removed_since_full / max(built.count, 1) >= options.incremental_max_removed:
        return BuildPlan(
            "full",
            f"{built.removed_since_full} tombstones in {version} reach "
            f"{options.incremental_max_removed:.0%} of its {built.count} entries",
        )
    return BuildPlan(
        "incremental",
        f"from {version}",
        base_version=version,
        removed_before=built.removed_since_full,
    )


def restore_base(s3: Any, settings: Settings, version: str, folder: Path) -> Index:
    """The serving version's index, downloaded and loaded whole (it is changed in memory)."""
    path = folder / f"base-{INDEX_FILE}"
    s3.download_file(
        settings.bucket, version_key(settings.index.prefix, version, INDEX_FILE), str(path)
    )
    index = Index.restore(str(path))
    path.unlink()
    return index


def _differs(stored: np.ndarray, fresh: np.ndarray, dtype: str) -> np.ndarray:
    tolerance = I8_TOLERANCE if dtype == "i8" else FLOAT_TOLERANCE
    return np.abs(stored.astype(np.float32) - fresh.astype(np.float32)).max(axis=1) > tolerance


def apply_changes(
    index: Index, vectors: np.ndarray, ids: np.ndarray, settings: IndexSettings, threads: int
) -> Change | None:
    """Turn ``index`` into the index of ``vectors`` under ``ids``; None (nothing changed in
    it) when so much changed that a full build does less work."""
    dtype = scalar_name(index.dtype)
    stored = np.asarray(index.keys, dtype=np.uint64).astype(np.int64)
    known = np.isin(ids, stored)
    gone = stored[~np.isin(stored, ids)]
    rows_changed: list[np.ndarray] = []
    known_rows = np.flatnonzero(known)
    for begin in range(0, len(known_rows), COMPARE_BATCH):
        rows = known_rows[begin : begin + COMPARE_BATCH]
        held = np.stack(
            index.get(ids[rows].astype(np.uint64), dtype=np.float32 if dtype != "i8" else np.int8)
        )
        fresh = prepare(vectors[rows], dtype)
        rows_changed.append(rows[_differs(held, fresh, dtype)])
    changed = np.concatenate(rows_changed) if rows_changed else np.empty(0, dtype=np.int64)
    added = np.flatnonzero(~known)
    if len(added) + len(changed) > MAX_CHANGED_SHARE * len(ids):
        return None
    for keys in (gone, ids[changed]):
        if len(keys):
            index.remove(keys.astype(np.uint64))
    rows = np.sort(np.concatenate([added, changed]))
    for begin in range(0, len(rows), COMPARE_BATCH):
        batch = rows[begin : begin + COMPARE_BATCH]
        index.add(ids[batch].astype(np.uint64), prepare(vectors[batch], dtype), threads=threads)
    logger.info(
        "build: incremental, %d added, %d removed, %d replaced", len(added), len(gone), len(changed)
    )
    return Change(added=len(added), removed=len(gone), changed=len(changed))
