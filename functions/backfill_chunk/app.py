"""EmbedChunk (and ChunkFailed): one Distributed Map child of the backfill.

Handler ``backfill_chunk.app.handler``. Input: ``ChunkInput`` (the Map's ``ItemSelector``:
``{"run_id", "model", "force", "item": {"chunk", "manifest"}}``, plus ``error`` on the Catch
path). Writes ``results/<chunk>.json`` and returns ``ChunkResult.dump()``. Logic lives in
``imgsearch.backfill.chunk`` (and ``imgsearch.ingest``, shared with the embed function).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.backfill.chunk import embed_chunk, record_failure
from imgsearch.backfill.contracts import ChunkInput
from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.ingest import Ingestor
from imgsearch.ingest.models import Ingestors


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket", "table")
    clients = function.clients
    metrics = function.metrics
    ingestors = Ingestors(
        settings,
        clients.s3,
        clients.dynamodb,
        default=Ingestor.from_settings(
            settings, s3=clients.s3, dynamodb=clients.dynamodb, logger=function.logger
        ),
    )

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        payload = ChunkInput.parse(event)
        if payload.error is not None:
            result = record_failure(settings, clients.s3, payload)
        else:
            result = embed_chunk(settings, clients.s3, ingestors.get(payload.model), payload)
        counts = {
            "BackfillImagesEmbedded": result.embedded,
            "BackfillImagesSkipped": sum(result.skipped.values()),
            "BackfillImagesQuarantined": sum(result.quarantined.values()),
            "BackfillImagesFailed": result.failed,
        }
        for name, value in counts.items():
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        return result.dump()

    return function.instrument(handler, metrics=True)


handler = lambda_entry(build)
