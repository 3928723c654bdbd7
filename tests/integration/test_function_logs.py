"""Every function's library log lines reach its log stream as Powertools JSON.

The steps log their summaries through the standard ``logging`` (``imgsearch.*``); on Lambda only
what the function prints reaches CloudWatch, so each handler routes those records through its
Powertools Logger (``imgsearch.core.entry.powertools``).
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pytest
import snapshot.app as snapshot_app
from moto import mock_aws

from imgsearch.core.clock import now_iso
from imgsearch.core.config import Settings
from imgsearch.core.keys import image_id
from imgsearch.model.bundle import read_manifest
from imgsearch.store import EmbeddingRecord, EmbeddingStore, pad_sequencer, table_definition

BUCKET, TABLE, REGION = "imgsearch-logs-test", "imgsearch-logs-embeddings", "us-east-1"


class Context:
    function_name = "imgsearch-test-SnapshotFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:snapshot"
    aws_request_id = "request-1"


def test_a_pipeline_steps_summary_is_a_json_log_line(
    demo_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.from_env(
        {
            "AWS_REGION": REGION,
            "IMGSEARCH_BUCKET": BUCKET,
            "IMGSEARCH_TABLE": TABLE,
            "IMGSEARCH_MODEL_URI": str(demo_bundle),
            "IMGSEARCH_MODEL_CACHE_DIR": str(tmp_path),
            "POWERTOOLS_SERVICE_NAME": "imgsearch-snapshot",
        }
    )
    model = read_manifest(demo_bundle).model_id
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**table_definition(TABLE))
        vector = np.ones(read_manifest(demo_bundle).embedding_dim, dtype=np.float32)
        EmbeddingStore(TABLE, dynamodb).put(
            EmbeddingRecord(
                key="images/a.png",
                model=model,
                id=image_id("images/a.png"),
                status="ok",
                sequencer=pad_sequencer("01"),
                updated_at=now_iso(),
                vector=vector,
            )
        )
        snapshot_app.build(settings)({}, Context())

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line[:1] == "{"]
    summaries = [line for line in lines if line.get("message", "").startswith("snapshot: 1 items")]
    assert len(summaries) == 1, lines
    summary = summaries[0]
    assert summary["level"] == "INFO" and summary["service"] == "imgsearch-snapshot"
    assert summary["function_request_id"] == "request-1"
    assert summary["location"].startswith("take_snapshot:")
