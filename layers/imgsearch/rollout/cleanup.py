"""Remove what archived and rejected models leave behind, once their retention has passed.

A model that left production stays whole for ``IMGSEARCH_MODEL_RETENTION_DAYS`` (7) so that
``imgsearch model rollback`` is one write; a rejected candidate keeps the embeddings its backfill
wrote for as long. After that, its table items and its index versions go, and its record says
when and how much::

    for removed in cleanup_models(settings, s3, store, dry_run=True):
        removed.model, removed.items, removed.bytes, removed.versions
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from imgsearch.catalog.current import read_current
from imgsearch.catalog.layout import version_key
from imgsearch.catalog.registry import ModelRecord, list_records, mark_cleaned
from imgsearch.catalog.rollout import read_rollout
from imgsearch.catalog.versions import delete_prefix, list_versions
from imgsearch.core.clock import now_iso
from imgsearch.core.config import Settings
from imgsearch.store import EmbeddingStore

logger = logging.getLogger(__name__)

CLEANABLE = frozenset({"archived", "rejected"})


@dataclass(frozen=True)
class Removed:
    model: str
    state: str
    since: str
    """When it left production (or was rejected)."""
    items: int = 0
    bytes: int = 0
    """Vector bytes of the items and the bytes of the index versions' files."""
    versions: tuple[str, ...] = ()

    def dump(self) -> dict[str, Any]:
        """The JSON shape ``imgsearch model cleanup --json`` prints and the function returns."""
        return {
            "model": self.model,
            "state": self.state,
            "since": self.since,
            "items": self.items,
            "bytes": self.bytes,
            "versions": list(self.versions),
        }


def due(record: ModelRecord, retention: timedelta, now: datetime) -> bool:
    if record.state not in CLEANABLE or record.cleaned or not record.history:
        return False
    since = datetime.fromisoformat(record.history[-1].at)
    return now - since >= retention


def cleanup_models(
    settings: Settings,
    s3: Any,
    store: EmbeddingStore,
    now: datetime | None = None,
    dry_run: bool = False,
) -> list[Removed]:
    """Clean every archived or rejected model past its retention; never the serving model or a
    rollout's candidate. ``dry_run``: say what would go, remove nothing."""
    now = now or datetime.now(UTC)
    retention = timedelta(days=settings.rollout.retention_days)
    current = read_current(s3, settings.bucket, settings.index.prefix)
    rollout = read_rollout(s3, settings.bucket)
    keep = {current.model if current else "", rollout.candidate if rollout else ""}
    prefix = settings.index.prefix
    removed = []
    for record in list_records(s3, settings.bucket):
        if record.model_id in keep or not due(record, retention, now):
            continue
        versions = tuple(
            v.version
            for v in list_versions(s3, settings.bucket, prefix)
            if v.report is not None
            and v.report.model == record.model_id
            and (current is None or v.version != current.version)
        )
        result = Removed(record.model_id, record.state, record.history[-1].at, versions=versions)
        if not dry_run:
            items, vector_bytes = store.delete_model(record.model_id)
            file_bytes = sum(
                delete_prefix(s3, settings.bucket, version_key(prefix, version, ""))[1]
                for version in versions
            )
            result = Removed(
                record.model_id,
                record.state,
                result.since,
                items=items,
                bytes=vector_bytes + file_bytes,
                versions=versions,
            )
            cleaned = {"at": now_iso(), "items": items, "bytes": result.bytes}
            mark_cleaned(s3, settings.bucket, record, {**cleaned, "versions": list(versions)})
            logger.info(
                "cleaned %s: %d items, %d index versions, %d bytes",
                record.model_id,
                items,
                len(versions),
                result.bytes,
            )
        removed.append(result)
    return removed
