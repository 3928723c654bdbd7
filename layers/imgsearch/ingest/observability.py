"""Metrics and per-message log lines of the embed function.

Once per batch and model, ``log_batch`` logs the counts and the time per phase; for the
serving model, ``publish_metrics`` adds the batch's figures to the handler's Powertools
``Metrics`` (flushed as EMF by ``log_metrics``); per-reason counts go out as single metrics with
a ``Reason`` dimension, next to the totals without it (alarms watch the totals, dashboards split
by reason). Then, per SQS record, ``settle_message`` logs what happened (to each model, during a
rollout) with the S3 request id as correlation id and raises ``MessageRetry`` for a message that
must come back::

    reports = [ingestor.process(messages) for ingestor in ingestors]   # serving model first
    for report in reports:
        log_batch(logger, report)
    publish_metrics(metrics, reports[0])
    process_partial_response(event, lambda r: settle_message(logger, reports, r.message_id), ...)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, single_metric

from imgsearch.ingest.pipeline import BatchReport

IMAGES_EMBEDDED = "ImagesEmbedded"
IMAGES_QUARANTINED = "ImagesQuarantined"
EVENTS_SKIPPED = "EventsSkipped"
IMAGES_DELETED = "ImagesDeleted"
EVENTS_FAILED = "EventsFailed"
BATCH_SIZE = "BatchSize"
MODEL_LATENCY = "ModelLatencyPerImageMs"
DUPLICATE_REUSED = "DuplicateContentReused"
REASON_DIMENSION = "Reason"


class MessageRetry(RuntimeError):
    """The message hit a transient (or unexpected) failure: SQS must deliver it again."""


def publish_metrics(metrics: EphemeralMetrics, report: BatchReport) -> None:
    results = Counter(o.result for o in report.outcomes)
    metrics.add_metric(name=BATCH_SIZE, unit=MetricUnit.Count, value=len(report.messages))
    metrics.add_metric(name=IMAGES_EMBEDDED, unit=MetricUnit.Count, value=results["embedded"])
    metrics.add_metric(
        name=DUPLICATE_REUSED,
        unit=MetricUnit.Count,
        value=sum(1 for o in report.outcomes if o.reused),
    )
    metrics.add_metric(name=IMAGES_QUARANTINED, unit=MetricUnit.Count, value=results["quarantined"])
    metrics.add_metric(name=EVENTS_SKIPPED, unit=MetricUnit.Count, value=results["skipped"])
    metrics.add_metric(name=IMAGES_DELETED, unit=MetricUnit.Count, value=results["deleted"])
    metrics.add_metric(name=EVENTS_FAILED, unit=MetricUnit.Count, value=results["failed"])
    timings = report.timings
    if timings.model_images:
        metrics.add_metric(
            name=MODEL_LATENCY,
            unit=MetricUnit.Milliseconds,
            value=1000.0 * timings.model / timings.model_images,
        )
    by_reason = Counter(
        (o.result, o.reason)
        for o in report.outcomes
        if o.result in ("quarantined", "skipped", "failed")
    )
    names = {"quarantined": IMAGES_QUARANTINED, "skipped": EVENTS_SKIPPED, "failed": EVENTS_FAILED}
    for (result, reason), count in sorted(by_reason.items()):
        with single_metric(
            name=names[result],
            unit=MetricUnit.Count,
            value=count,
            namespace=metrics.namespace,
        ) as metric:
            if metrics.service:
                metric.add_dimension(name="service", value=str(metrics.service))
            metric.add_dimension(name=REASON_DIMENSION, value=reason)


def log_batch(logger: Any, report: BatchReport) -> None:
    """One line per batch: what happened and where the time went (milliseconds per phase)."""
    timings = report.timings
    logger.info(
        "batch processed",
        extra={
            "model": report.model,
            "messages": len(report.messages),
            "results": dict(Counter(o.result for o in report.outcomes)),
            "model_images": timings.model_images,
            "model_calls": timings.model_calls,
            "s3_read_ms": round(1000 * timings.s3_read, 2),
            "preprocess_ms": round(1000 * timings.preprocess, 2),
            "model_ms": round(1000 * timings.model, 2),
            "dynamodb_ms": round(1000 * timings.dynamodb, 2),
        },
    )


def settle_message(logger: Any, reports: Sequence[BatchReport], message_id: str) -> None:
    """Log one message's outcomes under its correlation id; raise if it must be retried (for
    any of the models: a redelivery is skipped where it was written already)."""
    first = reports[0]
    message = next((m for m in first.messages if m.message_id == message_id), None)
    logger.set_correlation_id(message.correlation_id if message else message_id)
    failed = []
    for report in reports:
        outcomes = report.outcomes_for(message_id)
        for outcome in outcomes:
            extra = {"key": outcome.key, "message_id": message_id, "result": outcome.result}
            if len(reports) > 1:
                extra["model"] = report.model
            if outcome.reason:
                extra["reason"] = outcome.reason
            if outcome.detail:
                extra["detail"] = outcome.detail
            if outcome.reused:
                extra["reused"] = True
            if outcome.result == "quarantined":
                logger.warning("image quarantined", extra=extra)
            elif outcome.result == "failed":
                logger.warning("event failed, message goes back to the queue", extra=extra)
            else:
                logger.info(f"event {outcome.result}", extra=extra)
        failed.extend(o for o in outcomes if o.result == "failed")
    if failed:
        raise MessageRetry(f"{len(failed)} event(s) failed: " + "; ".join(o.detail for o in failed))
