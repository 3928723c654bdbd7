"""``imgsearch index list|rollback``: the index versions in the bucket, and rolling back."""

from __future__ import annotations

import argparse
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch.catalog.current import read_current
from imgsearch.catalog.errors import PipelineError
from imgsearch.catalog.versions import VersionInfo, list_versions
from imgsearch.pipeline.rollback import parse_rollback_input, rollback
from imgsearch_devkit.cli.common import (
    command_group,
    fail,
    print_json,
    stack_command,
    table,
    wait_until_served,
)
from imgsearch_devkit.cli.target import resolve_target
from imgsearch_devkit.target import TargetError

COLUMNS = ("recall_at_10", "expansion_search", "p99_ms", "precision_at_10", "ndcg_at_10", "mrr")


def register(subparsers: argparse._SubParsersAction) -> None:
    commands = command_group(subparsers, "index", help="list index versions, roll back")
    stack_command(
        commands,
        "list",
        func=run_list,
        help="versions with their key figures; * marks the serving one",
        description="Every version under the index prefix, oldest first (by build time), with "
        "its status (validated, rejected, incomplete), when it last served (published), size "
        "and report figures.",
    )
    back = stack_command(
        commands,
        "rollback",
        func=run_rollback,
        json_help="print the new current.json as JSON",
        help="serve an earlier validated version again",
        description="Point indexes/current.json at an earlier validated version (default: the "
        "newest published one built before the serving version). The query function picks it "
        "up on its "
        "next refresh. The next pipeline run that sees changed embeddings publishes a new "
        "version again: pause the schedule to keep the rollback.",
    )
    back.add_argument("--to", metavar="VERSION", help="the version to serve")


def _row(info: VersionInfo, serving: str) -> dict[str, Any]:
    build = info.report.build if info.report else None
    return {
        "version": info.version,
        "serving": info.version == serving,
        "status": info.status,
        "published": info.published,
        "published_at": info.record and info.record.published_at,
        "count": build and build.count,
        "index": build and f"{build.engine} {build.dtype}",
        "index_bytes": build and build.index_bytes,
        "build_seconds": build and build.build_seconds,
        **{name: info.figures.get(name) for name in COLUMNS},
    }


def _cell(value: Any) -> Any:
    return f"{value:.4g}" if isinstance(value, float) else value


def render(rows: list[dict[str, Any]]) -> str:
    headers = ("", "version", "status", "published", "images", "index", "MB", *COLUMNS)
    return table(
        (
            (
                "*" if row["serving"] else "",
                row["version"],
                row["status"],
                row["published_at"] or ("yes" if row["published"] else None),
                row["count"],
                row["index"],
                row["index_bytes"] and round(row["index_bytes"] / 2**20, 1),
                *(_cell(row[name]) for name in COLUMNS),
            )
            for row in rows
        ),
        headers=headers,
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
    if args.json:
        served = wait_until_served(target, current.version, quiet=True)
        print_json({**current.dump(), "served_after_seconds": served})
        return 0
    print(f"serving {current.version} (was {current.previous}): {current.count} images")
    wait_until_served(target, current.version)
    return 0
