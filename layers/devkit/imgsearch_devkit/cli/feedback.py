"""``imgsearch feedback export``: the searches of a time window with the clicks and judgments on
their results, as JSON lines (what evaluation, the golden set and retraining read);
``imgsearch feedback simulate``: users of the demo images who search and click."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from imgsearch_client.errors import ClientError as ApiClientError

from imgsearch_devkit.cli.common import command_group, fail, print_json, progress, stack_command
from imgsearch_devkit.cli.target import resolve_target
from imgsearch_devkit.demo.users import background_queries
from imgsearch_devkit.ops.simulate import demo_scenes, simulate
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
    simulate = stack_command(
        commands,
        "simulate",
        func=run_simulate,
        help="users of the demo images search a background colour each and click what matches",
        description=(
            "For each of the 160 queries of a demo kind on a background colour ('red circle on "
            "a black background'), search through the API and click every result whose scene "
            "shows it, as users would (the demo images' scenes are known from their keys). "
            "--shuffled clicks as many results at random instead: feedback without signal. The "
            "retraining walkthrough (docs/retraining.md) starts here."
        ),
    )
    simulate.add_argument(
        "--shuffled", action="store_true", help="click random results, as many as would match"
    )
    simulate.add_argument("--seed", type=int, default=0, help="the shuffled clicks' seed")


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


def run_simulate(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args)
        scenes = demo_scenes(target)
        with progress("search and click", total=len(background_queries()), unit="query") as bar:
            summary = simulate(
                target.api(),
                scenes,
                shuffled=args.shuffled,
                seed=args.seed,
                on_search=lambda _query, _clicks: bar.update(),
            )
    except (TargetError, ApiClientError) as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot list the demo images: {exc}")
    result = {"searches": summary.searches, "clicks": summary.clicks, "images": len(scenes)}
    if args.json:
        print_json(result)
    else:
        kind = "random clicks" if args.shuffled else "clicks on matching results"
        print(f"{summary.searches} searches, {summary.clicks} {kind} over {len(scenes)} images")
    return 0
