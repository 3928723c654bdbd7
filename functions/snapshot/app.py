"""Snapshot step of the index pipeline: scan the embeddings table into S3.

Handler ``snapshot.app.handler``. Input: the execution input, ``{}`` or ``{"force": true}``.
Output: ``SnapshotManifest.dump()`` (``unchanged: true`` ends the run early). Logic lives in
``imgsearch.pipeline.snapshot``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.pipeline.snapshot import index_age_seconds, parse_start_input, take_snapshot
from imgsearch.store import EmbeddingStore


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket", "table")
    clients = function.clients
    metrics = function.metrics
    store = EmbeddingStore(settings.table, clients.dynamodb)

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        start = parse_start_input(event)
        manifest = take_snapshot(settings, clients.s3, store, force=start.force, model=start.model)
        # Always one metric (no "No application metrics" warning before the first index serves).
        metrics.add_metric(name="SnapshotVectors", unit=MetricUnit.Count, value=manifest.count)
        age = index_age_seconds(manifest)
        if age is not None:  # every scheduled run reports it, so a stuck pipeline raises the alarm
            metrics.add_metric(name="IndexAgeSeconds", unit=MetricUnit.Seconds, value=age)
        return manifest.dump()

    return function.instrument(handler, metrics=True)


handler = lambda_entry(build)
