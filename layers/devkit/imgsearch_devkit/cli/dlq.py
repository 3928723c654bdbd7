"""``imgsearch dlq redrive``: move dead-lettered ingest messages back to the ingest queue."""

from __future__ import annotations

import argparse

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch_devkit.cli.common import fail, print_json
from imgsearch_devkit.cli.target import add_target_arguments, resolve_target
from imgsearch_devkit.ops.dlq import redrive
from imgsearch_devkit.ops.stats import queue_depth
from imgsearch_devkit.target import TargetError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dlq", help="inspect and redrive the ingest dead-letter queue")
    commands = parser.add_subparsers(dest="dlq_command", metavar="COMMAND", required=True)
    move = commands.add_parser(
        "redrive",
        help="move DLQ messages back to the ingest queue",
        description=(
            "Move messages from the ingest dead-letter queue back to the ingest queue (each is "
            "deleted from the DLQ only once the ingest queue accepted its copy), so the embed "
            "function retries them. Fix the cause first, or they come back after five tries."
        ),
    )
    move.add_argument("--limit", type=int, help="move at most this many (default: all)")
    move.add_argument("--json", action="store_true", help="print the result as JSON")
    add_target_arguments(move)
    move.set_defaults(func=run_redrive)


def run_redrive(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit <= 0:
        return fail("--limit must be positive")
    try:
        target = resolve_target(args)
        if not (target.dlq_url and target.queue_url):
            return fail("the stack names no ingest queue or DLQ")
        sqs = target.client("sqs")
        moved = redrive(sqs, target.dlq_url, target.queue_url, limit=args.limit)
        left = sum(queue_depth(sqs, target.dlq_url))
    except TargetError as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError, RuntimeError) as exc:
        return fail(f"redrive failed: {exc}")
    if args.json:
        print_json({"moved": moved, "dlq_depth": left})
    else:
        print(f"moved {moved} message(s) to the ingest queue; {left} left in the DLQ")
    return 0
