"""When the index pipeline runs next on its own.

A deployed stack rebuilds on its EventBridge Scheduler schedule (``template.yaml``:
``IndexPipeline.Events.Rebuild``, which SAM turns into the ``IndexPipelineRebuild`` resource);
the local stack's state file carries its ``schedule_seconds``::

    upcoming = next_build(target)      # NextBuild(schedule="rate(60 minutes)", next_at="...")
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch.core.clock import ISO_FORMAT
from imgsearch_devkit.target import Target

logger = logging.getLogger(__name__)

SCHEDULE_RESOURCE = "IndexPipelineRebuild"
"""The schedule's logical id: SAM names an event source ``<resource><event>``."""
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class NextBuild:
    schedule: str
    """``rate(60 minutes)``, ``cron(...)`` (a deployed stack) or ``every 60 s`` (the local one)."""
    enabled: bool
    next_at: str | None
    """When the next run starts (UTC, ISO 8601); ``None`` when only the interval is known."""
    every_seconds: float | None = None
    error: str = ""
    """Why the schedule could not be read (then nothing else is known)."""


def rate_seconds(expression: str) -> float | None:
    """``rate(N unit)`` in seconds; ``None`` for a ``cron(...)`` or ``at(...)`` expression."""
    match = _RATE.match(expression.strip())
    if not match:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


def next_rate_run(anchor: datetime, every: float, now: datetime) -> datetime:
    """The first tick of a rate schedule that started at ``anchor`` that is after ``now``."""
    if now <= anchor:
        return anchor
    ticks = math.floor((now - anchor).total_seconds() / every) + 1
    return anchor + timedelta(seconds=ticks * every)


def deployed_schedule(cloudformation: Any, scheduler: Any, stack: str, now: datetime) -> NextBuild:
    """The stack's rebuild schedule, read from EventBridge Scheduler (rate schedules start
    counting at their start date, else when they were created)."""
    resource = cloudformation.describe_stack_resource(
        StackName=stack, LogicalResourceId=SCHEDULE_RESOURCE
    )["StackResourceDetail"]
    schedule = scheduler.get_schedule(Name=resource["PhysicalResourceId"])
    expression = schedule["ScheduleExpression"]
    enabled = schedule.get("State", "ENABLED") == "ENABLED"
    every = rate_seconds(expression)
    anchor = schedule.get("StartDate") or schedule.get("CreationDate")
    upcoming = None
    if enabled and every and anchor:
        upcoming = next_rate_run(anchor.astimezone(UTC), every, now).strftime(ISO_FORMAT)
    return NextBuild(expression, enabled, upcoming, every)


def next_build(target: Target, now: datetime | None = None) -> NextBuild | None:
    """The target's schedule, ``None`` when it has none; one that cannot be read (no
    permission, an older stack) says why in ``error``."""
    if target.is_local:
        if target.schedule_seconds <= 0:
            return None
        every = target.schedule_seconds
        return NextBuild(f"every {every:g} s", True, None, every)
    try:
        return deployed_schedule(
            target.client("cloudformation"),
            target.client("scheduler"),
            target.stack,
            now or datetime.now(UTC),
        )
    except (BotoCoreError, ClientError) as exc:
        logger.debug("cannot read the rebuild schedule of %s", target.stack, exc_info=True)
        return NextBuild("unknown", False, None, error=str(exc))
