"""Snapshot step of the index pipeline: scan the embeddings table into S3.

Handler ``snapshot.app.handler``. Input: the execution input, ``{}`` or ``{"force": true}``.
Output: ``SnapshotManifest.to_dict()`` (``unchanged: true`` ends the run early). Logic lives in
``imgsearch.index.snapshot``.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.aws import AWS_CONFIG
from imgsearch.config import Settings
from imgsearch.index.snapshot import index_age_seconds, parse_start_input, take_snapshot
from imgsearch.store import EmbeddingStore

settings = Settings.from_env()
settings.require("bucket", "table")
logger = Logger()
metrics = Metrics()
tracer = Tracer()
s3 = boto3.client("s3", region_name=settings.region, config=AWS_CONFIG)
store = EmbeddingStore(
    settings.table, boto3.client("dynamodb", region_name=settings.region, config=AWS_CONFIG)
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    force = parse_start_input(event)
    manifest = take_snapshot(settings, s3, store, force=force)
    # Always one metric (no "No application metrics" warning before the first index serves).
    metrics.add_metric(name="SnapshotVectors", unit=MetricUnit.Count, value=manifest.count)
    age = index_age_seconds(manifest)
    if age is not None:  # every scheduled run reports it, so a stuck pipeline raises the alarm
        metrics.add_metric(name="IndexAgeSeconds", unit=MetricUnit.Seconds, value=age)
    return manifest.to_dict()
