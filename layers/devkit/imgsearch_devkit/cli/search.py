"""``imgsearch search TEXT | --image PATH``: query the stack's HTTP API, as any client would."""

from __future__ import annotations

import argparse
from pathlib import Path

from imgsearch_client import ClientError

from imgsearch_devkit.cli.common import fail, print_json, stack_command, table
from imgsearch_devkit.cli.target import resolve_target
from imgsearch_devkit.target import TargetError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = stack_command(
        subparsers,
        "search",
        func=run,
        json_help="print the API's JSON response",
        help="search the stack's images by text or by an example image",
        description="Call the stack's HTTP API: GET /search?q=TEXT, or POST /search with the "
        "image. Prints score and key per result (--json: the API's response).",
    )
    parser.add_argument("text", nargs="?", help="what the images should show")
    parser.add_argument("--image", type=Path, metavar="PATH", help="find images like this one")
    parser.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    parser.add_argument("--min-score", type=float, help="drop results scoring below this")
    parser.add_argument("--urls", action="store_true", help="also print each image's URL")


def run(args: argparse.Namespace) -> int:
    if bool(args.text) == bool(args.image):
        return fail("give either TEXT or --image PATH")
    try:
        api = resolve_target(args).api()
        if args.image:
            response = api.search_image(
                args.image.read_bytes(), args.image.name, k=args.k, min_score=args.min_score
            )
        else:
            response = api.search(args.text, k=args.k, min_score=args.min_score)
    except (TargetError, ClientError, OSError) as exc:
        return fail(str(exc))
    if args.json:
        print_json(response.raw)
        return 0
    print(f"{len(response.results)} result(s) from index {response.index_version}")
    if response.results:
        print(
            table(
                (f"{hit.score:.3f}", hit.key, *([hit.url] if args.urls else []))
                for hit in response.results
            )
        )
    return 0
