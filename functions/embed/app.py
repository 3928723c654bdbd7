"""Embed function: S3 notifications (through SQS) in, embeddings-table items out.

Handler ``embed.app.handler``; the SQS event source mapping must enable
``ReportBatchItemFailures``. All logic lives in ``imgsearch.ingest``.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.aws import AWS_CONFIG
from imgsearch.config import Settings
from imgsearch.ingest import Ingestor, parse_batch
from imgsearch.ingest.observability import log_batch, publish_metrics, settle_message

settings = Settings.from_env()
settings.require("bucket", "table")
logger = Logger()
metrics = Metrics()
tracer = Tracer()
# A batch whose every message failed is still a partial response listing them all.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
s3 = boto3.client("s3", region_name=settings.region, config=AWS_CONFIG)
dynamodb = boto3.client("dynamodb", region_name=settings.region, config=AWS_CONFIG)
ingestor = Ingestor.from_settings(settings, s3=s3, dynamodb=dynamodb, logger=logger)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = ingestor.process(parse_batch(event, settings.image_prefix, settings.bucket))
    log_batch(logger, report)
    publish_metrics(metrics, report)

    def record_handler(record: SQSRecord) -> None:
        settle_message(logger, report, record.message_id)

    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
