"""Retraining on moto (see test_retrain.py) on shuffled clicks: the candidate the gate rejects,
and nothing changes; a second run while the first trains is refused at its first step. Apart from
test_retrain.py so the two long runs go to different test workers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
from ingest_support import REGION
from retrain_support import BUCKET, seed, simulate_users, world

from imgsearch.catalog.registry import read_record
from imgsearch.catalog.retraining import read_lock


def test_shuffled_clicks_give_a_candidate_the_gate_rejects_and_nothing_changes(
    tmp_path: Path,
) -> None:
    with world(tmp_path) as w:
        seed(w)
        simulate_users(w, shuffled=True)
        first = w.start("retrain", {"trigger": "on-demand"})
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        deadline = time.monotonic() + 120
        while not sagemaker.list_training_jobs()["TrainingJobSummaries"]:
            assert time.monotonic() < deadline, "the first run never started its training job"
            time.sleep(0.1)
        # While it trains, a second run is refused at its first step and changes nothing.
        refused = w.run("retrain", {"trigger": "schedule"})
        assert (refused["status"], refused["error"]) == ("FAILED", "RetrainRunning")
        assert read_lock(w.s3, BUCKET, "retrain/").execution == first  # type: ignore[union-attr]

        run = w.wait(first)
        assert run["status"] == "SUCCEEDED", w.why(run)
        result = json.loads(run["output"])
        assert result["status"] == "rejected", result
        assert "held-out nDCG@10" in result["reason"] or "within" in result["reason"]
        assert result["rollout"] == ""
        assert w.serving() == "demo-clip@1"
        assert read_record(w.s3, BUCKET, "demo-clip@1").state == "production"  # type: ignore[union-attr]
        record = read_record(w.s3, BUCKET, result["candidate"])
        assert record is not None and record.state == "rejected"
        assert not w.sfn.list_executions(stateMachineArn=w.machines["rollout"])["executions"]
        alerts = w.alerts()
        assert any("retraining rejected" in a["Subject"] for a in alerts), alerts
        assert read_lock(w.s3, BUCKET, "retrain/") is None

        # Too little new data since that run: the next one is a skip, not a failure.
        skipped = w.run("retrain", {"trigger": "schedule"})
        assert skipped["status"] == "SUCCEEDED"
        output = json.loads(skipped["output"])
        assert output["status"] == "skipped" and "too little new data" in output["reason"]
