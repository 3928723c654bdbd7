"""Builds that cost what changed: the serving version's index, changed by what the snapshot
changed, instead of every vector added again.

``plan_build`` decides, from the serving version's ``current.json`` and ``report.json``, whether
Build may start from it, and says why not: no serving version, another model, other index
settings (engine, dimensions, scalar type, connectivity, expansion), or too many tombstones
(``IMGSEARCH_INDEX_INCREMENTAL_MAX_REMOVED``: neither engine reclaims a removed vector's node,
unum-cloud/USearch#726, and faiss's HNSW cannot remove one at all: ``imgsearch.ann``).
``apply_changes`` then compares the snapshot with the restored index: ids only in the snapshot
are added, ids only in the index removed, and an id in both whose stored vector differs from
the snapshot's (a new embedding of the key) is removed and added again::

    plan = plan_build(settings, s3, manifest)
    if plan.mode == "incremental":
        index = restore_base(s3, settings, plan, folder)
        change = apply_changes(index, local.vectors, local.ids, threads)
        change.added, change.removed, change.changed

Validate judges the result as it judges a full build; the report says which mode ran and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from imgsearch.ann import AnnIndex, open_index
from imgsearch.catalog.current import read_current
from imgsearch.catalog.layout import index_file, version_key
from imgsearch.catalog.report import SnapshotManifest, read_report
from imgsearch.core.config import Settings

logger = logging.getLogger(__name__)

COMPARE_BATCH = 65_536
"""Rows compared per step: bounds the float32 copies of stored and snapshot vectors."""
MAX_CHANGED_SHARE = 0.5
"""Past this share of the snapshot added or replaced, a full build does less work."""


@dataclass(frozen=True)
class BuildPlan:
    mode: Literal["full", "incremental"]
    reason: str
    base_version: str = ""
    base_engine: str = ""
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
    wanted = (options.engine, manifest.dim, options.dtype)
    wanted += (options.connectivity, options.expansion_add)
    served = (built.engine, built.dim, built.dtype, built.connectivity, built.expansion_add)
    if wanted != served:
        return BuildPlan(
            "full",
            "the index settings changed (engine, dim, dtype, connectivity, expansion_add: "
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
        base_engine=built.engine,
        removed_before=built.removed_since_full,
    )


def restore_base(s3: Any, settings: Settings, plan: BuildPlan, folder: Path) -> AnnIndex:
    """The serving version's index, downloaded and loaded whole (it is changed in memory)."""
    name = index_file(plan.base_engine)
    path = folder / f"base-{name}"
    s3.download_file(
        settings.bucket, version_key(settings.index.prefix, plan.base_version, name), str(path)
    )
    index = open_index(plan.base_engine, path)
    path.unlink()
    return index


def apply_changes(
    index: AnnIndex, vectors: np.ndarray, ids: np.ndarray, threads: int
) -> Change | None:
    """Turn ``index`` into the index of ``vectors`` under ``ids``; None (nothing changed in
    it) when so much changed that a full build does less work."""
    stored = index.ids()
    known = np.isin(ids, stored)
    gone = stored[~np.isin(stored, ids)]
    rows_changed: list[np.ndarray] = []
    known_rows = np.flatnonzero(known)
    for begin in range(0, len(known_rows), COMPARE_BATCH):
        rows = known_rows[begin : begin + COMPARE_BATCH]
        rows_changed.append(rows[index.changed(ids[rows], vectors[rows])])
    changed = np.concatenate(rows_changed) if rows_changed else np.empty(0, dtype=np.int64)
    added = np.flatnonzero(~known)
    if len(added) + len(changed) > MAX_CHANGED_SHARE * len(ids):
        return None
    for keys in (gone, ids[changed]):
        if len(keys):
            index.remove(keys)
    rows = np.sort(np.concatenate([added, changed]))
    for begin in range(0, len(rows), COMPARE_BATCH):
        batch = rows[begin : begin + COMPARE_BATCH]
        index.add(ids[batch], vectors[batch], threads=threads)
    logger.info(
        "build: incremental, %d added, %d removed, %d replaced", len(added), len(gone), len(changed)
    )
    return Change(added=len(added), removed=len(gone), changed=len(changed))
