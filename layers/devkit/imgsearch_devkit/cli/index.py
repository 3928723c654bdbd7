"""``imgsearch index list|rollback``: the index versions in the bucket, and rolling back."""

from __future__ import annotations

import argparse
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch.catalog.current import read_current
from imgsearch.catalog.errors import PipelineError
from imgsearch.catalog.versions import VersionInfo, list_versions
from imgsearch.pipeline.rollback import parse_rollback_input, rollback
from imgsearch_devkit.cli.common import fail, print_json
from imgsearch_devkit.cli.target import add_target_arguments, resolve_target
from imgsearch_devkit.target import TargetError

COLUMNS = ("recall_at_10", "expansion_search", "p99_ms", "precision_at_10", "ndcg_at_10", "mrr")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("index", help="list index versions, roll back")
    commands = parser.add_subparsers(dest="index_command", metavar="COMMAND", required=True)
    listing = commands.add_parser(
        "list",
        help="versions with their key figures; * marks the serving one",
        description="Every version under the index prefix, oldest first, with its status "
        "(validated, rejected, incomplete), size and report figures.",
    )
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    add_target_arguments(listing)
    listing.set_defaults(func=run_list)
    back = commands.add_parser(
        "rollback",
        help="serve an earlier validated version again",
        description="Point indexes/current.json at an earlier validated version (default: the "
        "newest one older than the serving version). The query function picks it up on its "
        "next refresh. The next pipeline run that sees changed embeddings publishes a new "
        "version again: pause the schedule to keep the rollback.",
    )
    back.add_argument("--to", metavar="VERSION", help="the version to serve")
    add_target_arguments(back)
    back.set_defaults(func=run_rollback)


def _row(info: VersionInfo, serving: str) -> dict[str, Any]:
    build = info.report.build if info.report else None
    return {
        "version": info.version,
        "serving": info.version == serving,
        "status": info.status,
        "count": build and build.count,
        "dtype": build and build.dtype,
        "index_bytes": build and build.index_bytes,
        "build_seconds": build and build.build_seconds,
        **{name: info.figures.get(name) for name in COLUMNS},
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render(rows: list[dict[str, Any]]) -> str:
    headers = ("", "version", "status", "images", "dtype", "MB", *COLUMNS)
    table = [
        (
            "*" if row["serving"] else "",
            row["version"],
            row["status"],
            _cell(row["count"]),
            _cell(row["dtype"]),
            _cell(row["index_bytes"] and round(row["index_bytes"] / 2**20, 1)),
            *(_cell(row[name]) for name in COLUMNS),
        )
        for row in rows
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *table, strict=True)]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *table)
    )


def run_list(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args)
        settings = target.settings()
        s3 = target.client("s3")
        current = read_current(s3, settings.bucket, settings.index.prefix)
        versions = list_versions(s3, settings.bucket, settings.index.prefix)
    except TargetError as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot read the index versions: {exc}")
    serving = current.version if current else ""
    rows = [_row(info, serving) for info in versions]
    if args.json:
        print_json({"serving": serving or None, "versions": rows})
    elif not rows:
        print("no index versions yet (imgsearch pipeline run)")
    else:
        print(render(rows))
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    try:
        to = parse_rollback_input({"to": args.to})
        target = resolve_target(args)
        current = rollback(target.settings(), target.client("s3"), to=to)
    except ValueError as exc:
        return fail(str(exc), status=2)
    except (TargetError, PipelineError) as exc:  # RollbackError, PublishConflict
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot roll back: {exc}")
    print(f"serving {current.version} (was {current.previous}): {current.count} images")
    return 0
