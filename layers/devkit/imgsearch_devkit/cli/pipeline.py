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
from imgsearch_devkit.cli.common import (
    command_group,
    fail,
    print_json,
    stack_command,
    wait_until_served,
)
from imgsearch_devkit.cli.target import resolve_target
from imgsearch_devkit.target import Target, TargetError

POLL_SECONDS = 1.0


def register(subparsers: argparse._SubParsersAction) -> None:
    commands = command_group(subparsers, "pipeline", help="run the index pipeline, see past runs")
    run = stack_command(
        commands,
        "run",
        func=run_pipeline,
        json_help="print one JSON object (with --wait: the states, outcome, version served)",
        help="start a rebuild (Snapshot, Build, Validate, Gate, Publish)",
        description="Start an execution of the index pipeline. With --wait, print each state "
        "as it finishes and the final report; the exit status is 1 when the run fails.",
    )
    run.add_argument("--force", action="store_true", help="rebuild even if no embedding changed")
    run.add_argument("--wait", action="store_true", help="follow the run until it ends")
    history = stack_command(
        commands, "history", func=run_history, help="recent runs: status, duration, failing step"
    )
    history.add_argument("--max", type=int, default=10, help="how many runs (default 10)")


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
        # The status first, then the history: a run that ended before the history was read has
        # all its events in it, so the last states are never missed.
        described = sfn.describe_execution(executionArn=execution)
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
        if described["status"] != "RUNNING":
            yield {"end": described}
            return
        time.sleep(POLL_SECONDS)


def follow_states(
    sfn: Any, execution: str, quiet: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Print each state as it finishes (unless ``quiet``); the end (``describe_execution``) and
    the states."""
    states: list[dict[str, Any]] = []
    for event in state_events(sfn, execution):
        if "end" in event:
            return event["end"], states
        states.append(event)
        if not quiet:
            mark = "!" if event["retried_or_caught"] else "ok"
            print(f"  {mark:<2} {event['state']:<16} {event['seconds']:7.1f} s", flush=True)
    raise AssertionError("state_events always ends with the run's end")


def _summary(target: Target, output: dict[str, Any]) -> str:
    """What a succeeded run did: its output is a ``SkippedRun`` or the final ``RunState``."""
    if output.get("status") == "skipped":
        return (
            f"skipped: {SkippedRun.parse(output).reason}\n"
            "  `imgsearch pipeline run --force` rebuilds anyway"
        )
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


def _follow(target: Target) -> str:
    """Where to watch a run: the console only exists for a deployed stack."""
    console = "" if target.aws_endpoint else ", or in the Step Functions console"
    return f"follow it with `imgsearch pipeline history`{console} (--wait follows it here)"


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
    result: dict[str, Any] = {"execution": execution, "status": "RUNNING"}
    if not args.wait:
        if args.json:
            print_json(result)
        else:
            print(f"started {execution}")
            print(_follow(target))
        return 0
    if not args.json:
        print(f"started {execution}")
    try:
        end, states = follow_states(sfn, execution, quiet=args.json)
        output = json.loads(end.get("output") or "{}")
        result.update(status=end["status"], states=states, output=output)
        if end["status"] == "SUCCEEDED":
            skipped = output.get("status") == "skipped"
            published = None if skipped else RunState.parse(output).publish
            if not args.json:
                print(_summary(target, output))
            if published is not None:
                result["served_after_seconds"] = wait_until_served(
                    target, published.version, quiet=args.json
                )
            if skipped:
                result["status"] = "SKIPPED"
            if args.json:
                print_json(result)
            return 0
    except (BotoCoreError, ClientError) as exc:
        return fail(f"lost track of {execution}: {exc}")
    result.update(error=end.get("error", ""), cause=end.get("cause", ""))
    if args.json:
        print_json(result)
        return 1
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
            if execution["status"] in ("FAILED", "SUCCEEDED"):
                described = sfn.describe_execution(executionArn=execution["executionArn"])
                if execution["status"] == "FAILED":
                    row["error"] = described.get("error", "")
                    row["failed_step"] = _failed_step(target, execution["name"])
                elif json.loads(described.get("output") or "{}").get("status") == "skipped":
                    row["status"] = "SKIPPED"  # nothing changed: not a publish
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
