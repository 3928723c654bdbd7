"""Timestamps as the service writes them: UTC, ISO 8601, microseconds, ``Z``.

::

    now_iso()                      # "2025-01-01T00:00:00.000000Z"
"""

from __future__ import annotations

from datetime import UTC, datetime

ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now_iso() -> str:
    return datetime.now(UTC).strftime(ISO_FORMAT)
