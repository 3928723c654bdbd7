"""The ``--stack NAME`` / ``--state FILE`` options every operator command shares, and how they
pick the target."""

from __future__ import annotations

import argparse
from pathlib import Path

from imgsearch_devkit.target import LOCAL_STATE_FILE, STATE_VARIABLE, TOKEN_VARIABLE, Target


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--stack",
        metavar="NAME",
        help="a deployed CloudFormation stack (default: the local stack)",
    )
    where.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help=f"the local stack's state file (default: ${STATE_VARIABLE}, else the first "
        f"{LOCAL_STATE_FILE} from here upwards)",
    )

    aws = parser.add_argument_group("a deployed stack")
    aws.add_argument("--profile", help="AWS profile for the stack's API and resources")
    aws.add_argument("--region", help="AWS region of the stack (default: the profile's)")
    aws.add_argument(
        "--token",
        help=f"bearer token for a JWT-authenticated API (default: ${TOKEN_VARIABLE})",
    )


def resolve_target(args: argparse.Namespace) -> Target:
    """The deployed stack named by ``--stack``, else the local stack of ``--state`` (or the one
    ``find_state_file`` finds)."""
    return Target.resolve(
        stack=args.stack,
        state_file=args.state,
        region=args.region,
        profile=args.profile,
        token=args.token,
    )
