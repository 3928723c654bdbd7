"""Finish (and Failed): the backfill's report, and its alert when anything failed.

Handler ``backfill_report.app.handler``. Input: ``ReportInput`` (``{"execution":
$$.Execution.Id, "run_id": $$.Execution.Name, "listing": $.listing}``, plus ``failed`` on the
Catch path). Writes ``backfill/<run>/report.json``, returns ``BackfillReport.dump()``. Logic
lives in ``imgsearch.backfill.report``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.backfill.contracts import ReportInput
from imgsearch.backfill.report import write_report
from imgsearch.core.aws import Clients
from imgsearch.core.clock import now_iso
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket", "alerts_topic_arn")
    clients = function.clients
    metrics = function.metrics

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        report = write_report(
            settings, clients.s3, clients.sns, ReportInput.parse(event), finished_at=now_iso()
        )
        # One datapoint per run: the failed-run alarm watches BackfillRunsFailed.
        metrics.add_metric(
            name="BackfillRunsFailed",
            unit=MetricUnit.Count,
            value=int(report.status != "succeeded"),
        )
        metrics.add_metric(
            name="BackfillImagesPerSecond",
            unit=MetricUnit.CountPerSecond,
            value=report.images_per_second,
        )
        return report.dump()

    return function.instrument(handler, metrics=True)


handler = lambda_entry(build)
