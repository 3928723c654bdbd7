"""Failure reports: what the state machine's Catch path records when a step fails or a gate
rejects a version.

Each ``Catch`` puts the error at ``$.failed.<StepName>`` (so the report knows the step), and
the ReportFailure task passes the whole state here. The report goes to
``indexes/failures/<execution name>.json`` and to the alerts topic; the returned ``error`` and
``cause`` become the execution's ``Fail`` error and cause::

    result = report_failure(settings, s3, sns, execution_arn, execution_name, RunState.parse(state))
    result.cause      # "Validate failed: ... (report s3://bucket/indexes/failures/run-1.json)"
"""

from __future__ import annotations

import json
import logging
from typing import Any

from imgsearch.core.aws import publish_alert
from imgsearch.core.clock import now_iso
from imgsearch.core.config import Settings
from imgsearch.pipeline.contracts import CaughtError, FailureReport, FailureResult, RunState

logger = logging.getLogger(__name__)

FAILURES_FOLDER = "failures/"
"""SNS subjects are at most 100 characters."""


def failure_key(settings: Settings, execution_name: str) -> str:
    return f"{settings.index.prefix}{FAILURES_FOLDER}{execution_name}.json"


def describe_error(error: CaughtError) -> tuple[str, str, dict[str, Any] | None]:
    """(error name, readable message, parsed Lambda error) from a Catch's ``{Error, Cause}``."""
    name = error.error or "States.Unknown"
    try:
        details = json.loads(error.cause)
    except json.JSONDecodeError:
        return name, error.cause, None
    if isinstance(details, dict) and "errorMessage" in details:
        return name, str(details["errorMessage"]), details
    if isinstance(details, dict) and "Error" in details and "Cause" in details:
        # A nested execution that failed (startExecution.sync): its own error and cause.
        return str(details["Error"]), str(details["Cause"]), details
    return name, error.cause, None


def report_failure(
    settings: Settings,
    s3: Any,
    sns: Any,
    execution_arn: str,
    execution_name: str,
    state: RunState,
) -> FailureResult:
    step, error = next(iter(state.failed.items()), ("Unknown", CaughtError()))
    name, message, details = describe_error(error)
    key = failure_key(settings, execution_name)
    report = FailureReport(
        execution=execution_arn,
        execution_name=execution_name,
        step=step,
        error=name,
        message=message,
        details=details,
        version=state.build.version if state.build else "",
        validation=state.validation,
        serving_version=state.snapshot.serving_version if state.snapshot else "",
        input=state.execution_input,
        failed_at=now_iso(),
        snapshot=state.snapshot.prefix if state.snapshot else "",
        note="the serving index is unchanged: current.json was not written by this run",
    )
    body = report.to_json()
    s3.put_object(Bucket=settings.bucket, Key=key, Body=body, ContentType="application/json")
    publish_alert(
        sns,
        settings.alerts_topic_arn,
        f"imgsearch index pipeline failed at {step}: {name}",
        body.decode(),
    )
    logger.error("index pipeline failed at %s: %s: %s", step, name, message)
    return FailureResult(
        step=step,
        error=name,
        cause=f"{step} failed: {message} (report s3://{settings.bucket}/{key})",
        report_key=key,
    )
