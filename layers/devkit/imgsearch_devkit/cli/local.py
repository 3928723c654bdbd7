"""``imgsearch local up``: the whole service on this machine (what ``make demo`` runs).

Starts ``imgsearch_devkit.local.LocalStack``, then, unless ``--no-demo``: uploads the demo
images through the S3 API, waits for the embed function, runs the index pipeline, prints example
queries with their top results, and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from imgsearch_devkit.cli.common import command_group, fail
from imgsearch_devkit.local.demo import DEMO_IMAGES
from imgsearch_devkit.target import LOCAL_STATE_FILE, STATE_VARIABLE, TargetError

FUNCTION_LOG = Path(".imgsearch") / "functions.log"
DEFAULT_SCHEDULE_SECONDS = 60.0
"""As the deployed schedule does (every ``IndexSchedule`` minutes), but every minute."""

if TYPE_CHECKING:
    from imgsearch_client import Client

    from imgsearch_devkit.local.demo import DemoImage
    from imgsearch_devkit.local.stack import LocalStack


def register(subparsers: argparse._SubParsersAction) -> None:
    commands = command_group(subparsers, "local", help="run the whole service on this machine")
    up = commands.add_parser(
        "up",
        help="start the local stack (moto AWS endpoint, embed worker, HTTP API, pipeline)",
        description=(
            "Start a moto server with the template's resources, run the embed function on the "
            "ingest queue and the query function behind a local HTTP API, and write "
            ".imgsearch/local.json so that the other commands find the stack. With demo data "
            "(the default) it then uploads the demo images, builds an index and prints example "
            "queries. Serves until Ctrl-C."
        ),
    )
    up.add_argument("--aws-port", type=int, default=5000, help="AWS endpoint port (0: any free)")
    up.add_argument("--api-port", type=int, default=3000, help="search API port (0: any free)")
    up.add_argument("--no-demo", action="store_true", help="start empty: no demo images")
    up.add_argument(
        "--demo-images",
        type=int,
        default=DEMO_IMAGES,
        metavar="N",
        help=f"how many demo images to render and upload (default {DEMO_IMAGES}, balanced over "
        "the 40 colour x shape kinds; the retraining walkthrough uses 800)",
    )
    up.add_argument(
        "--fresh",
        action="store_true",
        help="start over: delete the data kept from earlier runs (uploads, embeddings, indexes)",
    )
    up.add_argument(
        "--schedule",
        type=float,
        default=DEFAULT_SCHEDULE_SECONDS,
        metavar="SECONDS",
        help=f"start an index pipeline run every SECONDS (default {DEFAULT_SCHEDULE_SECONDS:g}; "
        "a run with nothing new stops after its snapshot)",
    )
    up.add_argument(
        "--no-schedule",
        dest="schedule",
        action="store_const",
        const=0,
        help="no scheduled runs: only `imgsearch pipeline run`",
    )
    up.add_argument("--bundle", default="", help="model bundle for every function (default: demo)")
    up.add_argument(
        "--existing-bucket",
        default="",
        metavar="NAME",
        help="keep the images in bucket NAME, as a deployment with ExistingBucketName does: "
        "created if missing, with EventBridge notifications on; its events reach the ingest "
        "queue through EventBridge (the stack's own bucket then holds only indexes and reports)",
    )
    up.add_argument(
        "--state",
        type=Path,
        default=LOCAL_STATE_FILE,
        metavar="FILE",
        help=f"where to write the stack's state file (default {LOCAL_STATE_FILE}); a second "
        "stack in one folder needs its own",
    )
    up.add_argument(
        "--function-logs",
        action="store_true",
        help=f"print the functions' logs and metrics here (default: to {FUNCTION_LOG})",
    )
    up.set_defaults(func=run_up)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _say(message: str = "") -> None:
    print(message, flush=True)


def run_up(args: argparse.Namespace) -> int:
    # The local stack needs the dev extras (moto, PyYAML): imported only when it runs.
    from imgsearch_client import ClientError

    from imgsearch_devkit.local.stack import LocalStack, LocalStackConfig, PortInUse, StackError

    started = time.monotonic()
    config = LocalStackConfig(
        aws_port=args.aws_port,
        api_port=args.api_port,
        schedule_seconds=args.schedule,
        fresh=args.fresh,
        state_file=args.state,
        model_uri=args.bundle,
        function_log=None if args.function_logs else FUNCTION_LOG,
        existing_bucket=args.existing_bucket,
    )
    stack = LocalStack(config)
    # Ctrl-C and SIGTERM stop cleanly, even when started in the background (which ignores
    # SIGINT in a non-interactive shell).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    _say("imgsearch: starting the local stack ...")
    try:
        target = stack.start()
    except PortInUse as exc:
        return fail(str(exc.strerror))
    except TargetError as exc:  # another live stack holds the state file
        return fail(str(exc))
    except (StackError, OSError) as exc:
        return fail(f"the local stack did not start: {exc}")
    try:
        _say(f"  AWS endpoint   {target.aws_endpoint}   (S3, SQS, DynamoDB, Step Functions, SNS)")
        _say(f"  search API     {target.api_url}/")
        if target.image_bucket != target.bucket:
            _say(
                f"  images         s3://{target.image_bucket}/{target.image_prefix}   (EventBridge)"
            )
            _say(f"  stack bucket   s3://{target.bucket}/   (indexes, snapshots, reports)")
        else:
            _say(f"  bucket         s3://{target.bucket}/{target.image_prefix}")
        _say(f"  state file     {config.state_file}")
        _say(f"  function logs  {config.function_log or 'this terminal'}")
        _say(f"  data           {_data_line(stack)}")
        schedule = f"every {args.schedule:g} s" if args.schedule > 0 else "off (--no-schedule)"
        _say(f"  index rebuild  {schedule}")
        _say(f"  up in {time.monotonic() - started:.1f} s")
        if not args.no_demo:
            run_demo(stack, args.demo_images)
        _say()
        _say(f"serving: open {target.api_url}/ in a browser  (Ctrl-C to stop)")
        _say(
            f"  upload more:  imgsearch upload PATH...   or   aws --endpoint-url "
            f"{target.aws_endpoint} s3 cp PHOTO s3://{target.image_bucket}/{target.image_prefix}"
        )
        _say("  then:         imgsearch pipeline run --wait   ·   imgsearch stats")
        _say(
            f'  the CLI:      export PATH="{Path(sys.executable).parent}:$PATH" '
            f"{STATE_VARIABLE}={config.state_file.resolve()}   (from any folder)"
        )
        _say(
            "  the AWS CLI:  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
            f"AWS_DEFAULT_REGION={target.region}"
        )
        stack.serve_forever()
    except KeyboardInterrupt:
        _say("\nimgsearch: stopping ...")
    except (StackError, ClientError) as exc:
        return fail(str(exc))
    finally:
        stack.stop()
    _say("imgsearch: local stack stopped")
    return 0


def _data_line(stack: LocalStack) -> str:
    folder = stack.config.data_folder
    restored = stack.restored
    if not stack.config.keep_data:
        return "in memory only: lost at Ctrl-C"
    if restored.empty:
        return f"new, kept in {folder} at Ctrl-C (--fresh starts over)"
    return (
        f"restored from {folder}: {restored.objects} objects, {restored.items} table items "
        "(--fresh starts over)"
    )


def run_demo(stack: LocalStack, count: int = DEMO_IMAGES) -> None:
    from imgsearch_devkit.local.demo import (
        DEMO_FOLDER,
        demo_images,
        golden_jsonl,
        write_demo_folder,
    )
    from imgsearch_devkit.local.stack import StackError
    from imgsearch_devkit.ops.stats import collect, count_table
    from imgsearch_devkit.ops.upload import plan_uploads, upload

    target = stack.require_target()
    images = demo_images(count)
    api = target.api()
    serving = api.version().index_version
    if serving and not stack.restored.empty:
        # A restored stack already holds the demo (or the user's own) images and an index.
        _say()
        _say(f"restored: serving index {serving} (`imgsearch local up --fresh` starts over)")
        show_examples(api, images, target.image_prefix)
        return
    with tempfile.TemporaryDirectory(prefix="imgsearch-demo-") as folder:
        plan = plan_uploads(
            [write_demo_folder(images, Path(folder))], target.image_prefix + DEMO_FOLDER
        )
        _say()
        with tqdm(total=len(plan.items), desc="upload demo images", unit="img") as bar:
            upload(target.client("s3"), target.image_bucket, plan, on_done=lambda _: bar.update())
    target.client("s3").put_object(
        Bucket=target.bucket,
        Key=target.settings().gate.golden_key,
        Body=golden_jsonl(images, target.image_prefix),
        ContentType="application/x-ndjson",
    )
    dynamodb = target.client("dynamodb")
    route = "EventBridge -> SQS" if target.image_bucket != target.bucket else "SQS"
    with tqdm(total=len(images), desc=f"embed ({route} -> embed)", unit="img") as bar:
        deadline = time.monotonic() + 600
        while True:
            counts = count_table(dynamodb, target.table).values()
            done = sum(c.embedded + sum(c.quarantined.values()) for c in counts)
            bar.update(max(0, min(done, len(images)) - bar.n))
            if done >= len(images) and stack.ingest_idle():
                break
            if time.monotonic() > deadline:
                raise StackError(f"only {done} of {len(images)} images embedded after 600 s")
            time.sleep(0.5)
    stats = collect(target)
    quarantined = ", ".join(f"{n} {r}" for r, n in stats.quarantined.items()) or "none"
    _say(f"  embedded {stats.embedded}, quarantined: {quarantined}")

    _say("index pipeline (Snapshot -> Build -> Validate -> Gate -> Publish) ...")
    began = time.monotonic()
    execution = stack.run_pipeline()
    output: dict[str, Any] = json.loads(execution.get("output") or "{}")
    if execution["status"] != "SUCCEEDED" or "publish" not in output:
        raise StackError(
            f"pipeline {execution['status']}: {execution.get('error', '')} "
            f"{execution.get('cause', '') or json.dumps(output)[:500]}"
        )
    publish = output["publish"]
    figures = ", ".join(f"{k} {v}" for k, v in sorted(publish.get("headline", {}).items()))
    _say(
        f"  published {publish['version']} ({publish['count']} images) in "
        f"{time.monotonic() - began:.1f} s; {figures}"
    )

    api.wait_for_version(publish["version"])
    show_examples(api, images, target.image_prefix)


def show_examples(api: Client, images: list[DemoImage], image_prefix: str) -> None:
    from imgsearch_devkit.local.demo import EXAMPLE_QUERIES, relevant_to

    _say()
    _say("example queries (top 3; + = the image shows what the query says):")
    first_key = ""
    for query in EXAMPLE_QUERIES:
        results = api.search(query, k=3).results
        _say(f'  "{query}"')
        for hit in results:
            mark = {True: "+", False: "-", None: " "}[
                relevant_to(query, hit.key, images, image_prefix)
            ]
            _say(f"    {mark} {hit.score:.3f}  {hit.key}")
        first_key = first_key or (results[0].key if results else "")
    if first_key:
        _say(f"  more like {first_key!r}:")
        similar = [h for h in api.similar(first_key, k=4).results if h.key != first_key]
        for hit in similar[:3]:
            _say(f"      {hit.score:.3f}  {hit.key}")
    sys.stdout.flush()
