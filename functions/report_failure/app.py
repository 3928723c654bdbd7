"""ReportFailure: the index pipeline's Catch target.

Handler ``report_failure.app.handler``. Input: ``{"execution": $$.Execution.Id,
"execution_name": $$.Execution.Name, "state": $}`` where ``$.failed.<Step>`` holds the caught
``{Error, Cause}``. Writes ``indexes/failures/<execution name>.json``, notifies the alerts topic,
returns ``{step, error, cause, report_key}`` for the ``Fail`` state. Logic lives in
``imgsearch.index.failure``.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.aws import AWS_CONFIG
from imgsearch.config import Settings
from imgsearch.index.failure import report_failure

settings = Settings.from_env()
settings.require("bucket", "alerts_topic_arn")
logger = Logger()
tracer = Tracer()
s3 = boto3.client("s3", region_name=settings.region, config=AWS_CONFIG)
sns = boto3.client("sns", region_name=settings.region, config=AWS_CONFIG)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    return report_failure(
        settings,
        s3,
        sns,
        execution_arn=event.get("execution", ""),
        execution_name=event.get("execution_name") or context.aws_request_id,
        state=event.get("state") or {},
    )
