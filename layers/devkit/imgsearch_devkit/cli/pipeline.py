"""``imgsearch pipeline run|history``: start the index pipeline and follow its executions."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch.catalog.report import read_report
from imgsearch.pipeline.contracts import FailureReport, RunState, SkippedRun
from imgsearch.pipeline.failure import failure_key
from imgsearch_devkit.cli.common import fail, print_json
from imgsearch_devkit.cli.target import add_target_arguments, resolve_target
from imgsearch_devkit.target import Target, TargetError

POLL_SECONDS = 1.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pipeline", help="run the index pipeline, see past runs")
    commands = parser.add_subparsers(dest="pipeline_command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="start a rebuild (Snapshot, Build, Validate, Gate, Publish)",
        description="Start an execution of the index pipeline. With --wait, print each state "
        "as it finishes and the final report; the exit status is 1 when the run fails.",
    )
    run.add_argument("--force", action="store_true", help="rebuild even if no embedding changed")
    run.add_argument("--wait", action="store_true", help="follow the run until it ends")
    add_target_arguments(run)
    run.set_defaults(func=run_pipeline)
    history = commands.add_parser("history", help="recent runs: status, duration, failing step")
    history.add_argument("--max", type=int, default=10, help="how many runs (default 10)")
    history.add_argument("--json", action="store_true", help="print one JSON object")
    add_target_arguments(history)
    history.set_defaults(func=run_history)


def _state_machine(target: Target) -> str:
    if not target.state_machine_arn:
        raise TargetError("the target names no state machine (StateMachineArn output)")
    return target.state_machine_arn


def execution_name(now: datetime | None = None) -> str:
    """Unique, sortable, and readable in the console: ``manual-20250101T120000Z-a1b2c3``."""
    now = now or datetime.now(UTC)
    return f"manual-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def state_events(sfn: Any, execution: str) -> Iterator[dict[str, Any]]:
    """Each state's exit (name, seconds, failed) as the run advances, then the run's end."""
    seen = 0
    current = ""
    entered: dict[str, datetime] = {}
    failed: set[str] = set()
    while True:
        events = []
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution):
            events.extend(page["events"])
        for event in events[seen:]:
            kind = event["type"]
            if "stateEnteredEventDetails" in event:
                entered[event["stateEnteredEventDetails"]["name"]] = event["timestamp"]
                current = event["stateEnteredEventDetails"]["name"]
            elif kind in ("TaskFailed", "LambdaFunctionFailed", "LambdaFunctionTimedOut"):
                failed.add(current)
            if "stateExitedEventDetails" in event:
                name = event["stateExitedEventDetails"]["name"]
                start = entered.get(name, event["timestamp"])
                yield {
                    "state": name,
                    "seconds": (event["timestamp"] - start).total_seconds(),
                    "retried_or_caught": name in failed,
                }
        seen = len(events)
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            yield {"end": described}
            return
        time.sleep(POLL_SECONDS)


def _summary(target: Target, output: dict[str, Any]) -> str:
    """What a succeeded run did: its output is a ``SkippedRun`` or the final ``RunState``."""
    if output.get("status") == "skipped":
        return f"skipped: {SkippedRun.parse(output).reason}"
    published = RunState.parse(output).publish
    version = published.version if published else ""
    settings = target.settings()
    report = read_report(target.client("s3"), settings.bucket, settings.index.prefix, version)
    lines = [f"published {version}"]
    if report:
        lines.append(f"  {report.summary}")
        lines.extend(f"  {name:<22} {value}" for name, value in report.headline.items())
        lines.append(f"  images {report.build.count}, build {report.build.build_seconds} s")
    return "\n".join(lines)


def run_pipeline(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args)
        sfn = target.client("stepfunctions")
        started = sfn.start_execution(
            stateMachineArn=_state_machine(target),
            name=execution_name(),
            input=json.dumps({"force": True} if args.force else {}),
        )
    except TargetError as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot start the pipeline: {exc}")
    execution = started["executionArn"]
    print(f"started {execution}")
    if not args.wait:
        print("follow it with: imgsearch pipeline history, or the Step Functions console")
        return 0
    try:
        for event in state_events(sfn, execution):
            if "end" in event:
                end = event["end"]
                break
            mark = "!" if event["retried_or_caught"] else "ok"
            print(f"  {mark:<2} {event['state']:<16} {event['seconds']:7.1f} s", flush=True)
        if end["status"] == "SUCCEEDED":
            print(_summary(target, json.loads(end.get("output") or "{}")))
            return 0
    except (BotoCoreError, ClientError) as exc:
        return fail(f"lost track of {execution}: {exc}")
    print(f"{end['status']}: {end.get('error', '')}", file=sys.stderr)
    if end.get("cause"):
        print(f"  {end['cause']}", file=sys.stderr)
    return 1


def _failed_step(target: Target, name: str) -> str:
    settings = target.settings()
    try:
        body = target.client("s3").get_object(
            Bucket=settings.bucket, Key=failure_key(settings, name)
        )
    except ClientError:
        return ""
    return FailureReport.parse_json(body["Body"].read()).step


def run_history(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args)
        sfn = target.client("stepfunctions")
        executions = sfn.list_executions(
            stateMachineArn=_state_machine(target), maxResults=max(1, args.max)
        )["executions"]
        rows = []
        for execution in executions:
            stop = execution.get("stopDate")
            row = {
                "name": execution["name"],
                "status": execution["status"],
                "started": execution["startDate"].isoformat(),
                "seconds": round((stop - execution["startDate"]).total_seconds(), 1)
                if stop
                else None,
                "failed_step": "",
                "error": "",
            }
            if execution["status"] == "FAILED":
                described = sfn.describe_execution(executionArn=execution["executionArn"])
                row["error"] = described.get("error", "")
                row["failed_step"] = _failed_step(target, execution["name"])
            rows.append(row)
    except TargetError as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot read the pipeline's executions: {exc}")
    if args.json:
        print_json({"executions": rows})
        return 0
    if not rows:
        print("no runs yet (imgsearch pipeline run)")
    for row in rows:
        seconds = "running" if row["seconds"] is None else f"{row['seconds']} s"
        failure = f"  {row['failed_step']}: {row['error']}" if row["status"] == "FAILED" else ""
        print(f"{row['started'][:19]}  {row['status']:<9} {seconds:>9}  {row['name']}{failure}")
    return 0
