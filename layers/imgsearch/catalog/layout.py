"""Where a published index lives in S3, and how versions are named.

Layout under the index prefix (default ``indexes/``)::

    indexes/<version>/index.usearch   the usearch index (keys = stable image ids)
    indexes/<version>/keys            id -> S3 key table (``imgsearch.catalog.keytable``)
    indexes/<version>/report.json     what was built, with which parameters, every figure
    indexes/current.json              the serving version (``imgsearch.catalog.current``)

and each snapshot's ``snapshots/<id>/snapshot.json`` names its files
(``imgsearch.catalog.report.SnapshotManifest``).

::

    version = new_version()                       # "20250101T000000Z-a1b2c3"
    version_key("indexes/", version, INDEX_FILE)  # "indexes/20250101T000000Z-a1b2c3/index.usearch"
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

INDEX_FILE = "index.usearch"
KEYS_FILE = "keys"
REPORT_FILE = "report.json"
CURRENT_FILE = "current.json"
SNAPSHOT_FILE = "snapshot.json"

VERSION_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
"""``new_version``'s shape; other folders under the prefix (``failures/``) are not versions."""


def new_version(now: datetime | None = None) -> str:
    """Sortable, unique: UTC time to the second, then random bits against same-second runs."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def version_time(version: str) -> datetime:
    """When a version was built, read back from its name (see ``new_version``)."""
    return datetime.strptime(version.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def version_key(prefix: str, version: str, name: str) -> str:
    return f"{prefix}{version}/{name}"
