"""Publish step of the index pipeline: conditional write of current.json, prune, metrics.

Handler ``publish_index.app.handler``. Input: ``PublishInput`` (``{"snapshot": ..., "build":
..., "validation": ...}``). Output: ``PublishResult.dump()``. Raises ``PublishConflict`` when
another run published first, after counting it in the ``PublishConflicts`` metric. Logic lives
in ``imgsearch.pipeline.publish``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.catalog.current import PublishConflict
from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.pipeline.contracts import PublishInput
from imgsearch.pipeline.publish import publish_metrics, publish_version


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket")
    clients = function.clients
    metrics = function.metrics

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        payload = PublishInput.parse(event)
        try:
            result = publish_version(settings, clients.s3, payload.snapshot, payload.build)
        except PublishConflict:
            metrics.add_metric(name="PublishConflicts", unit=MetricUnit.Count, value=1)
            raise
        for name, unit, value in publish_metrics(result):
            metrics.add_metric(name=name, unit=unit, value=value)
        return result.dump()

    return function.instrument(handler, metrics=True)


handler = lambda_entry(build)
