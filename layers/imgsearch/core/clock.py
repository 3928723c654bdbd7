"""Timestamps as the service writes them: UTC, ISO 8601, microseconds, ``Z``.

::

    now_iso()                                  # "2025-01-01T00:00:00.000000Z"
    parse_iso("2025-01-01T00:00:00.000000Z")   # an aware datetime, UTC
    shift_iso("2025-01-01T00:00:00.000000Z", timedelta(seconds=-2))  # "2024-12-31T23:59:58..."
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now_iso() -> str:
    return datetime.now(UTC).strftime(ISO_FORMAT)


def parse_iso(text: str) -> datetime:
    """A timestamp as ``now_iso`` writes it, as an aware UTC datetime; ``ValueError`` naming
    the expected shape otherwise."""
    try:
        return datetime.strptime(text, ISO_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{text!r} is not a UTC timestamp like 2025-01-01T00:00:00.000000Z"
        ) from exc


def shift_iso(iso: str, delta: timedelta) -> str:
    """``iso`` moved by ``delta``, in the service's format; "" (the beginning) when unparsable."""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return (moment + delta).strftime(ISO_FORMAT)
