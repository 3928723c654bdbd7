"""Rollback: put an earlier validated version back as the serving one.

Without ``to``, the newest published validated version built before the serving one
(``rollback_target``); with ``to``, that version, published or not (it must have passed
validation and still have its files). The write is conditional on the ``current.json`` just
read, and records the target's ``published.json``, like a publish::

    current = rollback(settings, s3)                        # one step back
    current = rollback(settings, s3, to="20250101T000000.123456Z-a1b2c3")
"""

from __future__ import annotations

import logging
from typing import Any

from imgsearch.catalog.current import CurrentIndex, read_current
from imgsearch.catalog.errors import PipelineError
from imgsearch.catalog.versions import VersionInfo, has_artifacts, list_versions, rollback_target
from imgsearch.core.config import Settings
from imgsearch.pipeline.contracts import RollbackInput
from imgsearch.pipeline.publish import current_from_report, serve

logger = logging.getLogger(__name__)


class RollbackError(PipelineError):
    """No version to roll back to, or the one asked for cannot serve."""


def parse_rollback_input(event: Any) -> str | None:
    """The rollback function's input (``RollbackInput``): ``{}`` or ``{"to": VERSION}`` (or the
    bare version); returns the version. Raises ``ContractError`` (a ``ValueError``)."""
    payload = (event or {}) if isinstance(event, dict | None) else {"to": event}
    return RollbackInput.parse(payload).to


def choose_target(
    settings: Settings, s3: Any, current: CurrentIndex, to: str | None
) -> VersionInfo:
    versions = list_versions(s3, settings.bucket, settings.index.prefix)
    if to:
        match = next((v for v in versions if v.version == to), None)
        if match is None:
            raise RollbackError(
                f"no version {to} under s3://{settings.bucket}/{settings.index.prefix}"
            )
        if to == current.version:
            raise RollbackError(f"version {to} is already serving")
        if match.status != "validated":
            raise RollbackError(
                f"version {to} is {match.status}: only validated versions can serve"
            )
        return match
    target = rollback_target(versions, current.version)
    if target is None:
        raise RollbackError(
            f"no published validated version older than the serving {current.version}"
        )
    return target


def rollback(settings: Settings, s3: Any, to: str | None = None) -> CurrentIndex:
    current = read_current(s3, settings.bucket, settings.index.prefix)
    if current is None:
        raise RollbackError("nothing is serving yet: there is no indexes/current.json")
    target = choose_target(settings, s3, current, to)
    if not has_artifacts(s3, settings.bucket, settings.index.prefix, target.version):
        raise RollbackError(f"version {target.version} has lost its index or keys file")
    assert target.report is not None  # validated versions have one
    replacement = current_from_report(target.report, previous=current.version)
    serve(settings, s3, replacement, expected_etag=current.etag)
    logger.info("rollback: %s now serves (was %s)", target.version, current.version)
    return replacement
