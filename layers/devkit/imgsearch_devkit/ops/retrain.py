"""Start a retraining run, refusing while one is under way; read a run's report.

::

    arn = start_retrain(target, force=False)     # the retraining state machine's execution
    report = read_run_report(target, arn)        # RetrainResult, None until the run ends
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

from imgsearch.catalog.contract import read_object
from imgsearch.catalog.retraining import RetrainRunning, execution_running, read_lock
from imgsearch.retrain.steps import RetrainResult, run_name, run_prefix
from imgsearch_devkit.ops.registry import caller
from imgsearch_devkit.target import Target, TargetError


def start_retrain(target: Target, force: bool = False, now: datetime | None = None) -> str:
    """Start the retraining state machine on demand; its execution ARN. Refused (before an
    execution exists) while another run holds the lock."""
    if not target.retrain_arn:
        raise TargetError(
            "the target names no retraining state machine (RetrainStateMachineArn output): "
            "deploy this version of the template"
        )
    sfn = target.client("stepfunctions")
    held = read_lock(target.client("s3"), target.bucket, target.settings().retrain.prefix)
    if held is not None and execution_running(sfn, held.execution):
        raise RetrainRunning(
            f"a retraining run is under way ({held.execution}, started {held.started_at} "
            f"by {held.trigger}): wait for it, or stop it in the Step Functions console"
        )
    now = now or datetime.now(UTC)
    name = f"retrain-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    payload = {"trigger": "on-demand", "force": force, "by": caller(target)}
    return str(
        sfn.start_execution(
            stateMachineArn=target.retrain_arn, name=name, input=json.dumps(payload)
        )["executionArn"]
    )


def read_run_report(target: Target, execution: str) -> RetrainResult | None:
    settings = target.settings()
    key = run_prefix(settings, run_name(execution)) + "report.json"
    return read_object(target.client("s3"), target.bucket, key, RetrainResult)
