"""The versions under the index prefix, their reports and publish records, and the rules for
keeping them and for rolling back.

Publish prunes with ``versions_to_delete``, rollback picks with ``rollback_target``, and
``imgsearch index list`` prints ``list_versions``::

    for info in list_versions(s3, bucket, "indexes/"):      # oldest first (``version_order``)
        info.version, info.status, info.published, info.figures.get("recall_at_10")
    write_publish_record(s3, bucket, "indexes/", PublishRecord(version=v, published_at=t))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from imgsearch.catalog.contract import Contract, Figure, read_object, write_object
from imgsearch.catalog.layout import (
    INDEX_FILES,
    KEYS_FILE,
    PUBLISHED_FILE,
    VERSION_PATTERN,
    is_legacy_version,
    version_key,
    version_order,
    version_time,
)
from imgsearch.catalog.report import IndexReport, read_report
from imgsearch.core.aws import object_exists

VersionStatus = Literal["validated", "rejected", "incomplete"]


class PublishRecord(Contract):
    """The contents of ``indexes/<version>/published.json``: the version served.

    Written by Publish, and by a rollback, once their conditional write of ``current.json``
    succeeded, so that "published" is a fact rather than a guess from names.
    """

    LABEL = "published.json"

    version: str
    published_at: str
    """The last time it was made the serving version (a rollback rewrites the record)."""
    previous: str = ""
    """The version it replaced."""


@dataclass(frozen=True)
class VersionInfo:
    """A version folder under the index prefix, with its report (not a file: a listing's row)."""

    version: str
    status: VersionStatus
    """``validated``: passed every gate; ``rejected``: a gate failed; ``incomplete``: no report
    (the run failed before or during validation) or files missing."""
    report: IndexReport | None = None
    record: PublishRecord | None = None
    """Its ``published.json``: ``None`` while it never served."""

    @property
    def figures(self) -> dict[str, Figure]:
        return self.report.headline if self.report else {}

    @property
    def published(self) -> bool:
        """It has served: it has a publish record, or it is a validated legacy version.

        Versions built before publish records existed (legacy names, to the second) have none;
        a validated one counts as published, so upgrading keeps them as rollback targets and
        prunes them by the same rule as any published version. A legacy candidate that lost a
        race counts too: it is one more rollback target, as it was before.
        """
        return self.record is not None or (
            self.status == "validated" and is_legacy_version(self.version)
        )


def list_version_names(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Version folder names under the prefix, oldest first (``version_order``)."""
    names: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"][len(prefix) :].rstrip("/")
            if VERSION_PATTERN.match(name):
                names.append(name)
    return sorted(names, key=version_order)


def has_artifacts(s3: Any, bucket: str, prefix: str, version: str) -> bool:
    """Its key table and an index file (of either engine) are there."""

    def exists(name: str) -> bool:
        return object_exists(s3, bucket, version_key(prefix, version, name))

    return exists(KEYS_FILE) and any(exists(name) for name in INDEX_FILES.values())


def read_publish_record(s3: Any, bucket: str, prefix: str, version: str) -> PublishRecord | None:
    """The version's ``published.json``; ``None`` when it never served (or is legacy)."""
    return read_object(s3, bucket, version_key(prefix, version, PUBLISHED_FILE), PublishRecord)


def write_publish_record(s3: Any, bucket: str, prefix: str, record: PublishRecord) -> str:
    key = version_key(prefix, record.version, PUBLISHED_FILE)
    return write_object(s3, bucket, key, record)


def version_info(s3: Any, bucket: str, prefix: str, version: str) -> VersionInfo:
    report = read_report(s3, bucket, prefix, version)
    record = read_publish_record(s3, bucket, prefix, version)
    if report is None:
        return VersionInfo(version, "incomplete", record=record)
    return VersionInfo(version, "validated" if report.passed else "rejected", report, record)


def list_versions(s3: Any, bucket: str, prefix: str) -> list[VersionInfo]:
    """Every version with its report and publish record, oldest first."""
    return [version_info(s3, bucket, prefix, v) for v in list_version_names(s3, bucket, prefix)]


def versions_to_delete(
    versions: list[VersionInfo],
    serving: str,
    keep: int,
    now: datetime,
    candidate_ttl: timedelta,
) -> list[str]:
    """The versions that publishing ``serving`` makes unnecessary, oldest first.

    Kept: ``serving``; the newest ``keep - 1`` published versions built before it (rollback
    targets); every published version built after it (roll-forward targets, after a
    rollback); and every unpublished validated or incomplete version younger than
    ``candidate_ttl`` (longer than a run may last: it may be the candidate of a run in flight,
    racing this one). Deleted: older published versions, rejected versions (their run has
    ended at the Gate), and unpublished versions older than ``candidate_ttl``.
    """
    ordered = sorted(versions, key=lambda v: version_order(v.version))
    cut = version_order(serving)
    before = [v.version for v in ordered if v.published and version_order(v.version) < cut]
    rollback_targets = set(before[-(keep - 1) :]) if keep > 1 else set()

    def doomed(info: VersionInfo) -> bool:
        if info.version == serving:
            return False
        if info.status == "rejected":
            return True
        if info.published:
            return version_order(info.version) < cut and info.version not in rollback_targets
        return now - version_time(info.version) > candidate_ttl

    return [v.version for v in ordered if doomed(v)]


def rollback_target(versions: list[VersionInfo], serving: str) -> VersionInfo | None:
    """The default target of a rollback: the newest validated, published version built before
    ``serving`` (a candidate that never served, such as a race's loser, is no step back)."""
    cut = version_order(serving)
    earlier = [
        v
        for v in versions
        if v.status == "validated" and v.published and version_order(v.version) < cut
    ]
    return max(earlier, key=lambda v: version_order(v.version), default=None)


def delete_prefix(s3: Any, bucket: str, prefix: str) -> tuple[int, int]:
    """Delete every object under ``prefix`` (a snapshot, an old version); returns how many
    objects and bytes."""
    objects = size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        contents = page.get("Contents", [])
        if contents:
            keys = [{"Key": o["Key"]} for o in contents]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            objects += len(contents)
            size += sum(int(o.get("Size", 0)) for o in contents)
    return objects, size
