"""The versions under the index prefix, their reports, and the rules for keeping them.

Publish prunes with ``versions_to_delete``, rollback picks from ``list_versions``, and
``imgsearch index list`` prints it::

    for info in list_versions(s3, bucket, "indexes/"):
        info.version, info.status, info.figures.get("recall_at_10")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from imgsearch.catalog.contract import Figure
from imgsearch.catalog.layout import INDEX_FILE, KEYS_FILE, VERSION_PATTERN, version_key
from imgsearch.catalog.report import IndexReport, read_report
from imgsearch.core.aws import is_not_found

VersionStatus = Literal["validated", "rejected", "incomplete"]


@dataclass(frozen=True)
class VersionInfo:
    """A version folder under the index prefix, with its report (not a file: a listing's row)."""

    version: str
    status: VersionStatus
    """``validated``: passed every gate; ``rejected``: a gate failed; ``incomplete``: no report
    (the run failed before or during validation) or files missing."""
    report: IndexReport | None = None

    @property
    def figures(self) -> dict[str, Figure]:
        return self.report.headline if self.report else {}


def list_version_names(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Version folder names under the prefix, oldest first."""
    names: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"][len(prefix) :].rstrip("/")
            if VERSION_PATTERN.match(name):
                names.append(name)
    return sorted(names)


def has_artifacts(s3: Any, bucket: str, prefix: str, version: str) -> bool:
    for name in (INDEX_FILE, KEYS_FILE):
        try:
            s3.head_object(Bucket=bucket, Key=version_key(prefix, version, name))
        except ClientError as exc:
            if is_not_found(exc):
                return False
            raise
    return True


def version_info(s3: Any, bucket: str, prefix: str, version: str) -> VersionInfo:
    report = read_report(s3, bucket, prefix, version)
    if report is None:
        return VersionInfo(version, "incomplete")
    return VersionInfo(version, "validated" if report.passed else "rejected", report)


def list_versions(s3: Any, bucket: str, prefix: str) -> list[VersionInfo]:
    """Every version with its report, oldest first."""
    return [version_info(s3, bucket, prefix, v) for v in list_version_names(s3, bucket, prefix)]


def versions_to_delete(versions: list[VersionInfo], published: str, keep: int) -> list[str]:
    """Old versions that ``published`` makes unnecessary.

    Kept: ``published``, the newest ``keep - 1`` validated versions before it (rollback
    targets), and every version after it (runs still in flight). Deleted: everything else older
    than ``published`` - older validated versions, rejected and incomplete ones.
    """
    older = [v for v in versions if v.version < published]
    validated = [v.version for v in older if v.status == "validated"]
    kept = set(validated[-(keep - 1) :]) if keep > 1 else set()
    return [v.version for v in older if v.version not in kept]


def delete_prefix(s3: Any, bucket: str, prefix: str) -> int:
    """Delete every object under ``prefix`` (a snapshot, an old version); returns the count."""
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            deleted += len(objects)
    return deleted
