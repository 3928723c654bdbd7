"""The ``imgsearch`` command line.

Each command group lives in its own module with a ``register(subparsers)`` function that adds its
parsers and sets ``func`` (called with the parsed arguments, returns the exit status)::

    imgsearch embed photo.jpg         imgsearch model eval
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from imgsearch import __version__

# Command-group modules, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "embed",
    "model",
    "local",
    "upload",
    "search",
    "stats",
    "dlq",
    "quarantine",
    "index",
    "pipeline",
    "backfill",
    "feedback",
    "golden",
    "monitor",
    "retrain",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgsearch", description="Semantic image search on AWS: operate, query and evaluate."
    )
    parser.add_argument("--version", action="version", version=f"imgsearch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"imgsearch_devkit.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`imgsearch stats | head`): the Python documentation's recipe
        # (signal module, "Note on SIGPIPE") - point stdout at devnull so that the interpreter's
        # own flush at exit cannot fail again, and exit 1 as Python does on EPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
