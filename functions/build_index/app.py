"""Build step of the index pipeline: a usearch index from the snapshot, under a new version.

Handler ``build_index.app.handler``. Input: ``{"snapshot": <Snapshot output>}``. Output:
``BuildResult.to_dict()``. Logic lives in ``imgsearch.index.build``.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.aws import AWS_CONFIG
from imgsearch.config import Settings
from imgsearch.index.build import build_version
from imgsearch.index.snapshot import SnapshotManifest

settings = Settings.from_env()
settings.require("bucket")
logger = Logger()
tracer = Tracer()
s3 = boto3.client("s3", region_name=settings.region, config=AWS_CONFIG)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    manifest = SnapshotManifest.from_dict(event["snapshot"])
    return build_version(settings, s3, manifest).to_dict()
