"""Register model bundles in a stack's registry and list them.

::

    record = register_model(target, "models/clip-b32", parent="")   # verified, uploaded, recorded
    rows = model_rows(target)     # [{"model", "state", "registered", "serving", ...}, ...]
    arn = start_model_rollout(target, "clip-b32@2")   # the rollout state machine's execution
"""

from __future__ import annotations

import getpass
import json
import secrets
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch.catalog.current import read_current
from imgsearch.catalog.registry import ModelRecord, list_records
from imgsearch.model.bundle import open_bundle
from imgsearch.rollout.registration import register_bundle
from imgsearch_devkit.target import Target, TargetError


def caller(target: Target) -> str:
    """Who registers: the AWS identity (its ARN), else the local user and host."""
    try:
        return str(target.client("sts").get_caller_identity()["Arn"])
    except (BotoCoreError, ClientError):
        return f"{getpass.getuser()}@{socket.gethostname()}"


def register_model(target: Target, source: str, parent: str = "") -> tuple[ModelRecord, bool]:
    """Verify the bundle at ``source`` (a folder or ``s3://`` prefix), upload it to
    ``models/<id>/`` of the stack's bucket and write its record. Returns (record, new): the
    same bundle registered again is the existing record, untouched."""
    settings = target.settings()
    s3 = target.client("s3")
    bundle = open_bundle(source, cache_dir=settings.model.cache_dir, s3_client=s3)
    return register_bundle(
        s3,
        target.bucket,
        bundle,
        source=source if source.startswith("s3://") else str(Path(source).resolve()),
        by=caller(target),
        parent=parent,
    )


def model_rows(target: Target) -> list[dict[str, Any]]:
    """Every registered model, and the serving one even if it never was registered."""
    s3 = target.client("s3")
    settings = target.settings()
    current = read_current(s3, target.bucket, settings.index.prefix)
    serving = current.model if current else ""
    rows = []
    for record in list_records(s3, target.bucket):
        latest = record.evaluations[-1].figures if record.evaluations else {}
        rows.append(
            {
                "model": record.model_id,
                "state": record.state,
                "registered": record.registered_at,
                "serving": record.model_id == serving,
                "dim": record.embedding_dim,
                "parent": record.parent,
                "headline": latest,
            }
        )
    if serving and serving not in {row["model"] for row in rows}:
        headline = dict(current.headline) if current else {}
        rows.append(
            {
                "model": serving,
                "state": "unregistered",
                "registered": "",
                "serving": True,
                "dim": current.dim if current else 0,
                "parent": "",
                "headline": headline,
            }
        )
    return rows


def start_model_rollout(
    target: Target, model_id: str, concurrency: int = 0, now: datetime | None = None
) -> str:
    """Start the rollout state machine for a registered model; its execution ARN."""
    if not target.rollout_arn:
        raise TargetError(
            "the target names no rollout state machine (ModelRolloutStateMachineArn output): "
            "deploy this version of the template"
        )
    now = now or datetime.now(UTC)
    name = f"rollout-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    payload = {"model": model_id, "by": caller(target), "max_concurrency": concurrency}
    sfn = target.client("stepfunctions")
    return str(
        sfn.start_execution(
            stateMachineArn=target.rollout_arn, name=name, input=json.dumps(payload)
        )["executionArn"]
    )
