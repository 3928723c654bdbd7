"""Start a backfill, follow its progress from the run's files, list past runs.

Progress is read where the run writes it, the same on AWS and locally: chunk manifests
(``chunks/``) as the listing goes, chunk results (``results/``) as children finish::

    arn = start_backfill(target, BackfillOptions(prefix="images/2024/"))
    watcher = Progress(target, run_name(arn))
    watcher.poll()            # Snapshot(chunks=12, done=5, objects=5000, embedded=4980, ...)
    backfill_history(target)  # [{"name", "status", "embedded", ...}, ...]
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from imgsearch.backfill.contracts import BackfillOptions, BackfillReport, ChunkResult
from imgsearch.backfill.layout import RunLayout
from imgsearch.catalog.contract import read_object
from imgsearch_devkit.target import Target, TargetError


def backfill_machine(target: Target) -> str:
    if not target.backfill_arn:
        raise TargetError(
            "the target names no backfill state machine (BackfillStateMachineArn output): "
            "deploy this version of the template"
        )
    return target.backfill_arn


def run_name(execution_arn: str) -> str:
    return execution_arn.rpartition(":")[2]


def start_backfill(target: Target, options: BackfillOptions, now: datetime | None = None) -> str:
    """Start a run named ``backfill-<time>-<hex>`` (its files' folder too); its ARN."""
    now = now or datetime.now(UTC)
    name = f"backfill-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    payload = options.model_dump(exclude_defaults=True, exclude={"schema_version"})
    sfn = target.client("stepfunctions")
    return str(
        sfn.start_execution(
            stateMachineArn=backfill_machine(target), name=name, input=json.dumps(payload)
        )["executionArn"]
    )


@dataclass
class Snapshot:
    chunks: int = 0
    """Chunk manifests written so far (the listing may still be adding some)."""
    done: int = 0
    objects: int = 0
    """Objects of the finished chunks."""
    embedded: int = 0
    failed: int = 0


@dataclass
class Progress:
    """Counts of one run, read from its files; each result file is read once."""

    target: Target
    run: str
    _seen: dict[str, ChunkResult] = field(default_factory=dict)

    def _keys(self, prefix: str) -> list[str]:
        s3 = self.target.client("s3")
        return [
            item["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.target.bucket, Prefix=prefix
            )
            for item in page.get("Contents", [])
        ]

    def poll(self) -> Snapshot:
        layout = RunLayout(self.target.settings().backfill.prefix, self.run)
        s3 = self.target.client("s3")
        for key in self._keys(layout.results):
            if key not in self._seen:
                result = read_object(s3, self.target.bucket, key, ChunkResult)
                if result is not None:
                    self._seen[key] = result
        results = self._seen.values()
        return Snapshot(
            chunks=len(self._keys(layout.root + "chunks/")),
            done=len(self._seen),
            objects=sum(r.objects for r in results),
            embedded=sum(r.embedded for r in results),
            failed=sum(r.failed for r in results),
        )


def read_run_report(target: Target, run: str) -> BackfillReport | None:
    layout = RunLayout(target.settings().backfill.prefix, run)
    return read_object(target.client("s3"), target.bucket, layout.report, BackfillReport)


def backfill_history(target: Target, limit: int = 10) -> list[dict[str, Any]]:
    """The latest runs, newest first, with their report's counts once they have one."""
    sfn = target.client("stepfunctions")
    executions = sfn.list_executions(
        stateMachineArn=backfill_machine(target), maxResults=max(1, limit)
    )["executions"]
    rows = []
    for execution in executions:
        stop = execution.get("stopDate")
        report = read_run_report(target, execution["name"]) if stop else None
        rows.append(
            {
                "name": execution["name"],
                "status": report.status if report else execution["status"].lower(),
                "started": execution["startDate"].isoformat(),
                "seconds": round((stop - execution["startDate"]).total_seconds(), 1)
                if stop
                else None,
                "prefix": report.prefix if report else "",
                "listed": report.queued if report else None,
                "embedded": report.embedded if report else None,
                "skipped": sum(report.skipped.values()) if report else None,
                "quarantined": sum(report.quarantined.values()) if report else None,
                "failed": report.failed if report else None,
                "error": report.error if report else "",
            }
        )
    return rows
