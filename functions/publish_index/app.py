"""Publish step of the index pipeline: conditional write of current.json, prune, metrics.

Handler ``publish_index.app.handler``. Input: ``{"snapshot": ..., "build": ...}``. Output:
``PublishResult.to_dict()``. Raises ``PublishConflict`` when another run published first, after
counting it in the ``PublishConflicts`` metric.
Logic lives in ``imgsearch.index.publish``.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.aws import AWS_CONFIG
from imgsearch.config import Settings
from imgsearch.index.artifacts import PublishConflict
from imgsearch.index.build import BuildResult
from imgsearch.index.publish import publish_metrics, publish_version
from imgsearch.index.snapshot import SnapshotManifest

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
    try:
        result = publish_version(settings, s3, manifest, build)
    except PublishConflict:
        metrics.add_metric(name="PublishConflicts", unit=MetricUnit.Count, value=1)
        raise
    for name, unit, value in publish_metrics(result):
        metrics.add_metric(name=name, unit=unit, value=value)
    return result.to_dict()
