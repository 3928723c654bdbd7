"""Retraining end to end on moto: the real ASLs (retraining hands a winner to the model rollout,
which nests the backfill and the index pipeline), the real handlers, the training job's own
entry point run in-process as the SageMaker emulation runs it.

Simulated users search a demo corpus for background colours ("red circle on a black
background", what the demo model is weak at) through the query function and click the results
that match; the usage log reaches S3 through CloudWatch Logs and Firehose. A run on their clicks
gives a candidate that ranks held-out background queries better (by the gate's figures and by
the scenes' ground truth) without making colour and shape worse, and the rollout promotes it.
The same run on shuffled clicks gives a candidate the gate rejects, and nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from imgsearch_devkit.demo.model_eval import kind_queries
from imgsearch_devkit.demo.scenes import describes
from imgsearch_devkit.demo.users import background_queries
from ingest_support import REGION
from moto import mock_aws
from retrain_support import BUCKET, World, seed, simulate_users, world

from imgsearch.catalog.registry import bundle_uri as registry_uri
from imgsearch.catalog.registry import read_record
from imgsearch.catalog.retraining import (
    LatestRetrain,
    RetrainLock,
    RetrainRunning,
    read_lock,
    take_lock,
)
from imgsearch.core.config import Settings
from imgsearch.eval.metrics import score_rankings
from imgsearch.model import ClipModel
from imgsearch.model.batch import embed_images
from imgsearch.monitor.triggers import new_data_tally, start_if_due
from imgsearch.retrain.dataset import is_heldout


def ground_truth_ndcg(w: World, model_id: str, queries: list[str]) -> float:
    """nDCG@10 of ``queries`` over the whole corpus, relevance from the scenes themselves."""
    model = ClipModel.load(
        registry_uri(BUCKET, model_id), cache_dir=w.settings.model.cache_dir, s3_client=w.s3
    )
    keys = sorted(w.scenes)
    blobs = [w.s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys]
    images = np.stack(embed_images(model, blobs))  # type: ignore[arg-type]
    order = np.argsort(-(model.encode_text(queries) @ images.T), axis=1)[:, :10]
    rankings = [[keys[i] for i in row] for row in order]
    relevant = [{k for k in keys if describes(w.scenes[k], q)} for q in queries]
    return score_rankings(rankings, relevant, 10).ndcg


def test_clicks_on_background_colours_train_a_candidate_that_the_rollout_promotes(
    tmp_path: Path,
) -> None:
    with world(tmp_path) as w:
        seed(w)
        assert simulate_users(w, shuffled=False) > 200
        run = w.run("retrain", {"trigger": "on-demand"})
        assert run["status"] == "SUCCEEDED", w.why(run)
        result = json.loads(run["output"])
        candidate, champion = result["candidate"], result["champion"]
        assert (champion, candidate) == ("demo-clip@1", "demo-clip@2")

        # The gate's own figures: held-out feedback better by the aim (10 %), every criterion
        # met, so the candidate is validated.
        report = w.read_json(result["evaluation"])
        figures = report["figures"]
        gain = (
            figures["candidate"]["feedback.ndcg_at_10"] / figures["champion"]["feedback.ndcg_at_10"]
        )
        assert gain >= 1.10, figures
        assert all(c["passed"] for c in report["criteria"]), report
        assert result["status"] == "validated", result

        # Held-out queries never trained; the dataset's hash is the candidate's lineage.
        prefix = f"retrain/{result['run']}/dataset/"
        train = w.s3.get_object(Bucket=BUCKET, Key=prefix + "train.jsonl")["Body"].read()
        trained = {json.loads(line)["query"] for line in train.decode().splitlines()}
        assert trained and not any(is_heldout(q, 0.25) for q in trained)
        record = read_record(w.s3, BUCKET, candidate)
        assert record is not None and record.parent == champion
        assert record.lineage["dataset_sha256"] == w.read_json(prefix + "manifest.json")["sha256"]
        assert record.lineage["trigger"] == "on-demand"
        assert record.lineage["training"]["status"] == "trained"

        # The ground truth agrees on held-out background queries, and colour and shape queries
        # are no worse than the tolerance.
        heldout = [q for q in background_queries() if is_heldout(q, 0.25)]
        before = ground_truth_ndcg(w, champion, heldout)
        after = ground_truth_ndcg(w, candidate, heldout)
        assert after >= before * 1.10, (before, after)
        kinds_before = ground_truth_ndcg(w, champion, kind_queries())
        assert ground_truth_ndcg(w, candidate, kind_queries()) >= kinds_before * 0.98

        # The winner went to the rollout, whose own gates promoted it.
        rollout = w.wait(result["rollout"])
        assert rollout["status"] == "SUCCEEDED", rollout
        assert json.loads(rollout["output"])["status"] == "promoted"
        assert w.serving() == candidate
        assert read_record(w.s3, BUCKET, candidate).state == "production"  # type: ignore[union-attr]
        # the demo model, registered by Prepare as the one serving, is the one archived
        assert read_record(w.s3, BUCKET, champion).state == "archived"  # type: ignore[union-attr]
        assert read_lock(w.s3, BUCKET, "retrain/") is None
        assert w.read_json("retrain/latest.json")["status"] == "validated"


def test_a_lock_left_by_an_ended_run_is_taken_over(tmp_path: Path) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        lock = RetrainLock(execution="arn:run-1", trigger="schedule", started_at="t")
        held = take_lock(s3, BUCKET, "retrain/", lock, is_running=lambda _: True)
        assert take_lock(s3, BUCKET, "retrain/", lock, is_running=lambda _: True) == held
        second = lock.model_copy(update={"execution": "arn:run-2"})
        with pytest.raises(RetrainRunning, match="arn:run-1"):
            take_lock(s3, BUCKET, "retrain/", second, is_running=lambda _: True)
        take_lock(s3, BUCKET, "retrain/", second, is_running=lambda _: False)
        assert read_lock(s3, BUCKET, "retrain/").execution == "arn:run-2"  # type: ignore[union-attr]


def test_the_monitor_starts_a_run_on_enough_new_data_unless_one_is_under_way() -> None:
    counts = {"feedback": 30, "ingested": 5}
    first = new_data_tally(None, counts, None)
    assert (first["judgments"], first["images"]) == (30, 5)
    carried = new_data_tally({"retrain": first}, counts, None)
    assert (carried["judgments"], carried["images"]) == (60, 10)
    latest = LatestRetrain(execution="e", trigger="schedule", started_at="t1", status="rejected")
    assert new_data_tally({"retrain": carried}, counts, latest)["judgments"] == 30  # since then

    with mock_aws():  # without the interpreter: an execution stays RUNNING
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        definition = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
        machine = sfn.create_state_machine(
            name="retrain", definition=definition, roleArn="arn:aws:iam::123456789012:role/r"
        )["stateMachineArn"]
        settings = Settings.from_env(
            {
                "IMGSEARCH_BUCKET": BUCKET,
                "IMGSEARCH_RETRAIN_STATE_MACHINE_ARN": machine,
                "IMGSEARCH_RETRAIN_MIN_NEW_JUDGMENTS": "50",
            }
        )
        assert start_if_due(settings, s3, sfn, dict(first)) == ""  # 30 < 50
        tally = dict(carried)
        started = start_if_due(settings, s3, sfn, tally)
        assert started and tally["judgments"] == 0 and tally["started"] == started
        payload = json.loads(sfn.describe_execution(executionArn=started)["input"])
        assert payload["trigger"] == "new-data" and payload["detail"]["judgments"] == 60
        take_lock(
            s3,
            BUCKET,
            "retrain/",
            RetrainLock(execution=started, trigger="new-data", started_at="t"),
            is_running=lambda _: True,
        )
        assert start_if_due(settings, s3, sfn, dict(carried)) == ""  # that one still runs
