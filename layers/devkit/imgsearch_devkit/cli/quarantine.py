"""``imgsearch quarantine list [--reason R]``: the images the embed function refused, and why."""

from __future__ import annotations

import argparse

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch_devkit.cli.common import (
    command_group,
    fail,
    print_json,
    progress,
    stack_command,
    table,
)
from imgsearch_devkit.cli.target import resolve_target
from imgsearch_devkit.ops.quarantine import quarantined
from imgsearch_devkit.ops.stats import approximate_item_count
from imgsearch_devkit.target import TargetError


def register(subparsers: argparse._SubParsersAction) -> None:
    commands = command_group(
        subparsers, "quarantine", help="list the images the embed function refused"
    )
    listing = stack_command(
        commands,
        "list",
        func=run_list,
        help="quarantined images: key, reason, size, when",
        description=(
            "Scan the embeddings table for quarantined images (those the embed function refused: "
            "not an image, too large, undecodable ...) and print each one's key, reason, size "
            "and when it was refused, oldest first. Progress goes to stderr. Replacing the "
            "object in S3 with a good image embeds it again."
        ),
    )
    listing.add_argument("--reason", metavar="R", help="only this reason (e.g. not_an_image)")


def run_list(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args)
        dynamodb = target.client("dynamodb")
        total = approximate_item_count(dynamodb, target.table)
        with progress("scanning the embeddings table", total=total or None, unit="item") as bar:
            found = quarantined(
                dynamodb, target.table, args.reason, bar.update, bucket=target.image_bucket
            )
            items = list(found)
    except TargetError as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot read the embeddings table: {exc}")
    items.sort(key=lambda item: (item.updated_at, item.key))
    if args.json:
        print_json({"reason": args.reason, "images": [item.as_dict() for item in items]})
    elif not items:
        print("no quarantined images" + (f" with reason {args.reason}" if args.reason else ""))
    else:
        rows = [(i.key, i.reason, i.size, i.updated_at, i.model) for i in items]
        print(table(rows, headers=("key", "reason", "bytes", "refused at", "model")))
    return 0
