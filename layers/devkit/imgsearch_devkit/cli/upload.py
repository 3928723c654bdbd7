"""``imgsearch upload PATH...``: put image files under the stack's image prefix, with progress."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from imgsearch_devkit.cli.common import fail, print_json, stack_command
from imgsearch_devkit.cli.target import resolve_target
from imgsearch_devkit.ops.upload import plan_uploads, upload
from imgsearch_devkit.target import TargetError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = stack_command(
        subparsers,
        "upload",
        func=run,
        json_help="print the bucket, uploaded keys and skipped files",
        help="upload image files or folders to the stack's image prefix",
        description=(
            "Upload image files (folders are walked; their files keep their relative paths) to "
            "the image prefix, where the embed function picks them up. Non-image files are "
            "skipped and listed."
        ),
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")


def run(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args)
        plan = plan_uploads(args.paths, target.image_prefix)
    except (TargetError, FileNotFoundError) as exc:
        return fail(str(exc))
    for path in plan.skipped:
        # stderr with --json: stdout is the JSON document alone.
        print(f"skipped (not an image file): {path}", file=sys.stderr if args.json else sys.stdout)
    if not plan.items:
        return fail("no image files to upload")
    try:
        with tqdm(
            total=plan.total_bytes, unit="B", unit_scale=True, desc="upload", disable=args.json
        ) as bar:
            count = upload(
                target.client("s3"),
                target.image_bucket,
                plan,
                on_done=lambda i: bar.update(i.size),
            )
    except (BotoCoreError, ClientError, OSError) as exc:
        return fail(f"upload failed: {exc}")
    if args.json:
        print_json(
            {
                "bucket": target.image_bucket,
                "keys": [item.key for item in plan.items],
                "skipped": [str(path) for path in plan.skipped],
            }
        )
    else:
        print(f"uploaded {count} image(s) to s3://{target.image_bucket}/{target.image_prefix}")
    return 0
