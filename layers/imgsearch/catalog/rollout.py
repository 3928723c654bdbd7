"""``models/rollout.json``: the model rollout under way, if any.

While it exists, the embed function writes every upload and delete with the candidate as well as
with the serving model, so nothing that arrives during the rollout is missing from either side.
It is created with ``If-None-Match: *`` (a second rollout is refused while one runs) and removed
when the rollout ends, promoted or rejected::

    pointer = start_rollout(s3, bucket, Rollout(candidate="clip@2", champion="clip@1", ...))
    read_rollout(s3, bucket)          # None when no rollout runs
    end_rollout(s3, bucket, pointer)  # only the rollout that started it removes it
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from imgsearch.catalog.contract import Contract, put_if, read_with_etag
from imgsearch.catalog.errors import WriteConflict
from imgsearch.catalog.registry import MODELS_PREFIX, RegistryError

ROLLOUT_KEY = f"{MODELS_PREFIX}rollout.json"


class RolloutRunning(RegistryError):
    """Another rollout is under way: two at once are refused."""


class Rollout(Contract):
    LABEL = "models/rollout.json"

    candidate: str
    champion: str
    """The model serving when the rollout started ("" before the first index)."""
    execution: str = ""
    started_at: str = ""
    etag: str = Field(default="", exclude=True, repr=False)


def read_rollout(s3: Any, bucket: str) -> Rollout | None:
    return read_with_etag(s3, bucket, ROLLOUT_KEY, Rollout)


def start_rollout(s3: Any, bucket: str, rollout: Rollout) -> Rollout:
    try:
        etag = put_if(s3, bucket, ROLLOUT_KEY, rollout, expected_etag=None)
    except WriteConflict:
        running = read_rollout(s3, bucket)
        what = f"{running.candidate} ({running.execution})" if running else "another model"
        raise RolloutRunning(
            f"a rollout of {what} is under way: wait for it to end, or stop its execution"
        ) from None
    return rollout.model_copy(update={"etag": etag})


def end_rollout(s3: Any, bucket: str, rollout: Rollout) -> bool:
    """Remove the pointer if it is still this rollout's; False when it was gone already."""
    current = read_rollout(s3, bucket)
    if current is None or current.execution != rollout.execution:
        return False
    s3.delete_object(Bucket=bucket, Key=ROLLOUT_KEY)
    return True
