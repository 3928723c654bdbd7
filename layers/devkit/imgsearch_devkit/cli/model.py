"""``imgsearch model ...``: inspect and evaluate bundles; register them in a stack, list them."""

from __future__ import annotations

import argparse
import json
import sys

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch.core.errors import ImgsearchError
from imgsearch.rollout.cleanup import cleanup_models
from imgsearch.rollout.steps import rollback_model
from imgsearch.store import EmbeddingStore
from imgsearch_devkit.cli.common import (
    BundleError,
    add_json_argument,
    announce_start,
    command_group,
    fail,
    load_model,
    print_json,
    stack_command,
    table,
    wait_until_served,
)
from imgsearch_devkit.cli.pipeline import follow_states
from imgsearch_devkit.cli.target import resolve_target
from imgsearch_devkit.demo.model_eval import DEFAULT_IMAGES, EVAL_SEED, evaluate_model
from imgsearch_devkit.ops.registry import caller, model_rows, register_model, start_model_rollout
from imgsearch_devkit.target import TargetError


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
    add = stack_command(
        commands,
        "register",
        func=run_register,
        help="verify a bundle, upload it to the stack's registry and record it",
        description="Verify every file of the bundle against model.json's sha256, upload it "
        "to models/<name>@<version>/ in the stack's bucket and write its registry record "
        "(state registered). Registering the same bundle again changes nothing; another bundle "
        "under a registered id is refused.",
    )
    add.add_argument("bundle", help="bundle folder or s3:// prefix")
    add.add_argument("--parent", default="", help="the model it derives from (name@version)")
    stack_command(
        commands, "list", func=run_list, help="the stack's models: state, serving, figures"
    )
    rollout = stack_command(
        commands,
        "rollout",
        func=run_rollout,
        help="serve a registered model: re-embed everything, validate, swap (Step Functions)",
        description="Start the model rollout: new uploads are written with both models, every "
        "image is re-embedded with the candidate (the backfill), its index is built and must "
        "pass the index pipeline's gates against the serving one, and its publish swaps model "
        "and index together. A rejected candidate leaves everything serving as it was. With "
        "--wait, print each state as it finishes; the exit status is 1 unless it is promoted.",
    )
    rollout.add_argument("model", help="a registered model id (name@version)")
    rollout.add_argument("--wait", action="store_true", help="follow the rollout until it ends")
    rollout.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="the backfill's chunks at once (default and most: BackfillMaxConcurrency)",
    )
    back = stack_command(
        commands,
        "rollback",
        func=run_rollback,
        help="serve the model that served before (its kept index), in one write",
    )
    back.add_argument("--to", default="", help="the model to serve again (default: the last one)")
    clean = stack_command(
        commands,
        "cleanup",
        func=run_cleanup,
        help="remove archived and rejected models' embeddings and indexes past their retention",
        description="Delete the table items and index versions of every archived or rejected "
        "model whose retention (IMGSEARCH_MODEL_RETENTION_DAYS, 7) has passed; never the "
        "serving model or a rollout's candidate. A cleaned model cannot be rolled back to.",
    )
    clean.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")


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


def run_register(args: argparse.Namespace) -> int:
    try:
        record, new = register_model(resolve_target(args), args.bundle, parent=args.parent)
    except (TargetError, ImgsearchError) as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot register {args.bundle}: {exc}")
    if args.json:
        print_json({**record.dump(), "new": new})
    elif new:
        print(f"registered {record.model_id} ({record.embedding_dim}-d), state {record.state}")
    else:
        print(f"{record.model_id} is registered already with these files: state {record.state}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    try:
        rows = model_rows(resolve_target(args))
    except (TargetError, ImgsearchError) as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot read the registry: {exc}")
    if args.json:
        print_json({"models": rows})
        return 0
    if not rows:
        print("no models registered (imgsearch model register PATH)")
        return 0
    headers = ("model", "state", "serving", "dim", "registered", "headline")
    print(
        table(
            [
                (
                    r["model"],
                    r["state"],
                    "yes" if r["serving"] else "",
                    r["dim"],
                    r["registered"][:19],
                    ", ".join(f"{k} {v}" for k, v in list(r["headline"].items())[:3]),
                )
                for r in rows
            ],
            headers,
        )
    )
    return 0


def run_rollout(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args)
        execution = start_model_rollout(target, args.model, max(0, args.concurrency))
    except (TargetError, ImgsearchError) as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot start the rollout: {exc}")
    if not announce_start(execution, args):
        return 0
    try:
        end, states = follow_states(target.client("stepfunctions"), execution, quiet=args.json)
    except (BotoCoreError, ClientError) as exc:
        return fail(f"lost track of {execution}: {exc}")
    output = json.loads(end.get("output") or "{}")
    result = {"execution": execution, "status": end["status"], "states": states, "result": output}
    if end["status"] == "SUCCEEDED":
        if args.json:
            print_json(result)
        else:
            print(f"promoted {output.get('candidate')}: index {output.get('version')} serves")
        return 0
    result.update(error=end.get("error", ""), cause=end.get("cause", ""))
    if args.json:
        print_json(result)
    else:
        print(f"{end['status']}: {end.get('error', '')}: {end.get('cause', '')}", file=sys.stderr)
    return 1


def run_rollback(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args)
        current = rollback_model(
            target.settings(), target.client("s3"), to=args.to, by=caller(target)
        )
    except (TargetError, ImgsearchError) as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot roll back: {exc}")
    served = wait_until_served(target, current.version, quiet=True)
    if args.json:
        print_json({**current.dump(), "served_after_seconds": served})
    else:
        print(f"serving {current.model}, index {current.version} (was {current.previous})")
    return 0


def run_cleanup(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args)
        store = EmbeddingStore(target.table, target.client("dynamodb"))
        removed = cleanup_models(
            target.settings(), target.client("s3"), store, dry_run=args.dry_run
        )
    except (TargetError, ImgsearchError) as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot clean up: {exc}")
    rows = [r.dump() for r in removed]
    if args.json:
        print_json({"dry_run": args.dry_run, "models": rows})
    elif not rows:
        print("nothing to clean up: no archived or rejected model is past its retention")
    else:
        verb = "would remove" if args.dry_run else "removed"
        for row in rows:
            print(
                f"{row['model']} ({row['state']} since {row['since'][:19]}): {verb} "
                f"{row['items']} items, {len(row['versions'])} index versions, {row['bytes']} bytes"
            )
    return 0
