"""``imgsearch monitor run|report``: measure search quality and embedding drift now; show the
latest report as an HTML page with its plots."""

from __future__ import annotations

import argparse
import webbrowser
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch_devkit.cli.common import command_group, fail, print_json, stack_command, table
from imgsearch_devkit.cli.target import resolve_target
from imgsearch_devkit.ops.monitor_page import render_page
from imgsearch_devkit.ops.usage import UsageError, invoke_monitor, parse_time, read_report
from imgsearch_devkit.target import TargetError

DEFAULT_PAGE = Path(".imgsearch") / "monitor.html"


def register(subparsers: argparse._SubParsersAction) -> None:
    commands = command_group(
        subparsers, "monitor", help="search quality and embedding drift: run, report"
    )
    run = stack_command(
        commands,
        "run",
        func=run_monitor,
        help="run the monitor function now (as its schedule does)",
        description=(
            "Invoke the monitor function: it reads the last window of the usage log, measures "
            "quality per model and index version against the baseline, tests the new images and "
            "the queries for drift, writes monitor/<run>/report.json and report.svg and emits "
            "the metrics the alarms watch."
        ),
    )
    run.add_argument(
        "--now",
        metavar="TIME",
        help="end of the window (ISO 8601; default: now, where a scheduled run's window ends "
        "IMGSEARCH_MONITOR_FEEDBACK_LAG_SECONDS before it runs)",
    )
    run.add_argument(
        "--window-minutes",
        type=int,
        help="the window, in minutes (default: the stack's MonitorWindowMinutes)",
    )
    report = stack_command(
        commands,
        "report",
        func=run_report,
        help="the latest report as an HTML page with its plots",
        description="Render a monitor report (the latest unless --run) as a standalone HTML page.",
    )
    report.add_argument("--run", help="a run id (monitor/<run>/report.json)")
    report.add_argument(
        "--out", type=Path, default=DEFAULT_PAGE, help=f"the page (default {DEFAULT_PAGE})"
    )
    report.add_argument("--open", action="store_true", help="open the page in a browser")


def run_monitor(args: argparse.Namespace) -> int:
    if args.window_minutes is not None and args.window_minutes <= 0:
        return fail("--window-minutes must be positive", status=2)
    try:
        # A run by hand measures up to now; the schedule's end a little earlier (its clicks).
        now = parse_time(args.now) if args.now else datetime.now(UTC)
    except ValueError as exc:
        return fail(str(exc), status=2)
    try:
        answer = invoke_monitor(resolve_target(args), now, args.window_minutes)
    except (TargetError, UsageError) as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot invoke the monitor: {exc}")
    if args.json:
        print_json(answer)
        return 0
    degraded = answer["degraded"]
    print(
        table(
            [
                ("report", answer["report"]),
                ("searches", answer["searches"]),
                (
                    "quality",
                    ", ".join(degraded["metrics"]) + " degraded" if degraded["flag"] else "ok",
                ),
                ("image drift", _verdict(answer["image_drift"])),
                ("query drift", _verdict(answer["query_drift"])),
            ]
        )
    )
    return 0


def _verdict(flag: bool | None) -> str:
    return "not measured (too few)" if flag is None else "DRIFT" if flag else "none"


def run_report(args: argparse.Namespace) -> int:
    try:
        report, svg = read_report(resolve_target(args), args.run)
    except (TargetError, UsageError) as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot read the report: {exc}")
    if args.json:
        print_json(report)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_page(report, svg), encoding="utf-8")
    window = report["window"]
    print(f"report {report['run']} ({window['start']} to {window['end']}): {args.out}")
    if args.open:
        webbrowser.open(args.out.resolve().as_uri())
    return 0
