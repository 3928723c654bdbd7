"""``imgsearch golden suggest|add|list``: grow the golden set from use, and look at it."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch.catalog.errors import WriteConflict
from imgsearch.eval.golden import GoldenSetError, load_golden
from imgsearch_devkit.cli.common import command_group, fail, print_json, stack_command, table
from imgsearch_devkit.cli.target import resolve_target
from imgsearch_devkit.ops.golden import (
    add_judgments,
    read_additions,
    suggestions,
)
from imgsearch_devkit.target import TargetError

DEFAULT_DAYS = 7


def register(subparsers: argparse._SubParsersAction) -> None:
    commands = command_group(
        subparsers, "golden", help="the golden set: propose judgments from clicks, add, list"
    )
    propose = stack_command(
        commands,
        "suggest",
        func=run_suggest,
        help="judgments the usage log supports, for queries the set does not hold",
        description="Read the usage log of a window, join its feedback to its searches, and "
        "propose as relevant to a text query the results that got a click or 'relevant' in "
        "enough of its searches (and were not judged irrelevant more often). Nothing is "
        "written: review the output, then `imgsearch golden add --from FILE` (the file may be "
        "what --json printed).",
    )
    window = propose.add_mutually_exclusive_group()
    window.add_argument("--since", metavar="ISO", help="start of the window (ISO 8601, UTC)")
    window.add_argument(
        "--days", type=int, metavar="N", help=f"the last N days (default {DEFAULT_DAYS})"
    )
    propose.add_argument(
        "--min-clicks", type=int, default=3, metavar="N", help="searches with a positive (3)"
    )
    propose.add_argument(
        "--min-searches", type=int, default=3, metavar="N", help="searches of the query (3)"
    )
    propose.add_argument(
        "--min-agreement",
        type=float,
        default=0.5,
        metavar="SHARE",
        help="of the searches with a positive, the share a key needs (0.5)",
    )

    add = stack_command(
        commands,
        "add",
        func=run_add,
        help="add judgments to the set (a conditional write: concurrent adds both land)",
        description="Add queries and their relevant keys to the golden set: a query already "
        "there (same text, ignoring case and spaces) gets the keys added to its own. The set is "
        "written in a canonical form (sorted), only if something changed; S3's versioning "
        "keeps the previous one. Prints the new sha256 and the previous one.",
    )
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="FILE",
        help="JSON lines {query, relevant}, or what `golden suggest --json` printed; - : stdin",
    )
    source.add_argument("--query", metavar="TEXT", help="one query (with --key)")
    add.add_argument(
        "--key", action="append", default=[], metavar="KEY", help="a relevant S3 key (repeat)"
    )
    add.add_argument("--dry-run", action="store_true", help="say what would change; write nothing")

    stack_command(
        commands,
        "list",
        func=run_list,
        help="the set's sha256 and its queries with their key counts",
        description="The golden set Validate scores every index on: its sha256 (as the "
        "reports record it), and each query with the number of keys judged relevant to it.",
    )


def _window(args: argparse.Namespace) -> tuple[datetime, datetime]:
    end = datetime.now(UTC)
    if args.since:
        start = datetime.fromisoformat(args.since)
        return (start if start.tzinfo else start.replace(tzinfo=UTC)), end
    days = DEFAULT_DAYS if args.days is None else args.days
    if days < 1:
        raise ValueError(f"--days must be >= 1, got {days}")
    return end - timedelta(days=days), end


def run_suggest(args: argparse.Namespace) -> int:
    try:
        start, end = _window(args)
        target = resolve_target(args)
        found, stats, golden = suggestions(
            target,
            start,
            end,
            min_searches=args.min_searches,
            min_clicks=args.min_clicks,
            min_agreement=args.min_agreement,
        )
    except ValueError as exc:  # a bad --since, or a threshold out of range
        return fail(str(exc), status=2)
    except TargetError as exc:
        return fail(str(exc))
    except GoldenSetError as exc:
        return fail(f"the golden set is not valid: {exc}")
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot read the usage log: {exc}")
    if args.json:
        print_json(
            {
                "window": {"start": start.isoformat(), "end": end.isoformat()},
                "searches": stats.searches,
                "feedback": stats.feedback,
                "joined": stats.joined,
                "golden_sha256": golden.sha256 if golden else None,
                "suggestions": [s.as_dict() for s in found],
            }
        )
        return 0
    print(
        f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC: {stats.searches} searches, "
        f"{stats.joined} of {stats.feedback} feedback events joined",
        file=sys.stderr,
    )
    if not found:
        print("nothing to suggest: no query had enough consistent clicks")
        return 0
    rows = [
        (s.query, s.searches, s.clicks, f"{s.agreement:.2f}", ", ".join(s.relevant)) for s in found
    ]
    print(table(rows, headers=("query", "searches", "clicks", "agreement", "relevant")))
    print("\nto add them: imgsearch golden suggest --json > FILE (edit it), golden add --from FILE")
    return 0


def _additions(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    if args.query is not None:
        if not args.key:
            raise ValueError("--query needs at least one --key")
        return [(args.query, list(args.key))]
    if args.key:
        raise ValueError("--key goes with --query, not with --from")
    if str(args.source) == "-":
        return read_additions(sys.stdin.buffer.read(), "stdin")
    return read_additions(args.source.read_bytes(), str(args.source))


def run_add(args: argparse.Namespace) -> int:
    try:
        additions = _additions(args)
    except (OSError, GoldenSetError, ValueError) as exc:
        return fail(str(exc), status=2)
    try:
        target = resolve_target(args)
        s3, key = target.client("s3"), target.settings().gate.golden_key
        change = add_judgments(s3, target.bucket, key, additions, dry_run=args.dry_run)
    except ValueError as exc:  # merge's: an empty query or key
        return fail(str(exc), status=2)
    except (TargetError, WriteConflict, GoldenSetError) as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot write the golden set: {exc}")
    if args.json:
        print_json(change.as_dict())
    elif change.added_keys == 0:
        print(f"nothing to add: {change.key} holds every key already (sha256 {change.sha256})")
    else:
        print(("would write " if args.dry_run else "wrote ") + change.key)
        rows = [
            ("queries", f"{change.queries} ({change.new_queries} new)"),
            ("keys added", change.added_keys),
            ("sha256", change.sha256),
            ("previous", change.previous_sha256),
        ]
        print(table(rows))
    return 0


def run_list(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args)
        key = target.settings().gate.golden_key
        golden = load_golden(target.client("s3"), target.bucket, key)
    except TargetError as exc:
        return fail(str(exc))
    except GoldenSetError as exc:
        return fail(f"the golden set is not valid: {exc}")
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot read the golden set: {exc}")
    items = (
        sorted(zip(golden.queries, golden.relevant, strict=True), key=lambda item: item[0])
        if golden
        else []
    )
    if args.json:
        print_json(
            {
                "key": key,
                "sha256": golden.sha256 if golden else None,
                "queries": [{"query": q, "relevant": sorted(keys)} for q, keys in items],
            }
        )
        return 0
    if golden is None:
        print(f"no golden set at s3://{target.bucket}/{key} (imgsearch golden add)")
        return 0
    print(f"s3://{target.bucket}/{key}: {len(items)} queries, sha256 {golden.sha256}")
    print(table([(q, len(keys)) for q, keys in items], headers=("query", "keys")))
    return 0
