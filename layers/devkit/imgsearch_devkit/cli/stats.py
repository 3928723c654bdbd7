"""``imgsearch stats [--approximate] [--json]``: images embedded and quarantined, what waits for
the next build and when it runs, queue depths, serving index."""

from __future__ import annotations

import argparse

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch_devkit.cli.common import fail, print_json, progress, stack_command, table
from imgsearch_devkit.cli.target import resolve_target
from imgsearch_devkit.ops.schedule import NextBuild
from imgsearch_devkit.ops.stats import APPROXIMATE_NOTE, StackStats, approximate_item_count, collect
from imgsearch_devkit.target import TargetError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = stack_command(
        subparsers,
        "stats",
        func=run,
        help="images embedded and quarantined, queue depths, serving index, next build",
        description=(
            "Count the embeddings table (ok, quarantined by reason, deleted, and what was "
            "embedded since the serving index's snapshot: the next build takes it), read the "
            "ingest queue's and DLQ's depths, the serving index (indexes/current.json) and when "
            "the next scheduled build runs. The count is a full table scan (progress on stderr); "
            "--approximate reads DynamoDB's item count instead."
        ),
    )
    parser.add_argument(
        "--approximate",
        action="store_true",
        help="no scan: DynamoDB's item count (all statuses; AWS refreshes it about every 6 h)",
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _next_build(upcoming: NextBuild | None) -> str:
    if upcoming is None:
        return "none scheduled (imgsearch pipeline run)"
    if upcoming.error:
        return f"unknown: cannot read the schedule ({upcoming.error})"
    if not upcoming.enabled:
        return f"schedule {upcoming.schedule} is disabled (imgsearch pipeline run)"
    if upcoming.next_at:
        return f"{upcoming.next_at} ({upcoming.schedule})"
    if upcoming.every_seconds:
        return f"within {upcoming.every_seconds:g} s ({upcoming.schedule})"
    return upcoming.schedule


def _pending(stats: StackStats) -> str:
    if not stats.index_version:
        return f"{stats.pending}  (no index yet: the first build takes them)"
    text = (
        f"{stats.pending}  (embedded since the serving index's snapshot: the next build takes them"
    )
    if stats.pending_deleted:
        text += f"; it also drops {stats.pending_deleted} deleted since"
    return text + ")"


def render(stats: StackStats) -> str:
    rows: list[tuple[str, object]] = [("images", stats.images), ("model", stats.model)]
    if stats.approximate:
        rows.append(("items", f"~{stats.item_count}  ({APPROXIMATE_NOTE})"))
    else:
        quarantined = sum(stats.quarantined.values())
        reasons = ", ".join(f"{reason} {n}" for reason, n in stats.quarantined.items())
        rows += [
            ("embedded", stats.embedded),
            ("not indexed", _pending(stats)),
            ("quarantined", f"{quarantined}" + (f"  ({reasons})" if reasons else "")),
            ("deleted", stats.deleted),
        ]
    rows += [
        ("ingest", f"{stats.queue_depth} waiting, {stats.queue_in_flight} in flight"),
        ("dlq", f"{stats.dlq_depth}" + ("  (imgsearch dlq redrive)" if stats.dlq_depth else "")),
    ]
    if stats.index_version:
        published = stats.published_at or stats.built_at
        rows.append(
            (
                "index",
                f"{stats.index_version}: {stats.image_count} images, "
                f"published {published} ({_age(stats.index_age_seconds)} ago)",
            )
        )
    else:
        rows.append(("index", "none published yet (imgsearch pipeline run)"))
    rows.append(("next build", _next_build(stats.next_build)))
    return table(rows)


def run(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args)
        if args.approximate:
            stats = collect(target, approximate=True)
        else:
            # DynamoDB's own count sizes the bar; the scan counts exactly.
            total = approximate_item_count(target.client("dynamodb"), target.table)
            with progress("scanning the embeddings table", total=total or None, unit="item") as bar:
                stats = collect(target, on_items=bar.update)
    except TargetError as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot read the stack: {exc}")
    if args.json:
        print_json(stats.as_dict())
    else:
        print(render(stats))
    return 0
