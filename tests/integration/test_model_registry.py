"""The model registry on moto S3: register (verify, upload, record), immutable bundles, the
states' conditional moves, the list; then a backfill that embeds with a registered model."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from backfill_support import SERVICE_BUCKET, TABLE, USER_BUCKET, backfill_stack
from imgsearch_devkit.ops.registry import model_rows, register_model
from imgsearch_devkit.target import Target
from ingest_support import REGION, image_bytes
from moto import mock_aws
from tiny_bundle import make_tiny_bundle

from imgsearch.catalog.current import CurrentIndex, write_current
from imgsearch.catalog.registry import (
    RegistryConflict,
    RegistryError,
    read_record,
    require_record,
    transition,
)
from imgsearch.catalog.rollout import (
    Rollout,
    RolloutRunning,
    end_rollout,
    read_rollout,
    start_rollout,
)
from imgsearch.core.config import Settings
from imgsearch.ingest.models import WriteModels
from imgsearch.model import BundleError


def target() -> Target:
    return Target(region=REGION, bucket=SERVICE_BUCKET, table=TABLE, image_bucket=USER_BUCKET)


@pytest.fixture()
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=SERVICE_BUCKET)
        yield client


def test_register_verifies_uploads_and_records_once(s3, tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "tiny")
    record, new = register_model(target(), str(bundle))
    assert new and (record.model_id, record.state, record.embedding_dim) == (
        "tiny@1",
        "registered",
        8,
    )
    assert [c.state for c in record.history] == ["registered"] and record.registered_by
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=SERVICE_BUCKET)["Contents"]}
    assert keys == {
        f"models/tiny@1/{name}"
        for name in ("model.json", "visual.onnx", "textual.onnx", "tokenizer.json", "record.json")
    }
    again, new = register_model(target(), str(bundle))
    assert not new and again == record

    # Another bundle under a registered id is refused, and nothing of it is uploaded.
    manifest = json.loads((bundle / "model.json").read_text())
    other = make_tiny_bundle(tmp_path / "other", dim=4)
    (other / "model.json").write_text(
        json.dumps(
            {**json.loads((other / "model.json").read_text()), "version": manifest["version"]}
        )
    )
    before = s3.get_object(Bucket=SERVICE_BUCKET, Key="models/tiny@1/visual.onnx")["ETag"]
    with pytest.raises(RegistryError, match="registered with other files"):
        register_model(target(), str(other))
    assert s3.get_object(Bucket=SERVICE_BUCKET, Key="models/tiny@1/visual.onnx")["ETag"] == before


def test_a_bundle_that_fails_verification_is_not_registered(s3, tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "tiny")
    (bundle / "visual.onnx").write_bytes(b"changed after export")
    with pytest.raises(BundleError, match="sha256 mismatch"):
        register_model(target(), str(bundle))
    assert read_record(s3, SERVICE_BUCKET, "tiny@1") is None


def test_states_move_only_forward_and_only_from_what_was_read(s3, tmp_path: Path) -> None:
    record, _ = register_model(target(), str(make_tiny_bundle(tmp_path / "tiny")))
    with pytest.raises(RegistryError, match="registered: it can go to archived, embedding"):
        transition(s3, SERVICE_BUCKET, record, "production")
    embedding = transition(s3, SERVICE_BUCKET, record, "embedding", by="rollout-1")
    with pytest.raises(RegistryConflict, match="changed since it was read"):
        transition(s3, SERVICE_BUCKET, record, "archived")  # the stale read loses
    assert require_record(s3, SERVICE_BUCKET, "tiny@1").state == "embedding"
    assert [c.state for c in embedding.history] == ["registered", "embedding"]


def test_the_list_names_the_serving_model_registered_or_not(s3, tmp_path: Path) -> None:
    register_model(target(), str(make_tiny_bundle(tmp_path / "tiny")))
    current = CurrentIndex(version="v1", model="demo-clip@1", count=3, built_at="t", dim=64)
    write_current(s3, SERVICE_BUCKET, current, expected_etag=None)
    rows = {row["model"]: row for row in model_rows(target())}
    assert rows["tiny@1"]["state"] == "registered" and not rows["tiny@1"]["serving"]
    assert rows["demo-clip@1"]["state"] == "unregistered" and rows["demo-clip@1"]["serving"]


def test_a_backfill_embeds_with_a_registered_model_beside_the_serving_one(tmp_path: Path) -> None:
    def fill(s3) -> None:
        for n in range(5):
            s3.put_object(Bucket=USER_BUCKET, Key=f"images/{n}.png", Body=image_bytes(n))

    with backfill_stack(tmp_path, fill=fill) as stack:
        assert stack.run({})["status"] == "SUCCEEDED"
        register_model(target(), str(make_tiny_bundle(tmp_path / "tiny")))
        described = stack.run({"model": "tiny@1"})
        assert described["status"] == "SUCCEEDED", described
        report = stack.report(described)
        assert (report["model"], report["embedded"]) == ("tiny@1", 5)
        items = stack.dynamodb.scan(TableName=TABLE)["Items"]
        by_model: dict[str, int] = {}
        for item in items:
            by_model[item["model"]["S"]] = by_model.get(item["model"]["S"], 0) + 1
        assert by_model == {stack.model_id: 5, "tiny@1": 5}
        tiny = stack.store.get("images/0.png", "tiny@1")
        assert tiny.vector.shape == (8,) and np.isclose(np.linalg.norm(tiny.vector), 1, atol=1e-2)
        # Unregistered ids are refused at once.
        refused = stack.run({"model": "tiny@2"})
        assert refused["status"] == "FAILED" and "nor a registered model" in refused["cause"]


def test_during_a_rollout_uploads_and_deletes_are_written_with_both_models(tmp_path: Path) -> None:
    with backfill_stack(tmp_path) as stack:
        register_model(target(), str(make_tiny_bundle(tmp_path / "tiny")))
        pointer = Rollout(candidate="tiny@1", champion=stack.model_id, execution="rollout-1")
        start_rollout(stack.s3, SERVICE_BUCKET, pointer)
        with pytest.raises(RolloutRunning, match="a rollout of tiny@1 \\(rollout-1\\)"):
            start_rollout(stack.s3, SERVICE_BUCKET, pointer.model_copy(update={"execution": "2"}))
        up = stack.uploader
        stack.event(
            up.put("images/kept.png", image_bytes(1)), up.put("images/gone.png", image_bytes(2))
        )
        stack.event(up.delete("images/gone.png"))
        for model in (stack.model_id, "tiny@1"):
            assert stack.store.get("images/kept.png", model).status == "ok", model
            assert stack.store.get("images/gone.png", model).status == "deleted", model
        assert stack.store.get("images/kept.png", "tiny@1").vector.shape == (8,)
        assert end_rollout(stack.s3, SERVICE_BUCKET, pointer)
        assert read_rollout(stack.s3, SERVICE_BUCKET) is None


def test_the_models_written_follow_the_pointers_within_their_refresh(s3, tmp_path: Path) -> None:
    now = [0.0]
    settings = Settings.from_env({"IMGSEARCH_BUCKET": SERVICE_BUCKET})
    writes = WriteModels(s3, settings, default="demo-clip@1", ttl=10, clock=lambda: now[0])
    assert writes.models() == ["demo-clip@1"]
    register_model(target(), str(make_tiny_bundle(tmp_path / "tiny")))
    start_rollout(s3, SERVICE_BUCKET, Rollout(candidate="tiny@1", champion="demo-clip@1"))
    assert writes.models() == ["demo-clip@1"]  # read 0 s ago
    now[0] = 10
    assert writes.models() == ["demo-clip@1", "tiny@1"]
    # Promoted: the index names tiny@1, the rollout is over.
    current = CurrentIndex(version="v2", model="tiny@1", count=1, built_at="t", dim=8)
    write_current(s3, SERVICE_BUCKET, current, expected_etag=None)
    s3.delete_object(Bucket=SERVICE_BUCKET, Key="models/rollout.json")
    now[0] = 20
    assert writes.models() == ["tiny@1"]
