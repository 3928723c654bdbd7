"""Failure reports: what the state machine's Catch path records when a step fails or a gate
rejects a version.

Each ``Catch`` puts the error at ``$.failed.<StepName>`` (so the report knows the step), and
the ReportFailure task passes the whole state here. The report goes to
``indexes/failures/<execution name>.json`` and to the alerts topic; the returned ``error`` and
``cause`` become the execution's ``Fail`` error and cause::

    result = report_failure(settings, s3, sns, execution_arn, execution_name, state)
    result["cause"]   # "Validate failed: ... (report s3://bucket/indexes/failures/run-1.json)"
"""

from __future__ import annotations

import json
import logging
from typing import Any

from imgsearch.config import Settings
from imgsearch.store import now_iso

logger = logging.getLogger(__name__)

FAILURES_FOLDER = "failures/"
SUBJECT_LIMIT = 100
"""SNS subjects are at most 100 characters."""


def failure_key(settings: Settings, execution_name: str) -> str:
    return f"{settings.index.prefix}{FAILURES_FOLDER}{execution_name}.json"


def describe_error(error: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
    """(error name, readable message, parsed Lambda error) from a Catch's ``{Error, Cause}``."""
    name = str(error.get("Error") or "States.Unknown")
    cause = str(error.get("Cause") or "")
    try:
        details = json.loads(cause)
    except json.JSONDecodeError:
        return name, cause, None
    if isinstance(details, dict) and "errorMessage" in details:
        return name, str(details["errorMessage"]), details
    return name, cause, None


def report_failure(
    settings: Settings,
    s3: Any,
    sns: Any,
    execution_arn: str,
    execution_name: str,
    state: dict[str, Any],
) -> dict[str, str]:
    failed = state.get("failed") or {"Unknown": {}}
    step, error = next(iter(failed.items()))
    name, message, details = describe_error(error)
    key = failure_key(settings, execution_name)
    snapshot = state.get("snapshot") or {}
    report = {
        "execution": execution_arn,
        "execution_name": execution_name,
        "step": step,
        "error": name,
        "message": message,
        "details": details,
        "version": (state.get("build") or {}).get("version", ""),
        "validation": state.get("validation"),
        "serving_version": snapshot.get("serving_version", ""),
        "input": {
            k: v for k, v in state.items() if k not in ("failed", "snapshot", "build", "validation")
        },
        "failed_at": now_iso(),
        "snapshot": snapshot.get("prefix", ""),
        "note": "the serving index is unchanged: current.json was not written by this run",
    }
    s3.put_object(
        Bucket=settings.bucket,
        Key=key,
        Body=json.dumps(report, indent=2, default=str).encode(),
        ContentType="application/json",
    )
    sns.publish(
        TopicArn=settings.alerts_topic_arn,
        Subject=f"imgsearch index pipeline failed at {step}: {name}"[:SUBJECT_LIMIT],
        Message=json.dumps(report, indent=2, default=str),
    )
    logger.error("index pipeline failed at %s: %s: %s", step, name, message)
    return {
        "step": step,
        "error": name,
        "cause": f"{step} failed: {message} (report s3://{settings.bucket}/{key})",
        "report_key": key,
    }
