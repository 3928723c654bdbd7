"""Validate step of the index pipeline: measure the built version, write its report.json.

Handler ``validate_index.app.handler``. Input: ``{"snapshot": ..., "build": ...}``. Output:
``ValidationOutcome.to_dict()``; the Gate state reads ``passed``. The model is loaded only when a
golden set exists. Logic lives in ``imgsearch.index.validate``.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.aws import AWS_CONFIG
from imgsearch.config import Settings
from imgsearch.index.build import BuildResult
from imgsearch.index.snapshot import SnapshotManifest
from imgsearch.index.validate import validate_version

settings = Settings.from_env()
settings.require("bucket")
logger = Logger()
metrics = Metrics()
tracer = Tracer()
s3 = boto3.client("s3", region_name=settings.region, config=AWS_CONFIG)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    manifest = SnapshotManifest.from_dict(event["snapshot"])
    build = BuildResult.from_dict(event["build"])
    outcome = validate_version(settings, s3, manifest, build)
    if "recall_at_10" in outcome.headline:  # every candidate, so a rejected one raises the alarm
        metrics.add_metric(
            name="ValidationRecallAt10",
            unit=MetricUnit.NoUnit,
            value=outcome.headline["recall_at_10"],
        )
    return outcome.to_dict()
