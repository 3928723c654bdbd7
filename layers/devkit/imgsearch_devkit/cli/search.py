"""``imgsearch search TEXT | --image PATH``: query the stack's HTTP API, as any client would."""

from __future__ import annotations

import argparse
from pathlib import Path

from imgsearch_devkit.cli.common import fail, print_json
from imgsearch_devkit.cli.target import add_target_arguments, resolve_target
from imgsearch_devkit.ops.api import ApiClient, ApiClientError
from imgsearch_devkit.target import TargetError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search the stack's images by text or by an example image",
        description="Call the stack's HTTP API: GET /search?q=TEXT, or POST /search with the "
        "image. Prints score and key per result (--json: the API's response).",
    )
    parser.add_argument("text", nargs="?", help="what the images should show")
    parser.add_argument("--image", type=Path, metavar="PATH", help="find images like this one")
    parser.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    parser.add_argument("--min-score", type=float, help="drop results scoring below this")
    parser.add_argument("--urls", action="store_true", help="also print each image's URL")
    parser.add_argument("--json", action="store_true", help="print the API's JSON response")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.text) == bool(args.image):
        return fail("give either TEXT or --image PATH")
    try:
        api = ApiClient(resolve_target(args).api_url)
        if args.image:
            response = api.search_image(
                args.image.read_bytes(), args.image.name, k=args.k, min_score=args.min_score
            )
        else:
            response = api.search(args.text, k=args.k, min_score=args.min_score)
    except (TargetError, ApiClientError, OSError) as exc:
        return fail(str(exc))
    if args.json:
        print_json(response)
        return 0
    results = response.get("results", [])
    print(f"{len(results)} result(s) from index {response.get('index_version')}")
    for hit in results:
        print(f"{hit['score']:.3f}  {hit['key']}" + (f"\n       {hit['url']}" if args.urls else ""))
    return 0
