"""One Distributed Map child: embed one chunk manifest's objects with the embed function's code.

``Ingestor.backfill`` decides per object (``backfill_verdict``) and writes conditionally; here the
objects that failed (throttling, timeouts, any error) get more rounds with backoff,
and the chunk's result is written to ``results/<chunk>.json`` whatever happened, so the report
counts every object once::

    result = embed_chunk(settings, s3, ingestor, ChunkInput.parse(event))
    result.embedded, result.skipped, result.failed

On the Catch path (the Lambda itself failed after the state's retries), ``record_failure``
writes the chunk's result with every object failed and the error, and the run goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from imgsearch.backfill.contracts import (
    FAILURES_KEPT,
    ChunkInput,
    ChunkManifest,
    ChunkResult,
    KeyFailure,
)
from imgsearch.backfill.errors import BackfillError
from imgsearch.backfill.layout import RunLayout
from imgsearch.catalog.contract import read_object, write_object
from imgsearch.core.config import Settings
from imgsearch.ingest.pipeline import Ingestor, Outcome, Timings
from imgsearch.pipeline.failure import describe_error

logger = logging.getLogger(__name__)

BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 20.0


def backoff(attempt: int) -> float:
    """Full jitter (the AWS SDKs' choice): up to 0.5 s, 1 s, 2 s, ... capped at 20 s."""
    return random.uniform(0, min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** (attempt - 1)))


def read_manifest(settings: Settings, s3: Any, payload: ChunkInput) -> ChunkManifest:
    manifest = read_object(s3, settings.bucket, payload.item.manifest, ChunkManifest)
    if manifest is None:
        raise BackfillError(
            f"chunk manifest s3://{settings.bucket}/{payload.item.manifest} is gone"
        )
    return manifest


def embed_chunk(
    settings: Settings,
    s3: Any,
    ingestor: Ingestor,
    payload: ChunkInput,
    sleep: Callable[[float], None] = time.sleep,
) -> ChunkResult:
    if payload.model != ingestor.model_id:
        raise BackfillError(
            f"the run embeds with {payload.model}, this function runs {ingestor.model_id}"
        )
    started = time.monotonic()
    manifest = read_manifest(settings, s3, payload)
    label = f"chunk-{payload.item.chunk:06d}"
    pending = list(manifest.objects)
    settled: list[Outcome] = []
    phases = Timings()
    attempt = 0
    while pending:
        attempt += 1
        report = ingestor.backfill(pending, manifest.bucket, label, force=payload.force)
        for phase in dataclasses.fields(Timings):
            total = getattr(phases, phase.name) + getattr(report.timings, phase.name)
            setattr(phases, phase.name, total)
        # Every failure gets its rounds, as the embed function's messages get SQS's: a
        # throttle passes, and so may an error nobody foresaw (a 500 the SDK did not retry).
        retry = {o.key for o in report.outcomes if o.result == "failed"}
        if attempt >= settings.backfill.attempts:
            retry = set()
        settled.extend(o for o in report.outcomes if o.key not in retry)
        pending = [obj for obj in pending if obj.key in retry]
        if pending:
            logger.warning(
                "%s: %d objects failed, round %d of %d",
                label,
                len(pending),
                attempt + 1,
                settings.backfill.attempts,
            )
            sleep(backoff(attempt))
    result = summarize(payload.item.chunk, len(manifest.objects), settled)
    result = result.model_copy(
        update={
            "attempts": attempt,
            "model_images": phases.model_images,
            "seconds": round(time.monotonic() - started, 3),
            "phase_seconds": {
                "s3_read": round(phases.s3_read, 3),
                "preprocess": round(phases.preprocess, 3),
                "model": round(phases.model, 3),
                "dynamodb": round(phases.dynamodb, 3),
            },
        }
    )
    write_object(s3, settings.bucket, _layout(settings, payload).result(payload.item.chunk), result)
    logger.info(
        "%s: %d objects, %d embedded, %d failed in %.1f s",
        label,
        result.objects,
        result.embedded,
        result.failed,
        result.seconds,
    )
    return result


def summarize(chunk: int, objects: int, outcomes: list[Outcome]) -> ChunkResult:
    """A chunk's counts from its objects' outcomes (each object has exactly one)."""
    results = Counter(o.result for o in outcomes)
    failed = [o for o in outcomes if o.result == "failed"]
    return ChunkResult(
        chunk=chunk,
        objects=objects,
        embedded=results["embedded"],
        reused=sum(1 for o in outcomes if o.reused),
        skipped=dict(Counter(o.reason for o in outcomes if o.result == "skipped")),
        quarantined=dict(Counter(o.reason for o in outcomes if o.result == "quarantined")),
        failed=len(failed),
        failures=[KeyFailure(key=o.key, error=o.detail) for o in failed[:FAILURES_KEPT]],
    )


def record_failure(settings: Settings, s3: Any, payload: ChunkInput) -> ChunkResult:
    """The Catch path: the chunk's Lambda gave up; every object of it counts as failed."""
    error = payload.error
    message = "unknown error"
    if error:
        name, text, _details = describe_error(error)
        message = f"{name}: {text}"
    try:
        objects = len(read_manifest(settings, s3, payload).objects)
    except BackfillError:
        objects = 0
    result = ChunkResult(
        chunk=payload.item.chunk,
        objects=objects,
        failed=objects,
        failures=[KeyFailure(key=payload.item.manifest, error=message[:1000])],
    )
    write_object(s3, settings.bucket, _layout(settings, payload).result(payload.item.chunk), result)
    logger.error("chunk %d failed: %s", payload.item.chunk, message)
    return result


def _layout(settings: Settings, payload: ChunkInput) -> RunLayout:
    return RunLayout(settings.backfill.prefix, payload.run_id)
