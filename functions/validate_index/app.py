"""Validate step of the index pipeline: measure the built version, write its report.json.

Handler ``validate_index.app.handler``. Input: ``ValidateInput`` (``{"snapshot": ..., "build":
...}``). Output: ``ValidationOutcome.dump()``; the Gate state reads ``passed``. The model is
loaded only when a golden set exists. Logic lives in ``imgsearch.pipeline.validate``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.pipeline.contracts import ValidateInput
from imgsearch.pipeline.validate import validate_version


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket")
    clients = function.clients
    metrics = function.metrics

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        payload = ValidateInput.parse(event)
        outcome = validate_version(settings, clients.s3, payload.snapshot, payload.build)
        if "recall_at_10" in outcome.headline:  # every candidate: a rejected one raises the alarm
            metrics.add_metric(
                name="ValidationRecallAt10",
                unit=MetricUnit.NoUnit,
                value=outcome.headline["recall_at_10"],
            )
        return outcome.dump()

    return function.instrument(handler, metrics=True)


handler = lambda_entry(build)
