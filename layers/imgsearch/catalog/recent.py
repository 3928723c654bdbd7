"""``indexes/<version>/recent.json``: the newest images of the snapshot a version was built from.

The Snapshot step keeps the newest ``IMGSEARCH_RECENT_IMAGES`` ok items it scans (by
``updated_at``, then key) in its manifest; Build writes them beside the index; the query
function reads them with the version it serves, for ``GET /recent`` (the page's first view).
No GSI by time: at backfill rates one would be a hot partition per model, while the scan reads
every item anyway::

    write_recent(s3, bucket, "indexes/", RecentImages(version=v, images=manifest.recent))
    recent = read_recent(s3, bucket, "indexes/", v)    # None: built before recent.json existed
    [image.key for image in recent.images]             # newest first
"""

from __future__ import annotations

from typing import Any

from imgsearch.catalog.contract import Contract, Part, read_object, write_object
from imgsearch.catalog.layout import RECENT_FILE, version_key


class RecentImage(Part):
    """One image of the list: its S3 key, stable id and when its embedding was written."""

    key: str
    id: int
    updated_at: str


def rank(images: list[RecentImage]) -> tuple[RecentImage, ...]:
    """``images`` newest first; among equal ``updated_at``, keys in ascending order."""
    by_key = sorted(images, key=lambda image: image.key)
    return tuple(sorted(by_key, key=lambda image: image.updated_at, reverse=True))


class RecentImages(Contract):
    """The contents of ``recent.json``."""

    LABEL = "recent.json"

    version: str
    images: tuple[RecentImage, ...] = ()
    """Newest first."""


def read_recent(s3: Any, bucket: str, prefix: str, version: str) -> RecentImages | None:
    """The version's newest images; ``None`` for a version built without the file."""
    return read_object(s3, bucket, version_key(prefix, version, RECENT_FILE), RecentImages)


def write_recent(s3: Any, bucket: str, prefix: str, recent: RecentImages) -> str:
    return write_object(s3, bucket, version_key(prefix, recent.version, RECENT_FILE), recent)
