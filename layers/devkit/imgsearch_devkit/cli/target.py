"""The ``--stack NAME`` option every operator command shares, and how it picks the target."""

from __future__ import annotations

import argparse

from imgsearch_devkit.target import Target


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack",
        metavar="NAME",
        help="a deployed CloudFormation stack (default: the local stack, .imgsearch/local.json)",
    )


def resolve_target(args: argparse.Namespace) -> Target:
    """The deployed stack named by ``--stack``, else the running local stack."""
    return Target.resolve(stack=args.stack)
