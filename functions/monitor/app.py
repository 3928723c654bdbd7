"""Monitor: the last window's search quality and embedding drift, on EventBridge Scheduler.

Handler ``monitor.app.handler``. Any input (the schedule sends ``{"trigger": "schedule"}``;
``{"now": ISO8601}`` measures the window that ends then, ``{"window_minutes": N}`` another
window than the configured one). Writes ``monitor/<run>/report.json``, ``report.svg``,
``queries.npy`` and ``monitor/latest.json``; emits the figures as metrics (the degradation and
drift alarms watch the flags); starts a retraining run when enough new feedback or images
came in since the last (``imgsearch.monitor.triggers``); returns the report's key and flags.
Logic lives in ``imgsearch.monitor``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.core.aws import Clients
from imgsearch.core.clock import parse_iso
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.monitor.run import metric_values, run_monitor, write_report
from imgsearch.monitor.triggers import start_if_due

UNITS = {"SearchLatencyP50": MetricUnit.Milliseconds, "SearchLatencyP99": MetricUnit.Milliseconds}


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket")
    s3 = function.clients.s3
    sfn = function.clients.client("stepfunctions")
    metrics = function.metrics

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        event = event or {}
        now = parse_iso(event["now"]) if event.get("now") else None
        window = event.get("window_minutes")
        measured = settings
        if window:  # a manual run of another window (imgsearch monitor run --window-minutes)
            options = dataclasses.replace(settings.monitor, window_minutes=int(window))
            measured = dataclasses.replace(settings, monitor=options)
        run = run_monitor(measured, s3, now=now)
        retrain = start_if_due(settings, s3, sfn, run.report["retrain"])
        key = write_report(s3, settings, run)
        report = run.report
        for name, value in metric_values(report).items():
            metrics.add_metric(name=name, unit=UNITS.get(name, MetricUnit.Count), value=value)
        drift = report["drift"]
        return {
            "report": key,
            "run": report["run"],
            "searches": report["counts"]["searches"],
            "degraded": report["degraded"],
            "image_drift": drift["images"] and drift["images"]["drift"],
            "query_drift": drift["queries"] and drift["queries"]["drift"],
            "retrain": retrain,
        }

    return function.instrument(handler, metrics=True)


handler = lambda_entry(build)
