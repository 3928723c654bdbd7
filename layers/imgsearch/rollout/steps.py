"""The model rollout's own steps; the backfill and the index pipeline do the rest.

``statemachine/model_rollout.asl.json``::

    Begin -> WaitForWriters -> Backfill (the backfill state machine, the candidate)
          -> Index (the index pipeline, {"model": candidate, "force": true}: its gates measure
             the candidate against the serving index, and its Publish is the atomic swap)
          -> Promote;   any failure or rejection -> Reject

::

    state = begin(settings, s3, RolloutInput(model="clip@2"), execution="arn:...")
    result = promote(settings, s3, PromoteInput.parse(event))
    result = reject(settings, s3, sns, RejectInput.parse(event))
    rollback_model(settings, s3, to="clip@1")    # the operator's one command (seconds)
"""

from __future__ import annotations

import logging
import math
from typing import Any

from pydantic import Field

from imgsearch.catalog.contract import Contract, Figure, Part
from imgsearch.catalog.current import CurrentIndex, read_current
from imgsearch.catalog.layout import version_order
from imgsearch.catalog.registry import (
    Evaluation,
    RegistryError,
    bundle_uri,
    read_record,
    require_record,
    transition,
)
from imgsearch.catalog.rollout import Rollout, end_rollout, read_rollout, start_rollout
from imgsearch.catalog.versions import list_versions
from imgsearch.core.aws import publish_alert
from imgsearch.core.clock import now_iso
from imgsearch.core.config import Settings
from imgsearch.model import ClipModel
from imgsearch.pipeline.contracts import CaughtError, RunState
from imgsearch.pipeline.failure import describe_error
from imgsearch.pipeline.rollback import RollbackError, rollback

logger = logging.getLogger(__name__)

WAIT_FACTOR = 3
"""WaitForWriters waits this many times the embed function's refresh of the models it writes."""


class RolloutRejected(RegistryError):
    """The candidate did not make it: the serving model and index are unchanged."""


class RolloutInput(Contract):
    """The execution input: ``{"model": "clip-b32@2"}``, optionally ``"max_concurrency"``."""

    LABEL = "the rollout input"

    model: str
    max_concurrency: int = Field(default=0, ge=0)
    """The backfill's concurrency (0: the stack's ``BackfillMaxConcurrency``, also its cap)."""
    by: str = ""
    """Who started it (the CLI passes the caller's AWS identity)."""


class BeginInput(Contract):
    LABEL = "the Begin step's input"

    input: RolloutInput
    execution: str


class RolloutState(Contract):
    """Begin's output (``$.rollout``): the pair being decided between."""

    LABEL = "the rollout state"

    candidate: str
    champion: str
    execution: str
    started_at: str
    wait_seconds: int
    """How long WaitForWriters waits: past the embed function's view of the rollout."""
    max_concurrency: int = 0
    """Passed to the backfill (0: its default)."""


class PromoteInput(Contract):
    LABEL = "the Promote step's input"

    rollout: RolloutState
    index: RunState
    """The index pipeline's output (the nested execution's ``Output``)."""


class RejectState(Part):
    """The state (``$``) at Reject: the rollout once Begin returned, ``failed.<Step>`` on a
    Catch path, ``reason`` when a Choice said no."""

    rollout: RolloutState | None = None
    failed: dict[str, CaughtError] = Field(default_factory=dict)
    reason: str = ""


class RejectInput(Contract):
    LABEL = "the Reject step's input"

    input: RolloutInput
    execution: str
    state: RejectState = Field(default_factory=RejectState)


class RolloutResult(Contract):
    LABEL = "the rollout result"

    status: str
    candidate: str
    champion: str = ""
    version: str = ""
    reason: str = ""
    headline: dict[str, Figure] = Field(default_factory=dict)


def begin(settings: Settings, s3: Any, payload: BeginInput) -> RolloutState:
    """Check and verify the candidate, take the rollout pointer (one rollout at a time), then
    mark the candidate ``embedding``."""
    candidate = payload.input.model
    record = require_record(s3, settings.bucket, candidate)
    current = read_current(s3, settings.bucket, settings.index.prefix)
    champion = current.model if current else ""
    if champion == candidate:
        raise RolloutRejected(f"{candidate} is the serving model already")
    # Every file against its sha256, the graphs' shapes against model.json.
    ClipModel.load(
        bundle_uri(settings.bucket, candidate),
        threads=settings.model.threads,
        cache_dir=settings.model.cache_dir,
        s3_client=s3,
    )
    pointer = start_rollout(
        s3,
        settings.bucket,
        Rollout(
            candidate=candidate,
            champion=champion,
            execution=payload.execution,
            started_at=now_iso(),
        ),
    )
    try:
        transition(s3, settings.bucket, record, "embedding", by=payload.input.by or "rollout")
    except Exception:
        end_rollout(s3, settings.bucket, pointer)
        raise
    logger.info("rollout of %s begins (serving %s)", candidate, champion or "nothing")
    return RolloutState(
        candidate=candidate,
        champion=champion,
        execution=payload.execution,
        started_at=pointer.started_at,
        wait_seconds=math.ceil(WAIT_FACTOR * settings.rollout.write_models_seconds),
        max_concurrency=payload.input.max_concurrency,
    )


