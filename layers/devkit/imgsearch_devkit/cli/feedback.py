"""``imgsearch feedback export``: the searches of a time window with the clicks and judgments on
their results, as JSON lines (what evaluation, the golden set and retraining read)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch_devkit.cli.common import command_group, fail, stack_command
from imgsearch_devkit.cli.target import resolve_target
from imgsearch_devkit.ops.usage import feedback_window, parse_time
from imgsearch_devkit.target import TargetError


def register(subparsers: argparse._SubParsersAction) -> None:
    commands = command_group(subparsers, "feedback", help="the search log joined with its clicks")
    export = stack_command(
        commands,
        "export",
        func=run_export,
        help="searches of a window and their feedback, as JSON lines",
        description=(
            "Read the usage log (usage/YYYY/MM/DD/HH/ in the stack's bucket) and write one JSON "
            "line per search of the window: query id, time, model, index version, kind, the text "
            "(or the image's sha256, or the similar key), the results shown with their scores, "
            "latency, and the feedback on them, each at the rank it was shown. Feedback on keys "
            "a search did not show is left out and counted."
        ),
        json_help="(the output is JSON lines already; kept for symmetry)",
    )
    window = export.add_mutually_exclusive_group()
    window.add_argument("--since", metavar="TIME", help="start (ISO 8601, UTC)")
    window.add_argument("--hours", type=float, default=24.0, help="the last N hours (default 24)")
    export.add_argument("--until", metavar="TIME", help="end (ISO 8601; default now)")
    export.add_argument("--out", type=Path, help="write to FILE (default: standard output)")
    export.add_argument(
        "--vectors", action="store_true", help="include each query's embedding (base64 float16)"
    )


def run_export(args: argparse.Namespace) -> int:
    try:
        until = parse_time(args.until) if args.until else datetime.now(UTC)
        since = parse_time(args.since) if args.since else until - timedelta(hours=args.hours)
    except ValueError as exc:
        return fail(str(exc), status=2)
    if since >= until:
        return fail("--since must be before --until", status=2)
    try:
        joined, stats = feedback_window(resolve_target(args), since, until)
    except TargetError as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot read the usage log: {exc}")
    out = args.out.open("w", encoding="utf-8") if args.out else sys.stdout
    try:
        for query in joined:
            out.write(query.to_json(vectors=args.vectors) + "\n")
    finally:
        if args.out:
            out.close()
    print(
        f"{len(joined)} searches, {stats.joined} feedback joined "
        f"({stats.orphaned} on searches outside the window, {stats.unshown} on keys not shown, "
        f"{stats.duplicates} repeated), {since:%Y-%m-%dT%H:%M}Z to {until:%Y-%m-%dT%H:%M}Z",
        file=sys.stderr,
    )
    return 0
