"""``imgsearch model ...``: inspect and evaluate model bundles."""

from __future__ import annotations

import argparse

from imgsearch_devkit.cli.common import (
    BundleError,
    add_json_argument,
    command_group,
    fail,
    load_model,
    print_json,
)
from imgsearch_devkit.demo.model_eval import DEFAULT_IMAGES, EVAL_SEED, evaluate_model


def register(subparsers: argparse._SubParsersAction) -> None:
    commands = command_group(subparsers, "model", help="inspect and evaluate model bundles")
    info = commands.add_parser("info", help="print a bundle's manifest after verifying it")
    info.add_argument("bundle", nargs="?", help="bundle folder or s3:// prefix (default: demo)")
    add_json_argument(info, always=True)
    info.set_defaults(func=run_info)
    evaluate = commands.add_parser(
        "eval",
        help="text-to-image retrieval figures on held-out synthetic scenes",
        description="Embed a balanced, held-out set of synthetic scenes, run one query per "
        "colour x shape kind ('red circle', ...) with exact cosine search and print "
        "precision@k, recall@k, MRR and nDCG@k as JSON.",
    )
    evaluate.add_argument("bundle", nargs="?", help="bundle folder or s3:// prefix (default: demo)")
    evaluate.add_argument(
        "--images",
        type=int,
        default=DEFAULT_IMAGES,
        help=f"held-out images to render (default {DEFAULT_IMAGES})",
    )
    evaluate.add_argument(
        "--seed",
        type=int,
        default=EVAL_SEED,
        help=f"scene seed; the default {EVAL_SEED} is never used in training",
    )
    evaluate.add_argument("--k", type=int, default=10, help="cut-off for precision/recall/nDCG")
    add_json_argument(evaluate, always=True)
    evaluate.set_defaults(func=run_eval)


def run_info(args: argparse.Namespace) -> int:
    try:
        model = load_model(args.bundle)
    except BundleError as exc:
        return fail(str(exc))
    print_json(
        {"model": model.model_id, "path": str(model.bundle.root), **model.manifest.to_dict()}
    )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    try:
        model = load_model(args.bundle)
        report = evaluate_model(model, images=args.images, seed=args.seed, k=args.k)
    except BundleError as exc:
        return fail(str(exc))
    except ValueError as exc:
        return fail(str(exc), status=2)
    print_json(report)
    return 0
