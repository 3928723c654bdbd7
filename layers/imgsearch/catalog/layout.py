"""Where a published index lives in S3, and how versions are named.

Layout under the index prefix (default ``indexes/``)::

    indexes/<version>/index.faiss     the index (keys = stable image ids), or index.usearch:
                                      ``index_file(engine)``, ``imgsearch.ann``
    indexes/<version>/keys            id -> S3 key table (``imgsearch.catalog.keytable``)
    indexes/<version>/report.json     what was built, with which parameters, every figure
    indexes/<version>/published.json  written once the version served (``catalog.versions``)
    indexes/<version>/recent.json     the newest images of its snapshot (``catalog.recent``)
    indexes/<version>/reference.npy   a sample of its vectors, for drift (``catalog.reference``)
    indexes/current.json              the serving version (``imgsearch.catalog.current``)

and each snapshot's ``snapshots/<id>/snapshot.json`` names its files
(``imgsearch.catalog.report.SnapshotManifest``).

::

    version = new_version()                       # "20250101T000000.123456Z-a1b2c3"
    version_key("indexes/", version, index_file("faiss"))  # "indexes/<version>/index.faiss"
    sorted(names, key=version_order)              # oldest first, old "20250101T000000Z-…" too
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

INDEX_FILES = {"faiss": "index.faiss", "usearch": "index.usearch"}
"""Each index engine's file name; a version holds one of them."""
KEYS_FILE = "keys"
REPORT_FILE = "report.json"
CURRENT_FILE = "current.json"
SNAPSHOT_FILE = "snapshot.json"
PUBLISHED_FILE = "published.json"
RECENT_FILE = "recent.json"
REFERENCE_FILE = "reference.npy"

VERSION_PATTERN = re.compile(r"^\d{8}T\d{6}(\.\d{6})?Z-[0-9a-f]{6}$")
"""``new_version``'s shape, and the legacy one without microseconds (versions built before
issue 13, still in deployed buckets); other folders under the prefix (``failures/``) are not
versions."""
_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_LEGACY_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


def new_version(now: datetime | None = None) -> str:
    """Unique, and ordered by ``version_order``: UTC time to the microsecond, then random bits
    against two builds in the same microsecond."""
    now = now or datetime.now(UTC)
    return now.strftime(_TIME_FORMAT) + "-" + secrets.token_hex(3)


def is_legacy_version(version: str) -> bool:
    """A name of the old form, time to the second only (``20250101T000000Z-a1b2c3``)."""
    return "." not in version


def version_time(version: str) -> datetime:
    """When a version was built, read back from its name (either form of ``VERSION_PATTERN``)."""
    stamp = version.split("-", 1)[0]
    form = _LEGACY_TIME_FORMAT if is_legacy_version(version) else _TIME_FORMAT
    return datetime.strptime(stamp, form).replace(tzinfo=UTC)


def version_order(version: str) -> tuple[datetime, str]:
    """The sort key of versions, oldest first: build time, then the name against ties.

    Never compare names as strings: a legacy name sorts after every new one of its second
    (``"Z" > "."``), and the random suffix is no age.
    """
    return version_time(version), version


def version_key(prefix: str, version: str, name: str) -> str:
    return f"{prefix}{version}/{name}"


def index_file(engine: str) -> str:
    """The name of a version's index file, for ``engine`` (``faiss`` or ``usearch``)."""
    if engine not in INDEX_FILES:
        raise ValueError(f"unknown index engine {engine!r}: one of {', '.join(INDEX_FILES)}")
    return INDEX_FILES[engine]
