"""Which versions publish keeps, and the execution input parsers."""

from __future__ import annotations

import pytest

from imgsearch.catalog.layout import VERSION_PATTERN
from imgsearch.catalog.versions import VersionInfo, versions_to_delete
from imgsearch.pipeline.rollback import parse_rollback_input
from imgsearch.pipeline.snapshot import parse_start_input


def v(n: int, status: str = "validated") -> VersionInfo:
    return VersionInfo(f"2025010{n}T000000Z-00000{n}", status)  # type: ignore[arg-type]


def test_publish_keeps_the_newest_validated_versions_and_anything_newer() -> None:
    versions = [v(1), v(2, "rejected"), v(3), v(4, "incomplete"), v(5), v(6), v(7)]
    # Publishing v6 with keep=3: v6, and the two newest validated before it (v3, v5) stay;
    # v7 is newer (a run in flight) and stays too.
    assert versions_to_delete(versions, v(6).version, keep=3) == [
        v(1).version,
        v(2).version,
        v(4).version,
    ]
    assert versions_to_delete(versions, v(6).version, keep=1) == [x.version for x in versions[:5]]


def test_version_pattern_skips_other_folders() -> None:
    assert VERSION_PATTERN.match("20250101T000000Z-a1b2c3")
    assert not VERSION_PATTERN.match("failures")


def test_start_input() -> None:
    assert parse_start_input({}) is False
    assert parse_start_input({"force": True}) is True
    assert parse_start_input({"trigger": "schedule"}) is False
    assert parse_start_input(None) is False
    with pytest.raises(ValueError, match='"force" must be true or false'):
        parse_start_input({"force": "yes"})
    with pytest.raises(ValueError, match="JSON object"):
        parse_start_input([1])


def test_rollback_input() -> None:
    assert parse_rollback_input({}) is None
    assert parse_rollback_input({"to": "20250101T000000Z-a1b2c3"}) == "20250101T000000Z-a1b2c3"
    with pytest.raises(ValueError, match='"to" must be a version'):
        parse_rollback_input({"to": "../current"})
