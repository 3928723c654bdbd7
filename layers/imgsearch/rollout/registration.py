"""Registering a verified bundle: its files under ``models/<id>/``, then its record.

::

    bundle = open_bundle("models/clip-b32")
    record, new = register_bundle(s3, bucket, bundle, source="models/clip-b32", by="me")
    record.state      # "registered"; the same bundle again: (the existing record, False)
"""

from __future__ import annotations

from typing import Any

from imgsearch.catalog.registry import (
    ModelRecord,
    bundle_prefix,
    files_digest,
    read_record,
    register_record,
)
from imgsearch.core.clock import now_iso
from imgsearch.model.bundle import MANIFEST, Bundle, sha256_file
from imgsearch.model.errors import BundleError


def bundle_lineage(bundle: Bundle) -> dict[str, Any]:
    """What the manifest says of how the bundle was made."""
    manifest = bundle.manifest
    return {
        key: value
        for key, value in {
            "source": manifest.source,
            "license": manifest.license,
            "description": manifest.description,
            "parity": manifest.extra.get("parity"),
            "quantisation": manifest.extra.get("quantisation"),
        }.items()
        if value
    }


def register_bundle(
    s3: Any,
    bucket: str,
    bundle: Bundle,
    source: str,
    by: str,
    parent: str = "",
    lineage: dict[str, Any] | None = None,
) -> tuple[ModelRecord, bool]:
    """Upload ``bundle`` (and its checkpoint, when it carries one) and write its record.
    Returns (record, new): the same bundle registered again is the existing record."""
    manifest = bundle.manifest
    record = ModelRecord(
        model_id=manifest.model_id,
        registered_at=now_iso(),
        registered_by=by,
        source=source,
        parent=parent,
        bundle_sha256=files_digest(manifest.files),
        embedding_dim=manifest.embedding_dim,
        lineage={**bundle_lineage(bundle), **(lineage or {})},
    )
    existing = read_record(s3, bucket, record.model_id)
    if existing is None:
        names = [*manifest.files, MANIFEST]
        checkpoint = manifest.checkpoint_file
        if checkpoint and bundle.path(checkpoint).is_file():
            expected = manifest.extra["checkpoint"].get("sha256", "")
            if expected and sha256_file(bundle.path(checkpoint)) != expected:
                raise BundleError(str(bundle.path(checkpoint)), "sha256 mismatch with model.json")
            names.append(checkpoint)
        # Files first, record last: a record always names a complete bundle.
        prefix = bundle_prefix(record.model_id)
        for name in names:
            s3.upload_file(str(bundle.path(name)), bucket, prefix + name)
    return register_record(s3, bucket, record), existing is None
