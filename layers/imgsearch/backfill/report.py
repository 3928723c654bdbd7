"""The end of a backfill run: its chunks' results added up into ``report.json``, and an alert
when anything failed.

A chunk without a result (its Catch path failed too) counts as failed with all its objects, so
the report's totals cover every listed object even then::

    report = write_report(settings, s3, sns, ReportInput.parse(event), finished_at=now_iso())
    report.status         # "succeeded" | "completed_with_failures" | "failed"
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from imgsearch.backfill.contracts import (
    FAILURES_KEPT,
    BackfillReport,
    ChunkManifest,
    ChunkResult,
    KeyFailure,
    ReportInput,
)
from imgsearch.backfill.layout import RunLayout
from imgsearch.catalog.contract import read_object, write_object
from imgsearch.core.aws import publish_alert
from imgsearch.core.config import Settings
from imgsearch.pipeline.failure import describe_error

logger = logging.getLogger(__name__)

READERS = 16


def read_results(s3: Any, bucket: str, layout: RunLayout) -> dict[int, ChunkResult]:
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=layout.results
        )
        for item in page.get("Contents", [])
    ]
    with ThreadPoolExecutor(READERS) as pool:
        results = pool.map(lambda key: read_object(s3, bucket, key, ChunkResult), keys)
        return {r.chunk: r for r in results if r is not None}


def write_report(
    settings: Settings, s3: Any, sns: Any, payload: ReportInput, finished_at: str
) -> BackfillReport:
    listing = payload.state.listing
    run_id = listing.run_id if listing else payload.run_id
    layout = RunLayout(settings.backfill.prefix, run_id)
    fields: dict[str, Any] = {}
    if listing:
        fields = listing.model_dump(
            include={"started_at", "bucket", "prefix", "model", "force", "listed", "queued"}
            | {"ignored", "chunks"}
        )
    results = read_results(s3, settings.bucket, layout) if listing and listing.done else {}
    missing = [n for n in range(1, listing.chunks + 1) if n not in results] if listing else []
    for chunk in missing:  # neither the chunk nor its Catch path wrote a result
        manifest = read_object(s3, settings.bucket, layout.manifest(chunk), ChunkManifest)
        size = len(manifest.objects) if manifest else 0
        failure = KeyFailure(key=layout.manifest(chunk), error="the chunk wrote no result")
        results[chunk] = ChunkResult(chunk=chunk, objects=size, failed=size, failures=[failure])
    skipped: Counter[str] = Counter()
    quarantined: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    for result in results.values():
        skipped.update(result.skipped)
        quarantined.update(result.quarantined)
        phases.update(result.phase_seconds)
    ordered = [results[n] for n in sorted(results)]
    failed = sum(r.failed for r in ordered)
    error = ""
    if payload.state.failed:
        step, caught = next(iter(payload.state.failed.items()))
        name, message, _details = describe_error(caught)
        error = f"{step} failed: {name}: {message}"
    status = "failed" if error else ("completed_with_failures" if failed else "succeeded")
    seconds = _seconds(fields.get("started_at", ""), finished_at)
    queued = fields.get("queued", 0)
    report = BackfillReport(
        run_id=run_id,
        execution=payload.execution,
        status=status,
        finished_at=finished_at,
        **fields,
        chunks_failed=sum(1 for r in ordered if r.failed and r.failed == r.objects),
        embedded=sum(r.embedded for r in ordered),
        reused=sum(r.reused for r in ordered),
        skipped=dict(skipped),
        quarantined=dict(quarantined),
        failed=failed,
        failures=[f for r in ordered for f in r.failures][:FAILURES_KEPT],
        model_images=sum(r.model_images for r in ordered),
        phase_seconds={name: round(value, 3) for name, value in phases.items()},
        seconds=seconds,
        images_per_second=round(queued / seconds, 2) if seconds else 0.0,
        error=error,
        report_key=layout.report,
    )
    write_object(s3, settings.bucket, layout.report, report)
    if status != "succeeded":
        what = error or f"{failed} of {queued} images failed"
        publish_alert(
            sns,
            settings.alerts_topic_arn,
            f"imgsearch backfill {status}: {what}",
            report.to_json().decode(),
        )
    log = logger.error if status != "succeeded" else logger.info
    log(
        "backfill %s %s: %d embedded, %d failed (report s3://%s/%s)",
        run_id,
        status,
        report.embedded,
        failed,
        settings.bucket,
        layout.report,
    )
    return report


def _seconds(started_at: str, finished_at: str) -> float:
    try:
        start = datetime.fromisoformat(started_at)
        end = datetime.fromisoformat(finished_at)
    except ValueError:
        return 0.0
    return round(max(0.0, (end - start).total_seconds()), 3)
