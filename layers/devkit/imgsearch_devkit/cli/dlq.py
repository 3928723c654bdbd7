"""``imgsearch dlq redrive``: move dead-lettered ingest messages back to the ingest queue."""

from __future__ import annotations

import argparse

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch_devkit.cli.common import command_group, fail, print_json, progress, stack_command
from imgsearch_devkit.cli.target import resolve_target
from imgsearch_devkit.ops.dlq import RedriveError, redrive_target
from imgsearch_devkit.ops.stats import queue_depth
from imgsearch_devkit.target import TargetError


def register(subparsers: argparse._SubParsersAction) -> None:
    commands = command_group(
        subparsers,
        "dlq",
        help="redrive the ingest dead-letter queue (imgsearch stats shows its depth)",
    )
    move = stack_command(
        commands,
        "redrive",
        func=run_redrive,
        json_help="print the result as JSON",
        help="move DLQ messages back to the ingest queue",
        description=(
            "Move messages from the ingest dead-letter queue back to the ingest queue, so the "
            "embed function retries them. On AWS SQS moves them (StartMessageMoveTask); the "
            "local stack, and --limit, copy them one batch at a time, each deleted from the DLQ "
            "only once the ingest queue accepted its copy. Progress goes to stderr. Fix the "
            "cause first, or they come back after five tries."
        ),
    )
    move.add_argument("--limit", type=int, help="move at most this many (default: all)")


def run_redrive(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit <= 0:
        return fail("--limit must be positive")
    try:
        target = resolve_target(args)
        with progress("redrive", unit="msg") as bar:

            def show(moved: int, total: int | None) -> None:
                bar.total = total
                bar.update(moved - bar.n)

            moved = redrive_target(target, limit=args.limit, on_progress=show)
        left = sum(queue_depth(target.client("sqs"), target.dlq_url))
    except TargetError as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError, RedriveError) as exc:
        return fail(f"redrive failed: {exc}")
    if args.json:
        print_json({"moved": moved, "dlq_depth": left})
    else:
        print(f"moved {moved} message(s) to the ingest queue; {left} left in the DLQ")
    return 0
