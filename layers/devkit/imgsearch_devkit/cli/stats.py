"""``imgsearch stats [--json]``: images embedded and quarantined, queue depths, serving index."""

from __future__ import annotations

import argparse

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch_devkit.cli.common import fail, print_json
from imgsearch_devkit.cli.target import add_target_arguments, resolve_target
from imgsearch_devkit.ops.stats import StackStats, collect
from imgsearch_devkit.target import TargetError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="images embedded and quarantined, queue depths, serving index",
        description=(
            "Count the embeddings table (ok, quarantined by reason, deleted), read the ingest "
            "queue's and DLQ's depths and the serving index (indexes/current.json)."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def render(stats: StackStats) -> str:
    quarantined = sum(stats.quarantined.values())
    reasons = ", ".join(f"{reason} {n}" for reason, n in stats.quarantined.items())
    lines = [
        f"model        {stats.model}",
        f"embedded     {stats.embedded}",
        f"quarantined  {quarantined}" + (f"  ({reasons})" if reasons else ""),
        f"deleted      {stats.deleted}",
        f"ingest queue {stats.queue_depth} waiting, {stats.queue_in_flight} in flight",
        f"dead letters {stats.dlq_depth}"
        + ("  (imgsearch dlq redrive)" if stats.dlq_depth else ""),
    ]
    if stats.index_version:
        lines.append(
            f"index        {stats.index_version}: {stats.index_count} images, "
            f"published {stats.index_published_at} ({_age(stats.index_age_seconds)} ago)"
        )
    else:
        lines.append("index        none published yet (imgsearch pipeline run)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        stats = collect(resolve_target(args))
    except TargetError as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot read the stack: {exc}")
    if args.json:
        print_json(stats.as_dict())
    else:
        print(render(stats))
    return 0
