"""Rollback: put an earlier validated index version back as the serving one.

Handler ``rollback_index.app.handler``. Input: ``{}`` (one step back) or ``{"to": VERSION}``.
Output: the new ``current.json``. Same logic as ``imgsearch index rollback``
(``imgsearch.index.rollback``).
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.aws import AWS_CONFIG
from imgsearch.config import Settings
from imgsearch.index.rollback import parse_rollback_input, rollback

settings = Settings.from_env()
settings.require("bucket")
logger = Logger()
tracer = Tracer()
s3 = boto3.client("s3", region_name=settings.region, config=AWS_CONFIG)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    current = rollback(settings, s3, to=parse_rollback_input(event))
    return json.loads(current.to_json())
