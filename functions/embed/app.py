"""Embed function: S3 events (notifications or EventBridge, through SQS) in, embeddings out.

Handler ``embed.app.handler``; the SQS event source mapping must enable
``ReportBatchItemFailures``. All logic lives in ``imgsearch.ingest``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.ingest import Ingestor, parse_batch
from imgsearch.ingest.models import Ingestors, WriteModels, process_all
from imgsearch.ingest.observability import log_batch, publish_metrics, settle_message


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket", "table")
    clients = function.clients
    logger, metrics = function.logger, function.metrics
    # A batch whose every message failed is still a partial response listing them all.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    ingestors = Ingestors(
        settings,
        clients.s3,
        clients.dynamodb,
        default=Ingestor.from_settings(
            settings, s3=clients.s3, dynamodb=clients.dynamodb, logger=logger
        ),
    )
    # The serving model, and the candidate while a rollout runs.
    writes = WriteModels(clients.s3, settings, default=ingestors.default.model_id)

    # Events name the bucket the images are in: the stack's own, or the user's (EventBridge).
    images = settings.image_bucket or settings.bucket

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        messages = parse_batch(event, settings.image_prefix, images)
        reports = process_all(ingestors, writes, messages)
        for report in reports:
            log_batch(logger, report)
        publish_metrics(metrics, reports[0])

        def record_handler(record: SQSRecord) -> None:
            settle_message(logger, reports, record.message_id)

        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    # Tests reach the ingestor (its model) and the logger of the handler they built.
    handler.ingestor, handler.logger = ingestors.default, logger  # type: ignore[attr-defined]
    return function.instrument(handler, metrics=True)


handler = lambda_entry(build)
