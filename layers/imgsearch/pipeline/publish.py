"""Publish: make a validated version the serving one, prune old versions, report metrics.

``current.json`` is replaced only if it still names the version that served when the run's
snapshot was taken (a conditional write on the ETag read then). A run that lost the race to
another publisher, or to a rollback, fails with ``PublishConflict`` and changes nothing. The
winner then writes the version's ``published.json`` (``serve``, which rollback uses too), and
prunes by ``versions_to_delete``, which never deletes a racing run's candidate::

    result = publish_version(settings, s3, manifest, build)
    result.version, result.previous, result.deleted_versions
    for name, unit, value in publish_metrics(result): metrics.add_metric(name, unit, value)
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from imgsearch.catalog.current import CurrentIndex, write_current
from imgsearch.catalog.errors import PipelineError
from imgsearch.catalog.report import BuildResult, IndexReport, SnapshotManifest, read_report
from imgsearch.catalog.versions import (
    PublishRecord,
    delete_prefix,
    list_versions,
    versions_to_delete,
    write_publish_record,
)
from imgsearch.core.clock import now_iso, shift_iso
from imgsearch.core.config import Settings
from imgsearch.pipeline.contracts import PublishResult

logger = logging.getLogger(__name__)


class NotValidated(PipelineError):
    """The version has no report, or its report says a gate failed: it must not serve."""


def scan_started(snapshot: SnapshotManifest) -> str:
    """When the snapshot's scan began: ``taken_at`` (its end) less its duration; "" when
    ``taken_at`` is not a timestamp."""
    return shift_iso(snapshot.taken_at, -timedelta(seconds=snapshot.scan_seconds))


def current_from_report(report: IndexReport, previous: str) -> CurrentIndex:
    """The ``current.json`` that serves the version a (passed) report describes."""
    return CurrentIndex(
        version=report.version,
        model=report.model,
        count=report.build.count,
        built_at=report.build.built_at,
        scanned_from=scan_started(report.snapshot),
        published_at=now_iso(),
        snapshot_hash=report.snapshot.content_hash,
        dim=report.build.dim,
        engine=report.build.engine,
        dtype=report.build.dtype,
        previous=previous,
        expansion_search=report.ann.expansion_search,
        headline=report.headline,
    )


def validated_report(settings: Settings, s3: Any, version: str) -> IndexReport:
    report = read_report(s3, settings.bucket, settings.index.prefix, version)
    if report is None:
        raise NotValidated(f"version {version} has no report.json: it was never validated")
    if not report.passed:
        raise NotValidated(f"version {version} failed validation: {report.summary}")
    return report


def serve(settings: Settings, s3: Any, current: CurrentIndex, expected_etag: str | None) -> None:
    """Make ``current`` the serving index (``write_current``: conditional, may raise
    ``PublishConflict``), then record that its version served (``published.json``)."""
    prefix = settings.index.prefix
    write_current(s3, settings.bucket, current, expected_etag=expected_etag, prefix=prefix)
    record = PublishRecord(
        version=current.version, published_at=current.published_at, previous=current.previous
    )
    write_publish_record(s3, settings.bucket, prefix, record)


def prune_versions(settings: Settings, s3: Any, published: str) -> list[str]:
    """Delete the versions ``published`` made unnecessary (see ``versions_to_delete``)."""
    prefix = settings.index.prefix
    doomed = versions_to_delete(
        list_versions(s3, settings.bucket, prefix),
        published,
        settings.index.keep_versions,
        now=datetime.now(UTC),
        candidate_ttl=timedelta(seconds=settings.index.candidate_ttl_seconds),
    )
    for version in doomed:
        delete_prefix(s3, settings.bucket, f"{prefix}{version}/")
    if doomed:
        logger.info("publish: deleted %d old versions: %s", len(doomed), ", ".join(doomed))
    return doomed


def publish_version(
    settings: Settings, s3: Any, manifest: SnapshotManifest, build: BuildResult
) -> PublishResult:
    report = validated_report(settings, s3, build.version)
    current = current_from_report(report, previous=manifest.serving_version)
    serve(settings, s3, current, expected_etag=manifest.serving_etag or None)
    logger.info(
        "publish: %s now serves (was %s)", build.version, manifest.serving_version or "none"
    )
    deleted = prune_versions(settings, s3, build.version)
    delete_prefix(s3, settings.bucket, manifest.prefix)
    return PublishResult(
        version=build.version,
        previous=manifest.serving_version,
        published_at=current.published_at,
        count=build.count,
        index_bytes=build.index_bytes,
        build_seconds=build.build_seconds,
        headline=current.headline,
        deleted_versions=deleted,
    )


def publish_metrics(result: PublishResult) -> list[tuple[str, str, float]]:
    """(name, CloudWatch unit, value) of the figures a publish reports."""
    return [
        ("IndexSizeBytes", "Bytes", result.index_bytes),
        ("IndexVectors", "Count", result.count),
        ("BuildSeconds", "Seconds", result.build_seconds),
        ("IndexAgeSeconds", "Seconds", 0),
    ]
