"""The retraining's new-data trigger: feedback and new images counted since the last run.

Each monitor run adds its window's counts to the tally its previous report carried; a
retraining run that read its data since (``retrain/latest.json``) starts the tally again.
When either count reaches its threshold and no run is under way, the monitor starts one
(``{"trigger": "new-data"}``) and the tally starts again::

    tally = new_data_tally(previous_report, report["counts"], read_latest_retrain(...))
    report["retrain"] = tally
    started = start_if_due(settings, s3, sfn, tally)     # the execution ARN, or ""
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from imgsearch.catalog.retraining import LatestRetrain, execution_running, read_lock
from imgsearch.core.clock import now_iso
from imgsearch.core.config import Settings


def new_data_tally(
    previous: Mapping[str, Any] | None,
    counts: Mapping[str, Any],
    latest: LatestRetrain | None,
) -> dict[str, Any]:
    """``{"since", "judgments", "images"}``: what came in since the last retraining run."""
    since = latest.started_at if latest else ""
    carried = (previous or {}).get("retrain") or {}
    judgments, images = int(counts.get("feedback", 0)), int(counts.get("ingested", 0))
    if carried.get("since", "") == since:
        judgments += int(carried.get("judgments", 0))
        images += int(carried.get("images", 0))
    return {"since": since, "judgments": judgments, "images": images, "started": ""}


def start_if_due(settings: Settings, s3: Any, sfn: Any, tally: dict[str, Any]) -> str:
    """Start a retraining run if the tally reached a threshold and none is under way; the
    execution's ARN (and the tally starts again), else ""."""
    options = settings.retrain
    due = (
        tally["judgments"] >= options.min_new_judgments or tally["images"] >= options.min_new_images
    )
    if not options.state_machine_arn or not due:
        return ""
    held = read_lock(s3, settings.bucket, options.prefix)
    if held is not None and execution_running(sfn, held.execution):
        return ""
    payload = {
        "trigger": "new-data",
        "detail": {k: tally[k] for k in ("since", "judgments", "images")},
        "by": "monitor",
    }
    arn = str(
        sfn.start_execution(stateMachineArn=options.state_machine_arn, input=json.dumps(payload))[
            "executionArn"
        ]
    )
    tally.update(judgments=0, images=0, started=arn, started_at=now_iso())
    return arn
