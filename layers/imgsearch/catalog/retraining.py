"""``retrain/run.json`` and ``retrain/latest.json``: the retraining run under way, and the last.

The lock is created with ``If-None-Match: *``, so a second run is refused while one is under
way; a lock whose execution is no longer running (stopped, timed out) is taken over with
``If-Match`` on its ETag. ``latest.json`` records when the last run read its data: the next
run, and the monitor's new-data trigger, count what came in since::

    lock = take_lock(s3, bucket, "retrain/", RetrainLock(execution=arn, trigger="schedule",
                     started_at=now_iso()), is_running=lambda arn: execution_running(sfn, arn))
    release_lock(s3, bucket, "retrain/", lock)     # only the run that took it removes it
    write_latest(s3, bucket, "retrain/", LatestRetrain(execution=arn, ...))
    read_latest_retrain(s3, bucket, "retrain/")    # None before the first run
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from imgsearch.catalog.contract import Contract, put_if, read_object, read_with_etag, write_object
from imgsearch.catalog.errors import WriteConflict
from imgsearch.core.errors import ImgsearchError

LOCK_FILE = "run.json"
LATEST_FILE = "latest.json"


class RetrainRunning(ImgsearchError):
    """Another retraining run is under way: two at once are refused."""


class RetrainLock(Contract):
    LABEL = "retrain/run.json"

    execution: str
    trigger: str
    started_at: str
    etag: str = Field(default="", exclude=True, repr=False)


class LatestRetrain(Contract):
    """The last run that read its data (skips included: they read it too)."""

    LABEL = "retrain/latest.json"

    execution: str
    trigger: str
    started_at: str
    """When it read the usage log: judgments and images after this are new to the next run."""
    status: str
    """``skipped``, ``validated``, ``rejected`` or ``failed``."""
    candidate: str = ""
    finished_at: str = ""


def execution_running(sfn: Any, execution: str) -> bool:
    """Whether the Step Functions execution holding a lock is still under way (one that does
    not exist, or no longer, holds nothing)."""
    try:
        return sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    except sfn.exceptions.ExecutionDoesNotExist:
        return False


def read_lock(s3: Any, bucket: str, prefix: str) -> RetrainLock | None:
    return read_with_etag(s3, bucket, prefix + LOCK_FILE, RetrainLock)


def take_lock(
    s3: Any, bucket: str, prefix: str, lock: RetrainLock, is_running: Callable[[str], bool]
) -> RetrainLock:
    """Take the lock for ``lock.execution``; ``RetrainRunning`` if a running execution holds
    it. Taking it again from the same execution (a retried step) is a no-op."""
    key = prefix + LOCK_FILE
    try:
        etag = put_if(s3, bucket, key, lock, expected_etag=None)
        return lock.model_copy(update={"etag": etag})
    except WriteConflict:
        held = read_lock(s3, bucket, prefix)
    if held is not None and held.execution == lock.execution:
        return held
    if held is not None and is_running(held.execution):
        raise RetrainRunning(
            f"a retraining run is under way ({held.execution}, started {held.started_at} by "
            f"{held.trigger}): wait for it to end, or stop it"
        )
    try:  # the holder ended without releasing it (stopped, timed out): take it over
        etag = put_if(s3, bucket, key, lock, expected_etag=held.etag if held else None)
    except WriteConflict:
        raise RetrainRunning("another retraining run took the lock at the same moment") from None
    return lock.model_copy(update={"etag": etag})


def release_lock(s3: Any, bucket: str, prefix: str, execution: str) -> bool:
    """Remove the lock if ``execution`` holds it; False when it did not."""
    held = read_lock(s3, bucket, prefix)
    if held is None or held.execution != execution:
        return False
    s3.delete_object(Bucket=bucket, Key=prefix + LOCK_FILE)
    return True


def read_latest_retrain(s3: Any, bucket: str, prefix: str) -> LatestRetrain | None:
    return read_object(s3, bucket, prefix + LATEST_FILE, LatestRetrain)


def write_latest(s3: Any, bucket: str, prefix: str, latest: LatestRetrain) -> None:
    write_object(s3, bucket, prefix + LATEST_FILE, latest)
