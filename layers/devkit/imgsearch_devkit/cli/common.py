"""Helpers shared by the command modules: loading the model, printing errors, tables and
progress, waiting for the API to serve a version.

Results go to stdout (``--json``: one JSON document, nothing else), progress and warnings to
stderr::

    print(table([("embedded", 180)]))               # columns aligned by tabulate
    with progress("scan", total=1000, unit="item") as bar:
        bar.update(100)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from imgsearch_client import ClientError
from tabulate import tabulate
from tqdm import tqdm

from imgsearch.core.config import Settings
from imgsearch.model import BundleError, ClipModel
from imgsearch_devkit.cli.target import add_target_arguments
from imgsearch_devkit.project import operator_settings
from imgsearch_devkit.target import Target

SERVE_SLACK_SECONDS = 30
"""How long past the query function's refresh interval to wait before giving up."""


def command_group(subparsers: argparse._SubParsersAction, name: str, help: str) -> Any:
    """``imgsearch NAME COMMAND ...``: the group's own subparsers, to add its commands to."""
    parser = subparsers.add_parser(name, help=help)
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


def stack_command(
    parent: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], int],
    help: str,
    description: str | None = None,
    json_help: str = "print one JSON object",
) -> argparse.ArgumentParser:
    """A command that acts on a stack and prints a result: ``--json`` and the target options
    (``--stack``, ``--state``, ``--profile`` ...), run by ``func``."""
    parser = parent.add_parser(name, help=help, description=description)
    parser.add_argument("--json", action="store_true", help=json_help)
    add_target_arguments(parser)
    parser.set_defaults(func=func)
    return parser


def fail(message: str, status: int = 1) -> int:
    print(f"imgsearch: error: {message}", file=sys.stderr)
    return status


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, sort_keys=False))


def announce_start(
    execution: str,
    args: argparse.Namespace,
    extra: dict[str, Any] | None = None,
    follow: str = "follow it in the Step Functions console, or with --wait",
) -> bool:
    """Say that ``execution`` started; True when the command goes on to follow it (``--wait``).

    Without ``--wait``: ``{"execution", **extra, "status": "RUNNING"}`` with ``--json``, else
    the ARN and how to follow the run (``follow``)::

        if not announce_start(execution, args):
            return 0
        end, states = follow_states(sfn, execution, quiet=args.json)
    """
    if not args.wait:
        if args.json:
            print_json({"execution": execution, **(extra or {}), "status": "RUNNING"})
        else:
            print(f"started {execution}")
            print(follow)
        return False
    if not args.json:
        print(f"started {execution}", flush=True)
    return True


def add_json_argument(parser: argparse.ArgumentParser, always: bool = False) -> None:
    """``--json``, which every command that prints a result takes; ``always``: the command
    prints JSON anyway (the flag is accepted so that scripts can pass it everywhere)."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="the output is JSON already (accepted for scripts)" if always else "print JSON",
    )


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str] = ()) -> str:
    """Plain columns, two spaces apart, cells as they are (no number reformatting); ``None``
    shows as ``-``."""
    return tabulate(
        list(rows),
        headers=list(headers),
        tablefmt="plain",
        disable_numparse=True,
        missingval="-",
    )


def progress(desc: str, total: int | None = None, unit: str = "it") -> tqdm:
    """A progress bar on stderr, so that stdout (``--json``) stays the result alone; it is
    cleared when done."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)


def wait_until_served(target: Target, version: str, quiet: bool = False) -> float | None:
    """Wait until the stack's API answers with ``version``; returns (and unless ``quiet`` says)
    how long that took. A stack whose API cannot be asked (no URL, refused) gets a warning and
    ``None``, not a failure: the publish stands."""
    if not target.api_url:
        print("imgsearch: warning: the stack names no API URL: not waiting", file=sys.stderr)
        return None
    timeout = target.settings().index.refresh_seconds + SERVE_SLACK_SECONDS
    try:
        seconds = target.api().wait_for_version(version, timeout=timeout)
    except ClientError as exc:
        print(
            f"imgsearch: warning: could not confirm that the API serves {version}: {exc}",
            file=sys.stderr,
        )
        return None
    if not quiet:
        print(f"the API serves {version} ({seconds:.1f} s after it was published)")
    return round(seconds, 3)


def load_model(bundle: str | None, settings: Settings | None = None) -> ClipModel:
    """The bundle named on the command line, else the configured one (the embedded demo)."""
    settings = settings or operator_settings()
    return ClipModel.load(
        bundle or settings.model.uri,
        threads=settings.model.threads,
        cache_dir=settings.model.cache_dir,
    )


__all__ = [
    "BundleError",
    "add_json_argument",
    "command_group",
    "fail",
    "load_model",
    "print_json",
    "progress",
    "stack_command",
    "table",
    "wait_until_served",
]