def promote(settings: Settings, s3: Any, payload: PromoteInput) -> RolloutResult:
    """The index pipeline published the candidate's index: record it, archive the champion,
    stop the dual writes."""
    rollout = payload.rollout
    published = payload.index.publish
    if published is None:
        raise RolloutRejected(
            f"the index pipeline published no index of {rollout.candidate}"
            + (f": {payload.index.model_extra}" if payload.index.model_extra else "")
        )
    current = read_current(s3, settings.bucket, settings.index.prefix)
    if current is None or current.model != rollout.candidate:
        raise RolloutRejected(
            f"{rollout.candidate}'s index was published, but current.json now names "
            f"{current.model if current else 'nothing'} (a rollback since?)"
        )
    by = f"rollout {rollout.execution.rpartition(':')[2]}"
    record = require_record(s3, settings.bucket, rollout.candidate)
    evaluation = Evaluation(
        at=now_iso(),
        kind="index",
        figures=dict(current.headline),
        report=f"{settings.index.prefix}{current.version}/report.json",
        passed=True,
    )
    record = record.model_copy(update={"evaluations": [*record.evaluations, evaluation]})
    record = transition(s3, settings.bucket, record, "validated", by=by, reason=current.version)
    transition(s3, settings.bucket, record, "production", by=by, reason=current.version)
    champion = read_record(s3, settings.bucket, rollout.champion) if rollout.champion else None
    if champion is not None and champion.state == "production":
        transition(s3, settings.bucket, champion, "archived", by=by, reason="replaced")
    _end(settings, s3, rollout.execution)
    logger.info("rollout of %s promoted: %s serves", rollout.candidate, current.version)
    return RolloutResult(
        status="promoted",
        candidate=rollout.candidate,
        champion=rollout.champion,
        version=current.version,
        headline=dict(current.headline),
    )


def reject(settings: Settings, s3: Any, sns: Any, payload: RejectInput) -> RolloutResult:
    """Any failure or a gate's no: the candidate is ``rejected``, dual writes stop, an alert
    goes out; what served goes on serving."""
    candidate = payload.input.model
    state = payload.state
    reason = state.reason
    if state.failed:
        step, caught = next(iter(state.failed.items()))
        name, message, _details = describe_error(caught)
        reason = f"{step} failed: {name}: {message}"
    record = read_record(s3, settings.bucket, candidate)
    if record is not None and record.state == "embedding":
        transition(s3, settings.bucket, record, "rejected", by="rollout", reason=reason[:500])
    _end(settings, s3, payload.execution)
    result = RolloutResult(
        status="rejected",
        candidate=candidate,
        champion=state.rollout.champion if state.rollout else "",
        reason=reason,
    )
    publish_alert(
        sns,
        settings.alerts_topic_arn,
        f"imgsearch rollout of {candidate} rejected",
        result.to_json().decode(),
    )
    logger.error("rollout of %s rejected: %s", candidate, reason)
    return result


def _end(settings: Settings, s3: Any, execution: str) -> None:
    pointer = read_rollout(s3, settings.bucket)
    if pointer is not None and pointer.execution == execution:
        end_rollout(s3, settings.bucket, pointer)


def rollback_model(settings: Settings, s3: Any, to: str = "", by: str = "") -> CurrentIndex:
    """Serve the newest kept index of model ``to`` (default: of the model that served before
    this one) again: one conditional write of ``current.json``, model and index together; the
    registry follows (this model ``archived``, that one ``production``)."""
    current = read_current(s3, settings.bucket, settings.index.prefix)
    if current is None:
        raise RollbackError("nothing is serving yet: there is no indexes/current.json")
    if to and to == current.model:
        raise RollbackError(f"{to} is the serving model already")
    kept = [
        v
        for v in list_versions(s3, settings.bucket, settings.index.prefix)
        if v.status == "validated"
        and v.published
        and v.report is not None
        and v.report.model != current.model
        and (not to or v.report.model == to)
    ]
    if not kept:
        which = to or "another model"
        raise RollbackError(
            f"no published, validated index of {which} is kept to roll back to "
            f"(IMGSEARCH_INDEX_KEEP_VERSIONS decides how many are)"
        )
    target = max(kept, key=lambda v: version_order(v.version))
    replacement = rollback(settings, s3, to=target.version)
    why = f"rollback to {target.version}"
    leaving = read_record(s3, settings.bucket, current.model)
    if leaving is not None and leaving.state == "production":
        transition(s3, settings.bucket, leaving, "archived", by=by, reason=why)
    back = read_record(s3, settings.bucket, replacement.model)
    if back is not None and back.state == "archived":
        transition(s3, settings.bucket, back, "production", by=by, reason=why)
    return replacement
