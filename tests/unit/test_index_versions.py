"""Version names and their order, which versions publish keeps, the default rollback target,
and the execution input parsers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from imgsearch.catalog.layout import VERSION_PATTERN, new_version, version_order, version_time
from imgsearch.catalog.versions import (
    PublishRecord,
    VersionInfo,
    has_artifacts,
    rollback_target,
    versions_to_delete,
)
from imgsearch.core.config import Settings
from imgsearch.pipeline.rollback import parse_rollback_input
from imgsearch.pipeline.snapshot import parse_start_input

ASL = Path(__file__).resolve().parents[2] / "statemachine" / "index_pipeline.asl.json"
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(hours=2)


def v(n: int, status: str = "validated") -> VersionInfo:
    """A legacy version (name to the second, no publish record), built on day ``n``."""
    return VersionInfo(f"2025010{n}T000000Z-00000{n}", status)  # type: ignore[arg-type]


def at(minutes: float, status: str = "validated", published: bool = False) -> VersionInfo:
    """A version built ``minutes`` after ``T0``, published (with a record) or not."""
    version = new_version(T0 + timedelta(minutes=minutes))
    record = PublishRecord(version=version, published_at="t") if published else None
    return VersionInfo(version, status, record=record)  # type: ignore[arg-type]


def test_publish_keeps_the_newest_validated_versions_and_anything_newer() -> None:
    versions = [v(1), v(2, "rejected"), v(3), v(4, "incomplete"), v(5), v(6), v(7)]
    # Publishing v6 with keep=3: v6, and the two newest validated before it (v3, v5) stay;
    # v7 is newer (a roll-forward target) and stays too.
    now = datetime(2025, 2, 1, tzinfo=UTC)
    assert versions_to_delete(versions, v(6).version, 3, now, TTL) == [
        v(1).version,
        v(2).version,
        v(4).version,
    ]
    assert versions_to_delete(versions, v(6).version, 1, now, TTL) == [
        x.version for x in versions[:5]
    ]


def test_version_pattern_skips_other_folders() -> None:
    assert VERSION_PATTERN.match("20250101T000000Z-a1b2c3")
    assert VERSION_PATTERN.match("20250101T000000.123456Z-a1b2c3")
    assert VERSION_PATTERN.match(new_version())
    assert not VERSION_PATTERN.match("20250101T000000.123Z-a1b2c3")
    assert not VERSION_PATTERN.match("failures")


def test_versions_built_within_one_second_order_by_time_not_by_their_suffix() -> None:
    # Two builds 0.1 s and 0.9 s into one second: the random suffix used to decide.
    for _ in range(50):
        early, late = new_version(T0 + timedelta(seconds=0.1)), new_version(T0 + timedelta(0, 0.9))
        assert sorted([late, early], key=version_order) == [early, late]
        assert version_time(early) == T0 + timedelta(seconds=0.1)
    # Legacy names (to the second) order by their time too: as strings, "Z" > "." would put
    # this one after every new name of its second.
    legacy = "20250301T120000Z-ffffff"
    assert version_time(legacy) == T0
    names = [new_version(T0 + timedelta(seconds=1)), new_version(T0 + timedelta(0, 0.5)), legacy]
    assert sorted(names, key=version_order) == [legacy, names[1], names[0]]


def test_pruning_never_deletes_a_rival_candidate_in_flight() -> None:
    first = at(0, published=True)
    rival = at(10)  # the loser of the race: validated, never published
    winner = at(10.5, published=True)
    newer_rival = at(11)
    # Both rivals are minutes old: a run still in flight may publish or fail them.
    now = T0 + timedelta(minutes=12)
    versions = [first, rival, winner, newer_rival]
    for keep in (1, 2):
        doomed = versions_to_delete(versions, winner.version, keep, now, TTL)
        assert rival.version not in doomed and newer_rival.version not in doomed
    assert versions_to_delete(versions, winner.version, 1, now, TTL) == [first.version]
    # Once older than the TTL (longer than a run may last), a candidate that never served goes.
    later = T0 + timedelta(minutes=10) + TTL + timedelta(seconds=1)
    assert versions_to_delete(versions, winner.version, 2, later, TTL) == [rival.version]


def test_pruning_keeps_published_rollback_and_roll_forward_targets_only() -> None:
    published = [at(n, published=True) for n in range(5)]  # p0 .. p4
    rejected, incomplete = at(2.5, "rejected"), at(1.5, "incomplete")
    versions = [*published, rejected, incomplete]
    now = T0 + timedelta(days=1)
    # p2 serves again (after a rollback, say): keep=2 keeps p1, the newest published before
    # it, and p3, p4, published after it (roll-forward targets).
    doomed = versions_to_delete(versions, published[2].version, 2, now, TTL)
    assert doomed == [published[0].version, incomplete.version, rejected.version]
    # A rejected version goes at once, whatever its age: its run ended at the Gate.
    fresh_rejected = at(4.5, "rejected")
    assert versions_to_delete(
        [*published, fresh_rejected], published[4].version, 5, T0 + timedelta(minutes=5), TTL
    ) == [fresh_rejected.version]


def test_rollback_target_is_the_newest_published_version_built_before_the_serving_one() -> None:
    old, candidate, serving, forward = (
        at(0, published=True),
        at(1),  # validated, never served: not a step back
        at(2, published=True),
        at(3, published=True),
    )
    versions = [old, candidate, serving, forward, at(1.5, "rejected")]
    assert rollback_target(versions, serving.version) == old
    assert rollback_target(versions, forward.version) == serving
    assert rollback_target(versions, old.version) is None
    # Legacy validated versions (built before publish records existed) count as published.
    legacy = v(1)
    assert legacy.published and not v(2, "rejected").published
    assert rollback_target([legacy, candidate, serving], serving.version) == legacy


def test_the_candidate_ttl_outlasts_a_run() -> None:
    timeout = json.loads(ASL.read_text())["TimeoutSeconds"]
    assert Settings.from_env({}).index.candidate_ttl_seconds > timeout


def test_start_input() -> None:
    assert parse_start_input({}).force is False
    assert parse_start_input({"force": True}).force is True
    assert parse_start_input({"trigger": "schedule"}).force is False
    assert parse_start_input(None).force is False
    assert parse_start_input({"model": "clip@2"}).model == "clip@2"
    with pytest.raises(ValueError, match='"force" must be true or false'):
        parse_start_input({"force": "yes"})
    with pytest.raises(ValueError, match="JSON object"):
        parse_start_input([1])


def test_rollback_input() -> None:
    assert parse_rollback_input({}) is None
    assert parse_rollback_input({"to": "20250101T000000Z-a1b2c3"}) == "20250101T000000Z-a1b2c3"
    with pytest.raises(ValueError, match='"to" must be a version'):
        parse_rollback_input({"to": "../current"})


@mock_aws
def test_a_version_of_either_engine_has_its_artifacts_and_one_without_an_index_not() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="versions")
    for version, files in {
        "faiss": ["index.faiss", "keys"],
        "usearch": ["index.usearch", "keys"],
        "keys-only": ["keys"],
        "index-only": ["index.faiss"],
    }.items():
        for name in files:
            s3.put_object(Bucket="versions", Key=f"indexes/{version}/{name}", Body=b"x")
    found = {v: has_artifacts(s3, "versions", "indexes/", v) for v in ("faiss", "usearch")}
    missing = {v: has_artifacts(s3, "versions", "indexes/", v) for v in ("keys-only", "index-only")}
    assert found == {"faiss": True, "usearch": True}
    assert missing == {"keys-only": False, "index-only": False}
