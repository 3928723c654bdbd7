"""The typed contracts: schema versions, errors that name the field, the error hierarchy."""

from __future__ import annotations

import json

import pytest

from imgsearch.catalog.contract import ContractError
from imgsearch.catalog.current import CurrentIndex, PublishConflict
from imgsearch.catalog.errors import PipelineError
from imgsearch.catalog.report import SnapshotManifest
from imgsearch.core.errors import ImgsearchError
from imgsearch.eval.golden import GoldenSetError
from imgsearch.pipeline.build import BuildError
from imgsearch.pipeline.contracts import BuildInput, RunState
from imgsearch.pipeline.publish import NotValidated
from imgsearch.pipeline.rollback import RollbackError, parse_rollback_input
from imgsearch.pipeline.snapshot import SnapshotError

MANIFEST = {
    "snapshot_id": "20250101T000000Z-a1b2c3",
    "prefix": "snapshots/20250101T000000Z-a1b2c3/",
    "model": "clip@1",
    "dim": 4,
    "count": 2,
    "content_hash": "h",
    "scan_seconds": 0.1,
    "segments": 1,
    "taken_at": "2025-01-01T00:00:00Z",
}


def test_a_current_json_without_schema_version_reads_as_1_0() -> None:
    old = {"version": "v", "model": "clip@1", "count": 3, "built_at": "t", "headline": {"p": 1}}
    current = CurrentIndex.parse_json(json.dumps(old))
    assert current.schema_version == "1.0" and current.count == 3
    assert json.loads(current.to_json())["schema_version"] == "1.0"
    assert "etag" not in json.loads(current.model_copy(update={"etag": "e"}).to_json())


def test_a_newer_minor_version_reads_and_a_newer_major_is_refused() -> None:
    newer = {"version": "v", "model": "m", "count": 1, "built_at": "t", "added_in_1_5": True}
    assert CurrentIndex.parse({**newer, "schema_version": "1.5"}).version == "v"
    with pytest.raises(ContractError, match=r"current.json schema 2.0 is newer than this code"):
        CurrentIndex.parse({**newer, "schema_version": "2.0"})
    with pytest.raises(ContractError, match=r"upgrade imgsearch"):  # nested ones too
        BuildInput.parse({"snapshot": {**MANIFEST, "schema_version": "2.1"}})


def test_a_bad_payload_names_the_field() -> None:
    with pytest.raises(ContractError, match=r"snapshot\.count: Input should be a valid integer"):
        BuildInput.parse({"snapshot": {**MANIFEST, "count": "many"}})
    with pytest.raises(ContractError, match=r"snapshot\.model: Field required"):
        BuildInput.parse({"snapshot": {k: v for k, v in MANIFEST.items() if k != "model"}})
    with pytest.raises(ContractError, match="is not JSON"):
        CurrentIndex.parse_json(b"{")


def test_the_manifest_names_its_key_and_the_state_keeps_the_execution_input() -> None:
    manifest = SnapshotManifest.parse(MANIFEST)
    assert manifest.dump()["manifest_key"] == MANIFEST["prefix"] + "snapshot.json"
    assert SnapshotManifest.parse(manifest.dump()) == manifest
    state = RunState.parse({"force": True, "failed": {"Build": {"Error": "E", "Cause": "c"}}})
    assert state.execution_input == {"force": True} and state.failed["Build"].error == "E"


def test_pipeline_errors_share_one_root_and_keep_their_names() -> None:
    for error in (SnapshotError, BuildError, NotValidated, PublishConflict, RollbackError):
        assert issubclass(error, PipelineError)
    assert issubclass(GoldenSetError, PipelineError) and issubclass(PipelineError, ImgsearchError)
    assert issubclass(ContractError, ValueError)
    assert PublishConflict.__name__ == "PublishConflict"  # the ASL and the tests match names


def test_rollback_input_accepts_a_bare_version() -> None:
    assert parse_rollback_input("20250101T000000Z-a1b2c3") == "20250101T000000Z-a1b2c3"
    assert parse_rollback_input(None) is None
    with pytest.raises(ContractError, match=r'to: "to" must be a version'):
        parse_rollback_input({"to": 7})
