"""``imgsearch backfill [history]``: embed what the image bucket already holds; past runs."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch.backfill.contracts import BackfillOptions
from imgsearch.catalog.errors import ContractError
from imgsearch_devkit.cli.common import announce_start, fail, print_json, progress, table
from imgsearch_devkit.cli.target import add_target_arguments, resolve_target
from imgsearch_devkit.ops.backfill import (
    Progress,
    backfill_history,
    read_run_report,
    run_name,
    start_backfill,
)
from imgsearch_devkit.target import TargetError

POLL_SECONDS = 2.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backfill",
        help="embed the images already in the bucket (Step Functions Distributed Map)",
        description="Start a backfill: list the image prefix (or read an S3 Inventory report), "
        "embed every image the table does not hold yet, report the counts. Re-running is "
        "safe: what is embedded is skipped without a model call. `imgsearch backfill history` "
        "lists past runs.",
    )
    parser.add_argument(
        "action", nargs="?", choices=("start", "history"), default="start", help="(default start)"
    )
    parser.add_argument("--prefix", default="", help="keys to embed (default: the image prefix)")
    parser.add_argument("--model", default="", help="name@version (default: the serving model)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="chunks embedding at once (default and most: the stack's BackfillMaxConcurrency)",
    )
    parser.add_argument("--chunk-size", type=int, default=0, help="objects per chunk (1000)")
    parser.add_argument("--force", action="store_true", help="re-embed what is embedded already")
    parser.add_argument(
        "--inventory", default="", help="s3://.../manifest.json of an S3 Inventory report (CSV)"
    )
    parser.add_argument("--wait", action="store_true", help="show progress until the run ends")
    parser.add_argument("--max", type=int, default=10, help="history: how many runs (10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_target_arguments(parser)
    parser.set_defaults(func=run_backfill)


def run_backfill(args: argparse.Namespace) -> int:
    if args.action == "history":
        return _history(args)
    try:
        options = BackfillOptions(
            prefix=args.prefix,
            model=args.model,
            max_concurrency=max(0, args.concurrency),
            chunk_size=max(0, args.chunk_size),
            force=args.force,
            inventory=args.inventory,
        )
    except ValueError as exc:  # pydantic's, with the field's own message
        return fail(str(exc).splitlines()[-1] if "\n" in str(exc) else str(exc))
    try:
        target = resolve_target(args)
        execution = start_backfill(target, options)
    except TargetError as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot start the backfill: {exc}")
    result: dict[str, Any] = {"execution": execution, "run": run_name(execution)}
    follow = "follow it with `imgsearch backfill history` (--wait shows its progress here)"
    if not announce_start(execution, args, {"run": result["run"]}, follow):
        return 0
    try:
        described = _follow(target, execution, quiet=args.json)
        report = read_run_report(target, result["run"])
    except (BotoCoreError, ClientError, ContractError) as exc:
        return fail(f"lost track of {execution}: {exc}")
    result.update(status=described["status"], report=report.dump() if report else None)
    if args.json:
        print_json(result)
    elif report is not None:
        print(_summary(report.dump()))
    else:
        print(f"{described['status']}: {described.get('cause', '')}", file=sys.stderr)
    succeeded = described["status"] == "SUCCEEDED" and report and report.status == "succeeded"
    return 0 if succeeded else 1


def _follow(target: Any, execution: str, quiet: bool) -> dict[str, Any]:
    """Poll until the run ends, with a bar of chunks done / chunks listed and images/s."""
    sfn = target.client("stepfunctions")
    watcher = Progress(target, run_name(execution))
    started = time.monotonic()
    bar = None if quiet else progress("chunks", unit="chunk")
    try:
        while True:
            described = sfn.describe_execution(executionArn=execution)
            snapshot = watcher.poll()
            if bar is not None:
                bar.total = snapshot.chunks
                bar.n = snapshot.done
                rate = snapshot.objects / max(time.monotonic() - started, 1e-9)
                bar.set_postfix(
                    images=snapshot.objects, failed=snapshot.failed, per_s=f"{rate:.1f}"
                )
                bar.refresh()
            if described["status"] != "RUNNING":
                return described
            time.sleep(POLL_SECONDS)
    finally:
        if bar is not None:
            bar.close()


def _summary(report: dict[str, Any]) -> str:
    rows = [
        ("status", report["status"]),
        ("prefix", f"s3://{report['bucket']}/{report['prefix']}"),
        ("model", report["model"]),
        ("listed", f"{report['queued']} images ({report['ignored']} other keys ignored)"),
        ("embedded", f"{report['embedded']} ({report['reused']} reused the same bytes' vector)"),
        ("skipped", _reasons(report["skipped"])),
        ("quarantined", _reasons(report["quarantined"])),
        ("failed", f"{report['failed']} ({report['chunks_failed']} chunks gave up)"),
        ("time", f"{report['seconds']} s, {report['images_per_second']} images/s"),
        ("report", report["report_key"]),
    ]
    if report.get("error"):
        rows.insert(1, ("error", report["error"]))
    return table(rows)


def _reasons(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    detail = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))
    return f"{total} ({detail})" if detail else "0"


def _history(args: argparse.Namespace) -> int:
    try:
        rows = backfill_history(resolve_target(args), limit=args.max)
    except TargetError as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError, ContractError) as exc:
        return fail(f"cannot read the backfill's runs: {exc}")
    if args.json:
        print_json({"runs": rows})
        return 0
    if not rows:
        print("no backfill runs yet (imgsearch backfill)")
        return 0
    headers = ("started", "status", "seconds", "embedded", "skipped", "failed", "run")
    print(
        table(
            [
                (
                    r["started"][:19],
                    r["status"],
                    r["seconds"],
                    r["embedded"],
                    r["skipped"],
                    r["failed"],
                    r["name"],
                )
                for r in rows
            ],
            headers,
        )
    )
    return 0
