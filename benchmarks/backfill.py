"""Backfill throughput through the local Distributed Map, seconds per 12 MP photo, and what a
10M-image backfill would take and cost on AWS.

1. Distributed Map: moto runs the real ``statemachine/backfill.asl.json`` (List, EmbedChunks on a
   Distributed Map, Finish) in this process and ``imgsearch_devkit.local.lambda_dispatch`` routes
   its Lambda tasks to the real ``functions/backfill_*`` handlers, wired as
   ``tests/integration/backfill_support.py`` wires them. The demo bundle with
   ``IMGSEARCH_THREADS=1`` (one Lambda vCPU per child) backfills the same photo-like 1024x768
   JPEGs (cut, scaled, flipped and grained from scikit-image's photographs: every image has its
   own bytes, so the sha256 reuse never spares a model call) at ``max_concurrency`` 1, 2 and 4,
   into a fresh table each time; then at 1 and 2 with ``force``, which skips the by-sha256
   queries (moto answers each by scanning and sorting the whole table, the largest cost of a
   local run). The children are threads of this one process, and S3 and DynamoDB are moto in
   it: their CPU time (and the GIL) is shared with the children's work.
2. Photos: 12 MP JPEGs (4000x3000, quality 90, ~3.8 MB) through the same chunk handler, one
   child, for the demo bundle and the ViT-B/32-shaped random-weight bundles (fp32 and int8, cached
   in ``benchmarks/.cache`` by ``_common`` and shared with ``benchmarks/embed.py``), at 1 thread
   and 2, with where the time goes (the ``Timings`` of every
   ``Ingestor.backfill`` call); then again with S3 slowed to a Lambda's download rate
   (``EmulatedLink``: every ``GetObject`` waits for a first byte and for its bytes to pass one
   link shared by the function's reads), to measure how much of the read hides behind the
   decode and the model (a chunk reads the next batch while it embeds this one).
3. 10M images on AWS at ``--aws-concurrency`` chunk Lambdas: time and cost from the photos'
   measured seconds per image, with every price and assumption written into the result.

Cases run one after the other (each is minutes long, interleaving would not help); the load
average is recorded with the result::

    python benchmarks/backfill.py                              # defaults: about 15 minutes
    python benchmarks/backfill.py --images 500 --photo-images 16 --concurrency 1 2

Prints markdown tables and writes ``benchmarks/results/backfill.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import json
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The handlers import as in the image (``backfill_chunk.app``); tools/ builds the B/32 bundles.
sys.path.insert(0, str(ROOT / "functions"))
sys.path.insert(1, str(ROOT / "tools"))

import boto3  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    environment,
    fp32_bundle,
    int8_bundle,
    markdown_table,
    write_results,
)
from imgsearch_devkit.demo.photos import COLOUR_PHOTOGRAPHS, photographs  # noqa: E402
from imgsearch_devkit.local.lambda_dispatch import (  # noqa: E402
    BACKFILL_HANDLERS,
    create_state_machine,
    install_lambda_dispatch,
    pipeline_routes,
)
from imgsearch_devkit.local.template import load_template  # noqa: E402
from moto import mock_aws  # noqa: E402

from imgsearch.backfill.layout import RunLayout  # noqa: E402
from imgsearch.backfill.listing import MANIFEST_WRITERS  # noqa: E402
from imgsearch.core.aws import Clients  # noqa: E402
from imgsearch.core.config import LAMBDA_VCPU_MB, Settings, lambda_threads  # noqa: E402
from imgsearch.ingest.pipeline import BatchReport, Ingestor, Timings  # noqa: E402
from imgsearch.model.bundle import bundle_model_id  # noqa: E402
from imgsearch.store import table_definition  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
DEMO = ROOT / "models" / "demo-clip"
DEFINITION = ROOT / "statemachine" / "backfill.asl.json"
TEMPLATE = load_template(ROOT / "template.yaml")
REGION = "us-east-1"
USER_BUCKET, SERVICE_BUCKET = "bench-photos", "imgsearch-bench-service"
TABLE = "imgsearch-bench-backfill"
BENCH, PHOTOS, WARMUP = "images/bench/", "images/photos/", "images/warmup/"
MODES = ("lookups", "force")
"""A plain backfill (a by-sha256 query per distinct image), and ``force`` (none)."""
WARMUP_IMAGES = 32

PRICES = {
    "lambda_gb_second_x86": 0.0000166667,
    "lambda_per_million_requests": 0.20,
    "dynamodb_per_million_wru": 0.625,
    "dynamodb_per_million_rru": 0.125,
    "s3_get_per_1000": 0.0004,
    "s3_list_per_1000": 0.005,
    "s3_put_per_1000": 0.005,
    "sfn_standard_per_1000_transitions": 0.025,
}
"""USD, us-east-1 list prices (Lambda x86, DynamoDB on-demand, S3 Standard, Step Functions
Standard). Not counted: CloudWatch Logs and metrics, X-Ray, data transfer (none in-region)."""


@dataclass(frozen=True)
class Aws:
    """What the 10M estimate assumes beyond the measurement (all written into the result)."""

    images: int = 10_000_000
    concurrency: int = 200
    account_concurrency: int = 1000
    """The default Lambda concurrency quota of an account and region."""
    target_seconds: float = 3600.0
    target_concurrency: int = 200
    chunk_size: int = 1000
    """``IMGSEARCH_BACKFILL_CHUNK_SIZE``'s default."""
    list_objects_per_call: int = 1_000_000
    """``IMGSEARCH_BACKFILL_LIST_OBJECTS_PER_CALL``'s default."""
    chunk_memory_mb: int = int(TEMPLATE["Parameters"]["BackfillChunkMemorySize"]["Default"])
    """``BackfillChunkFunction``'s MemorySize: the template's default."""
    list_memory_mb: int = 1024
    report_memory_mb: int = 1024
    batch_size: int = 16
    """``IMGSEARCH_EMBED_BATCH_SIZE``: images read together, then embedded in one call."""
    s3_mb_per_second: float = 90.0
    """Assumed S3 download rate of one function (its batch's GETs share it)."""
    s3_first_byte_seconds: float = 0.03
    dynamodb_round_trip_seconds: float = 0.01
    """Each batch waits for two DynamoDB round trips (the parallel by-sha256 queries, then the
    parallel conditional puts); the chunk's batch_get is one more per chunk."""
    chunk_overhead_seconds: float = 0.25
    """Per chunk: manifest GET, batch_get calls, result PUT, Lambda invoke."""
    list_page_seconds: float = 0.05
    """One ListObjectsV2 page of 1,000 keys; the listing runs before the Map, one page at a time."""
    manifest_put_seconds: float = 0.02
    """One chunk manifest's PutObject; ``MANIFEST_WRITERS`` run beside the listing."""
    report_seconds: float = 30.0
    """Finish: reading every chunk's result (16 at a time) and writing the report."""
    gsi_wru_per_item: int = 1
    """The by-sha256 index is KEYS_ONLY: its copy of each item is under 1 KB."""
    gsi_query_rru: float = 0.5
    """``find_by_sha256``: one eventually consistent GSI query per distinct image (<= 4 KB)."""
    batch_get_rru: float = 1.0
    """``batch_get`` is strongly consistent: 1 RRU per key (< 4 KB), found or not."""
    transitions_per_child: int = 3
    """A child runs EmbedChunk (ChunkFailed only on failure); counted as 3 to be safe
    (the child's start and end as well); retries add one each."""
    new_table_wru_per_second: int = 4000
    """A new on-demand table serves up to 4,000 WRU/s at once, then doubles its peak in 30 min."""


# -- images --------------------------------------------------------------------------------------

_RUNS = itertools.count(1)
_sources: list[Any] = []
_grain: dict[tuple[int, int], Any] = {}


def _photographs() -> list[Any]:
    if not _sources:
        _sources.extend(photographs(COLOUR_PHOTOGRAPHS))
    return _sources


def photo_variant(spec: tuple[int, int, int, int, float]) -> bytes:
    """Image ``n`` of a set: a random 4:3 crop of one photograph, scaled to width x height,
    maybe flipped, with film grain (a window of one noise field at a random offset), as a JPEG."""
    from PIL import Image, ImageChops

    n, width, height, quality, sigma = spec
    rng = np.random.default_rng(n)
    photo = _photographs()[n % len(COLOUR_PHOTOGRAPHS)]
    w, h = photo.size
    crop_w = min(w, h * width / height) * rng.uniform(0.6, 1.0)
    crop_h = crop_w * height / width
    x, y = rng.uniform(0, w - crop_w), rng.uniform(0, h - crop_h)
    image = photo.resize(
        (width, height), Image.Resampling.BICUBIC, box=(x, y, x + crop_w, y + crop_h)
    )
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    grain = _grain.get((width, height))
    if grain is None:  # Gaussian noise around 128 per channel, made once per size and process
        size = (width + 64, height + 64)
        grain = Image.merge("RGB", [Image.effect_noise(size, sigma) for _ in range(3)])
        _grain[(width, height)] = grain
    ox, oy = int(rng.integers(0, 64)), int(rng.integers(0, 64))
    window = grain.crop((ox, oy, ox + width, oy + height))
    image = ImageChops.add(image, window, scale=1.0, offset=-128)  # image + noise - 128
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def make_images(
    first: int, count: int, width: int, height: int, quality: int, sigma: float
) -> list[bytes]:
    """``count`` distinct JPEGs, made on every CPU (before anything is timed)."""
    specs = [(first + n, width, height, quality, sigma) for n in range(count)]
    workers = min(os.cpu_count() or 1, 4)
    if count < 8 or workers == 1:
        return [photo_variant(s) for s in specs]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(photo_variant, specs, chunksize=8)


def upload(s3: Any, prefix: str, images: Sequence[bytes]) -> None:
    for n, body in enumerate(images):
        s3.put_object(Bucket=USER_BUCKET, Key=f"{prefix}{n:06d}.jpg", Body=body)


class EmulatedLink:
    """S3 at one function's download rate: each ``GetObject`` response waits for a first byte,
    then for its bytes to pass one link that all of the client's reads share (what a Lambda's
    network is), before the caller gets it. Emulates AWS's network, changes none of our code."""

    def __init__(self, mb_per_second: float, first_byte_seconds: float) -> None:
        self.bytes_per_second = mb_per_second * 1e6
        self.first_byte = first_byte_seconds
        self._lock = threading.Lock()
        self._free_at = 0.0

    def attach(self, s3: Any) -> None:
        s3.meta.events.register("after-call.s3.GetObject", self._wait)

    def _wait(self, parsed: dict[str, Any], **_: Any) -> None:
        size = int(parsed.get("ContentLength") or 0)
        arrived = time.perf_counter() + self.first_byte
        with self._lock:
            self._free_at = max(self._free_at, arrived) + size / self.bytes_per_second
            done = self._free_at
        time.sleep(max(0.0, done - time.perf_counter()))


# -- the stack -----------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    report: dict[str, Any]
    timings: Timings
    chunk_seconds: float
    transitions: int


@dataclass
class Stack:
    """One bundle's backfill state machine and handlers, on the moto resources."""

    sfn: Any
    s3: Any
    dynamodb: Any
    arn: str
    model_id: str
    settings: Settings
    calls: list[Timings] = field(default_factory=list)

    def reset_table(self) -> None:
        with contextlib.suppress(self.dynamodb.exceptions.ResourceNotFoundException):
            self.dynamodb.delete_table(TableName=TABLE)
        self.dynamodb.create_table(**table_definition(TABLE))

    def run(self, prefix: str, chunk_size: int, max_concurrency: int, force: bool = False) -> Run:
        self.calls.clear()
        name = f"bench-{next(_RUNS)}-{os.getpid()}"  # runs share the service bucket
        payload = {
            "prefix": prefix,
            "chunk_size": chunk_size,
            "max_concurrency": max_concurrency,
            "force": force,
        }
        start = time.perf_counter()
        execution = self.sfn.start_execution(
            stateMachineArn=self.arn, name=name, input=json.dumps(payload)
        )["executionArn"]
        while True:
            described = self.sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        assert described["status"] == "SUCCEEDED", described
        layout = RunLayout(self.settings.backfill.prefix, name)
        report = self._json(layout.report)
        # Failed objects are reported (moto's in-process DynamoDB is not thread-safe: a query
        # iterating a table's items while another child writes one can raise), not fatal.
        assert report["embedded"] + report["failed"] == report["queued"], report
        total = Timings()
        for call in list(self.calls):
            for name_, value in asdict(call).items():
                setattr(total, name_, getattr(total, name_) + value)
        results = [
            self._json(item["Key"])
            for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=SERVICE_BUCKET, Prefix=layout.results
            )
            for item in page.get("Contents", [])
        ]
        history = self.sfn.get_paginator("get_execution_history").paginate(executionArn=execution)
        transitions = sum(
            e["type"].endswith("StateEntered") for page in history for e in page["events"]
        )
        return Run(seconds, report, total, sum(r["seconds"] for r in results), transitions)

    def _json(self, key: str) -> dict[str, Any]:
        return json.loads(self.s3.get_object(Bucket=SERVICE_BUCKET, Key=key)["Body"].read())


@contextlib.contextmanager
def observe_timings(calls: list[Timings]) -> Iterator[None]:
    """Keep the ``Timings`` of every ``Ingestor.backfill`` call while in the block: the chunk
    result and its log line keep only ``model_images`` of them. Observes, changes nothing."""
    original = Ingestor.backfill

    def backfill(self: Ingestor, *args: Any, **kwargs: Any) -> BatchReport:
        report = original(self, *args, **kwargs)
        calls.append(report.timings)
        return report

    Ingestor.backfill = backfill  # type: ignore[method-assign]
    try:
        yield
    finally:
        Ingestor.backfill = original  # type: ignore[method-assign]


@contextlib.contextmanager
def backfill_stack(
    bundle: Path,
    threads: int,
    topic: str,
    cache: Path,
    label: str,
    max_concurrency: int,
    link: EmulatedLink | None = None,
) -> Iterator[Stack]:
    """The backfill of ``tests/integration/backfill_support.py``, for ``bundle``; ``link``
    slows the handlers' S3 reads to a Lambda's."""
    settings = Settings.from_env(
        {
            "AWS_REGION": REGION,
            "IMGSEARCH_BUCKET": SERVICE_BUCKET,
            "IMGSEARCH_IMAGE_BUCKET": USER_BUCKET,
            "IMGSEARCH_TABLE": TABLE,
            "IMGSEARCH_ALERTS_TOPIC_ARN": topic,
            "IMGSEARCH_MODEL_URI": str(bundle),
            "IMGSEARCH_MODEL_CACHE_DIR": str(cache),
            "IMGSEARCH_THREADS": str(threads),
            "IMGSEARCH_BACKFILL_MAX_CONCURRENCY": str(max_concurrency),
            "POWERTOOLS_SERVICE_NAME": "imgsearch-backfill-bench",
            "POWERTOOLS_METRICS_NAMESPACE": "imgsearch-bench",
        }
    )
    clients = Clients.for_settings(settings)
    if link:
        link.attach(clients.s3)
    routes = pipeline_routes(settings, clients, handlers=BACKFILL_HANDLERS)
    stack = Stack(
        sfn=boto3.client("stepfunctions", region_name=REGION),
        s3=boto3.client("s3", region_name=REGION),
        dynamodb=boto3.client("dynamodb", region_name=REGION),
        arn="",
        model_id=bundle_model_id(str(bundle), clients.s3, str(cache)),
        settings=settings,
    )
    with install_lambda_dispatch(routes), observe_timings(stack.calls):
        stack.arn = create_state_machine(
            stack.sfn,
            boto3.client("lambda", region_name=REGION),
            boto3.client("iam", region_name=REGION),
            DEFINITION,
            {"ServiceBucket": SERVICE_BUCKET, "BackfillPrefix": settings.backfill.prefix},
            name=f"imgsearch-backfill-{label}",
        )
        stack.reset_table()
        stack.run(WARMUP, WARMUP_IMAGES // 2, 2)  # onnxruntime's first runs allocate
        yield stack


def item_bytes(item: dict[str, Any]) -> int:
    """A DynamoDB item's size as billed: attribute names plus values."""

    def value(v: dict[str, Any]) -> int:
        ((kind, raw),) = v.items()
        if kind == "S":
            return len(raw.encode())
        if kind == "B":
            return len(raw)
        if kind == "N":
            return len(raw.lstrip("-").replace(".", "")) // 2 + 1
        if kind == "M":
            return 3 + sum(len(k.encode()) + value(x) + 1 for k, x in raw.items())
        if kind == "L":
            return 3 + sum(value(x) + 1 for x in raw)
        return 1  # BOOL, NULL

    return sum(len(name.encode()) + value(v) for name, v in item.items())


def table_item_bytes(dynamodb: Any) -> float:
    items = dynamodb.scan(TableName=TABLE, Limit=50)["Items"]
    return sum(item_bytes(i) for i in items) / max(1, len(items))


# -- the 10M estimate ----------------------------------------------------------------------------


def read_seconds(mb_per_image: float, aws: Aws) -> float:
    """S3 time per image of a batch read at once over one function's link."""
    return mb_per_image / aws.s3_mb_per_second + aws.s3_first_byte_seconds / aws.batch_size


def overlap(row: dict[str, Any], aws: Aws) -> dict[str, float]:
    """How much of the emulated read the chunk hid behind its decode and model call: 1 when
    the run with the link took no longer than without it (plus the first batch's read, which
    nothing hides), 0 when it took the read's whole time on top."""
    plain, linked = row[f"threads_{row['link_threads']}"]["chunk_s"], row["link"]["chunk_s"]
    read = read_seconds(row["mb"], aws)
    first_batch = read * aws.batch_size / row["images"]
    hidden = 1.0 - (linked - plain - first_batch) / read
    return {
        "read_s": read,
        "without_link_s": plain,
        "with_link_s": linked,
        "serial_s": plain + read,
        "overlapped_s": max(plain, read) + first_batch,
        "hidden_share": min(1.0, max(0.0, hidden)),
    }


def lambda_estimate(photo: dict[str, Any], aws: Aws, efficiency: float) -> dict[str, Any]:
    """Seconds per image of the chunk function on Lambda, from the 1-thread measurement, each
    thread its vCPUs carry at ``efficiency``, and the share of the read that the run with the
    emulated link hid (``overlap``)."""
    vcpus = aws.chunk_memory_mb / LAMBDA_VCPU_MB
    threads = lambda_threads({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(aws.chunk_memory_mb)})
    speedup = max(1.0, efficiency * min(vcpus, threads))
    cpu = (photo["decode_preprocess_s"] + photo["model_s"] + photo["sha256_s"]) / speedup
    read = read_seconds(photo["mb_per_image"], aws)
    hidden = photo["hidden_share"]
    # The longer of the two sets the pace; what of the shorter was not hidden adds to it.
    overlapped = max(cpu, read) + (1.0 - hidden) * min(cpu, read)
    other_io = (
        2 * aws.dynamodb_round_trip_seconds / aws.batch_size
        + (aws.chunk_overhead_seconds + read * aws.batch_size) / aws.chunk_size
    )
    return {
        "vcpus": round(vcpus, 2),
        "threads": threads,
        "thread_efficiency": efficiency,
        "cpu_speedup": round(speedup, 3),
        "cpu_s_1_thread": cpu * speedup,
        "cpu_s": cpu,
        "read_s": read,
        "read_hidden_share": hidden,
        "other_io_s": other_io,
        "seconds_per_image": overlapped + other_io,
    }


def aws_estimate(seconds_per_image: float, item_size: float, aws: Aws) -> dict[str, Any]:
    images, chunks = aws.images, math.ceil(aws.images / aws.chunk_size)
    pages = math.ceil(images / 1000)
    listing_calls = math.ceil(images / aws.list_objects_per_call)
    listing_s = (
        max(pages * aws.list_page_seconds, chunks * aws.manifest_put_seconds / MANIFEST_WRITERS)
        + aws.manifest_put_seconds
    )
    embed_s = images * seconds_per_image / aws.concurrency + seconds_per_image * aws.chunk_size
    total_s = listing_s + embed_s + aws.report_seconds
    chunk_gb_s = images * seconds_per_image * aws.chunk_memory_mb / 1024
    other_gb_s = (
        listing_s * aws.list_memory_mb / 1024 + aws.report_seconds * aws.report_memory_mb / 1024
    )
    requests = chunks + listing_calls + 1
    wru = math.ceil(item_size / 1024) + aws.gsi_wru_per_item
    rru = aws.batch_get_rru + aws.gsi_query_rru
    gets = images + chunks * 2 + 1  # images, manifests, the results read by Finish, chunks.json
    puts = chunks * 2 + 2 + 3  # manifests, results, chunks.json, report, ResultWriter files
    # The parent: List/ListMore and Listed? per listing call, EmbedChunks, Finish (moto's
    # history of the measured runs, one listing call each, has 4).
    transitions = chunks * aws.transitions_per_child + 2 * listing_calls + 2
    cost = {
        "lambda_compute": (chunk_gb_s + other_gb_s) * PRICES["lambda_gb_second_x86"],
        "lambda_requests": requests / 1e6 * PRICES["lambda_per_million_requests"],
        "dynamodb_writes": images * wru / 1e6 * PRICES["dynamodb_per_million_wru"],
        "dynamodb_reads": images * rru / 1e6 * PRICES["dynamodb_per_million_rru"],
        "s3": gets / 1000 * PRICES["s3_get_per_1000"]
        + pages / 1000 * PRICES["s3_list_per_1000"]
        + puts / 1000 * PRICES["s3_put_per_1000"],
        "step_functions": transitions / 1000 * PRICES["sfn_standard_per_1000_transitions"],
    }
    needed = images * seconds_per_image / max(1.0, aws.target_seconds - listing_s)
    return {
        "seconds_per_image": seconds_per_image,
        "chunks": chunks,
        "listing_seconds": listing_s,
        "embed_seconds": embed_s,
        "total_seconds": total_s,
        "meets_target": total_s <= aws.target_seconds and aws.concurrency <= aws.target_concurrency,
        "concurrency_for_target": math.ceil(needed),
        "share_of_account_concurrency": aws.concurrency / aws.account_concurrency,
        "item_bytes": round(item_size),
        "wru_per_image": wru,
        "rru_per_image": rru,
        "wru_per_second": aws.concurrency / seconds_per_image * wru,
        "lambda_gb_seconds": chunk_gb_s + other_gb_s,
        "lambda_requests": requests,
        "s3_requests": {"get": gets, "list": pages, "put": puts},
        "state_transitions": transitions,
        "cost_usd": {**cost, "total": sum(cost.values())},
    }


# -- main ----------------------------------------------------------------------------------------


SIZING_MB = (3008, 5307, 7076, 10240)
"""Chunk function sizes the estimate is also made at: 1.7, 3, 4 and 5.8 vCPUs."""


def brief(
    measured: dict[str, Any], efficiency: float, row: dict[str, Any], aws: Aws
) -> dict[str, Any]:
    """The estimate's headline figures at ``aws.chunk_memory_mb``."""
    on_lambda = lambda_estimate(measured, aws, efficiency)
    estimate = aws_estimate(on_lambda["seconds_per_image"], row["item_bytes"], aws)
    return {
        "vcpus": on_lambda["vcpus"],
        "threads": on_lambda["threads"],
        "seconds_per_image": on_lambda["seconds_per_image"],
        "total_seconds": estimate["total_seconds"],
        "meets_target": estimate["meets_target"],
        "cost_usd": estimate["cost_usd"]["total"],
    }


def per_image(run: Run) -> dict[str, float]:
    t, images = run.timings, max(1, run.timings.model_images)
    return {
        "decode_preprocess_s": t.preprocess / images,
        "model_s": t.model / images,
        "s3_read_s": t.s3_read / images,
        "dynamodb_s": t.dynamodb / images,
        "chunk_s": run.chunk_seconds / images,
    }


def usd(price: float) -> str:
    return f"{price:.10f}".rstrip("0")


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000, help="1024x768 images per setting")
    parser.add_argument("--chunk-size", type=int, default=100, help="objects per Map child")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--force-concurrency",
        type=int,
        nargs="*",
        default=[1, 2],
        help="also run these with force (no by-sha256 queries, which moto answers by scanning "
        "and sorting the whole table); none: skip",
    )
    parser.add_argument("--photo-images", type=int, default=60, help="12 MP JPEGs per model")
    parser.add_argument("--aws-images", type=int, default=Aws.images)
    parser.add_argument("--aws-concurrency", type=int, default=Aws.concurrency)
    parser.add_argument("--no-b32", action="store_true", help="photos with the demo bundle only")
    parser.add_argument("--rounds", type=int, default=3, help="turns of the photo cases")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--demo", type=Path, default=DEMO, help="the demo bundle folder")
    parser.add_argument(
        "--thread-efficiency",
        type=float,
        default=0.0,
        help="speed-up per thread of the chunk function on Lambda (default: half the 2-thread "
        "speed-up measured here)",
    )
    args = parser.parse_args(argv)
    command = sys.argv[1:] if argv is None else argv
    # moto's ASL parser warns on every parse that it ignores ToleratedFailurePercentage (the
    # ASL's chunks record their own failures on the Catch path, so the runs do not depend on it).
    logging.getLogger("moto.stepfunctions.parser.asl.parse.preprocessor").setLevel(logging.ERROR)
    aws = Aws(images=args.aws_images, concurrency=args.aws_concurrency)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION=REGION
    )

    bundles: dict[str, Path] = {"demo-clip": args.demo}
    if not args.no_b32:
        try:
            bundles["ViT-B/32 fp32 (random)"] = fp32_bundle(args.cache, threads=2)[1]
            bundles["ViT-B/32 int8 (random)"] = int8_bundle(args.cache, threads=2)
        except ImportError as exc:  # torch/transformers missing: say so, measure the demo only
            print(f"cannot build the ViT-B/32 bundles ({exc}): demo bundle only", flush=True)

    started = time.perf_counter()
    print(f"making {args.images} 1024x768 and {args.photo_images} 4000x3000 JPEGs", flush=True)
    small = make_images(0, args.images, 1024, 768, 88, 6.0)
    warm = make_images(10**6, WARMUP_IMAGES, 1024, 768, 88, 6.0)
    photos = make_images(2 * 10**6, args.photo_images, 4000, 3000, 90, 10.0)
    assert len({hashlib.sha256(b).digest() for b in small + warm + photos}) == len(
        small + warm + photos
    ), "two images with the same bytes"
    photo_mb = sum(len(b) for b in photos) / len(photos) / 1e6
    started_sha = time.perf_counter()
    for body in photos:
        hashlib.sha256(body).hexdigest()
    sha256_s = (time.perf_counter() - started_sha) / len(photos)
    print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)

    scaling: list[dict[str, Any]] = []
    photo_rows: list[dict[str, Any]] = []
    devnull = open(os.devnull, "w")  # noqa: SIM115 - the handlers' logs and EMF for the whole run
    with (
        tempfile.TemporaryDirectory() as models,
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
    ):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=USER_BUCKET)
        s3.create_bucket(Bucket=SERVICE_BUCKET)
        topic = boto3.client("sns", region_name=REGION).create_topic(Name="alerts")["TopicArn"]
        upload(s3, WARMUP, warm)
        upload(s3, BENCH, small)
        upload(s3, PHOTOS, photos)
        del small, warm

        def stack(bundle: Path, threads: int, label: str, link: EmulatedLink | None = None) -> Any:
            return backfill_stack(
                bundle,
                threads,
                topic,
                Path(models),
                label,
                max(4, *args.concurrency, *args.force_concurrency),
                link,
            )

        print(f"\n1. Distributed Map, demo bundle, {args.images} images", flush=True)
        cases = [(MODES[0], n) for n in args.concurrency]
        cases += [(MODES[1], n) for n in args.force_concurrency]
        with contextlib.redirect_stdout(devnull), stack(args.demo, 1, "map") as demo:
            for mode, n in cases:
                demo.reset_table()
                run = demo.run(BENCH, args.chunk_size, n, force=mode == MODES[1])
                assert run.report["reused"] == 0, "the sha256 reuse spared a model call"
                phases = per_image(run)
                scaling.append(
                    {
                        "mode": mode,
                        "max_concurrency": n,
                        "images": args.images,
                        "chunks": run.report["chunks"],
                        "seconds": run.seconds,
                        "images_per_second": args.images / run.seconds,
                        "embedded": run.report["embedded"],
                        "failed": run.report["failed"],
                        "failures": run.report["failures"],
                        "parent_state_transitions": run.transitions,
                        "per_image_in_children": phases,
                        "load_average_1": round(os.getloadavg()[0], 2),
                    }
                )
                print(
                    f"  {mode}, {n} children: {args.images / run.seconds:.1f} images/s, "
                    f"{run.report['failed']} failed; ms/image: "
                    + ", ".join(f"{k} {ms(v)}" for k, v in phases.items()),
                    file=sys.stderr,
                    flush=True,
                )

        print(f"\n2. {args.photo_images} 12 MP photos, one child", flush=True)
        for label, bundle in bundles.items():
            row: dict[str, Any] = {"model": label, "images": len(photos), "mb": photo_mb}
            # The link at 2 threads: nearer the Lambda's balance of CPU and I/O than 1. The three
            # cases take turns, ``--rounds`` times, and each keeps its median run: this VM's
            # speed drifts by a fifth between minutes.
            link = EmulatedLink(aws.s3_mb_per_second, aws.s3_first_byte_seconds)
            cases = [("threads_1", 1, None), ("threads_2", 2, None), ("link", 2, link)]
            row["link_threads"] = 2
            runs: dict[str, list[dict[str, float]]] = {case: [] for case, _, _ in cases}
            for turn in range(args.rounds):
                for case, threads, emulated in cases:
                    with (
                        contextlib.redirect_stdout(devnull),
                        stack(bundle, threads, f"photo-{case}-{turn}", emulated) as photo,
                    ):
                        photo.reset_table()
                        run = photo.run(PHOTOS, min(len(photos), 1000), 1)
                        assert run.report["failed"] == 0, run.report
                        assert run.timings.model_images == len(photos), run.report
                        runs[case].append({**per_image(run), "wall_s": run.seconds / len(photos)})
                        row["model_id"] = photo.model_id
                        row["item_bytes"] = table_item_bytes(photo.dynamodb)
            for case, measured_runs in runs.items():
                ordered = sorted(measured_runs, key=lambda r: r["chunk_s"])
                row[case] = {
                    **ordered[len(ordered) // 2],
                    "chunk_s_runs": [r["chunk_s"] for r in measured_runs],
                }
            row["overlap"] = overlap(row, aws)
            one, two = row["threads_1"], row["threads_2"]
            cpu = ("decode_preprocess_s", "model_s")
            row["speedup_2_threads"] = sum(one[k] for k in cpu) / sum(two[k] for k in cpu)
            row["sha256_s"] = sha256_s
            photo_rows.append(row)
            print(f"  {label}: {ms(one['chunk_s'])} ms/image", file=sys.stderr, flush=True)
    devnull.close()

    for s in scaling:  # against the same mode's run with the fewest children
        base = min(
            (b for b in scaling if b["mode"] == s["mode"]), key=lambda b: b["max_concurrency"]
        )
        s["speedup"] = s["images_per_second"] / base["images_per_second"]
        s["efficiency"] = s["speedup"] / (s["max_concurrency"] / base["max_concurrency"])
    estimates = []
    for row in photo_rows:
        measured = {
            "decode_preprocess_s": row["threads_1"]["decode_preprocess_s"],
            "model_s": row["threads_1"]["model_s"],
            "sha256_s": row["sha256_s"],
            "mb_per_image": row["mb"],
            "hidden_share": row["overlap"]["hidden_share"],
        }
        efficiency = args.thread_efficiency or row["speedup_2_threads"] / 2
        on_lambda = lambda_estimate(measured, aws, efficiency)
        # The bound where no thread beyond the first gains anything.
        slowest = aws_estimate(lambda_estimate(measured, aws, 0.0)["seconds_per_image"], 0, aws)
        estimates.append(
            {
                "model": row["model"],
                "lambda": on_lambda,
                **aws_estimate(on_lambda["seconds_per_image"], row["item_bytes"], aws),
                "without_thread_gain": {
                    k: slowest[k]
                    for k in ("seconds_per_image", "total_seconds", "concurrency_for_target")
                },
                "by_memory": [
                    {
                        "memory_mb": mb,
                        **brief(measured, efficiency, row, replace(aws, chunk_memory_mb=mb)),
                    }
                    for mb in SIZING_MB
                ],
            }
        )

    env = environment("onnxruntime", "pillow", "numpy", "moto", "boto3")
    print(
        f"\nCPU: {env['cpu']} ({env['cpu_count']} cores), load average "
        f"{env['load_average_1_5_15']}; S3/DynamoDB/Step Functions = moto in-process\n"
    )
    print(
        f"Distributed Map, demo bundle, {args.images} 1024x768 JPEGs, chunks of "
        f"{args.chunk_size}, IMGSEARCH_THREADS=1 per child (ms/image are summed over children):\n"
    )
    print(
        markdown_table(
            [
                "by-sha256 lookups",
                "children",
                "images/s",
                "failed",
                "speed-up vs 1",
                "efficiency",
                "decode+preprocess ms",
                "model ms",
                "S3 read ms (moto)",
                "DynamoDB ms (moto)",
            ],
            [
                [
                    "yes" if s["mode"] == MODES[0] else "no (force)",
                    s["max_concurrency"],
                    f"{s['images_per_second']:.1f}",
                    s["failed"],
                    f"{s['speedup']:.2f}x",
                    f"{100 * s['efficiency']:.0f} %",
                    ms(s["per_image_in_children"]["decode_preprocess_s"]),
                    ms(s["per_image_in_children"]["model_s"]),
                    ms(s["per_image_in_children"]["s3_read_s"]),
                    ms(s["per_image_in_children"]["dynamodb_s"]),
                ]
                for s in scaling
            ],
        )
    )
    print(
        f"\n12 MP JPEGs (4000x3000, q90, {photo_mb:.1f} MB), one child, ms per image "
        "(1 thread; and the 2-thread speed-up of decode+model):\n"
    )
    print(
        markdown_table(
            [
                "model",
                "through the handler",
                "decode+preprocess",
                "model",
                "S3 read+sha256 (moto)",
                "DynamoDB (moto)",
                "2 threads",
            ],
            [
                [
                    r["model"],
                    ms(r["threads_1"]["chunk_s"]),
                    ms(r["threads_1"]["decode_preprocess_s"]),
                    ms(r["threads_1"]["model_s"]),
                    ms(r["threads_1"]["s3_read_s"]),
                    ms(r["threads_1"]["dynamodb_s"]),
                    f"{r['speedup_2_threads']:.2f}x",
                ]
                for r in photo_rows
            ],
        )
    )
    print(
        f"\nThe same photos with S3 at {aws.s3_mb_per_second:g} MB/s per function and "
        f"{aws.s3_first_byte_seconds * 1000:g} ms to the first byte (EmulatedLink), "
        f"{photo_rows[0]['link_threads']} threads, ms per image through the handler:\n"
    )
    print(
        markdown_table(
            [
                "model",
                "without the link",
                "read alone",
                "with the link",
                "if not overlapped",
                "if fully overlapped",
                "read hidden",
            ],
            [
                [
                    r["model"],
                    ms(r["overlap"]["without_link_s"]),
                    ms(r["overlap"]["read_s"]),
                    ms(r["overlap"]["with_link_s"]),
                    ms(r["overlap"]["serial_s"]),
                    ms(r["overlap"]["overlapped_s"]),
                    f"{100 * r['overlap']['hidden_share']:.0f} %",
                ]
                for r in photo_rows
            ],
        )
    )
    print(
        f"\n{aws.images / 1e6:g}M images on AWS, {aws.concurrency} chunk Lambdas "
        f"({100 * aws.concurrency / aws.account_concurrency:.0f} % of the default "
        f"{aws.account_concurrency}), chunks of {aws.chunk_size}, {aws.chunk_memory_mb} MB:\n"
    )
    print(
        markdown_table(
            [
                "model",
                "s/image on Lambda (est.)",
                "listing",
                "total time",
                "<= 1 h?",
                "Lambdas for 1 h",
                "WRU/s",
                "Lambda $",
                "DynamoDB $",
                "S3 + SFN $",
                "total $",
            ],
            [
                [
                    e["model"],
                    f"{e['seconds_per_image']:.3f}",
                    f"{e['listing_seconds'] / 60:.0f} min",
                    f"{e['total_seconds'] / 60:.0f} min",
                    "yes" if e["meets_target"] else "no",
                    e["concurrency_for_target"],
                    f"{e['wru_per_second']:,.0f}",
                    f"{e['cost_usd']['lambda_compute'] + e['cost_usd']['lambda_requests']:.2f}",
                    f"{e['cost_usd']['dynamodb_writes'] + e['cost_usd']['dynamodb_reads']:.2f}",
                    f"{e['cost_usd']['s3'] + e['cost_usd']['step_functions']:.2f}",
                    f"{e['cost_usd']['total']:.2f}",
                ]
                for e in estimates
            ],
        )
    )
    print(
        f"\nThe same {aws.images / 1e6:g}M images at other chunk function sizes (same "
        "measurement and assumptions):\n"
    )
    print(
        markdown_table(
            ["model", "MB", "vCPU / threads", "s/image", "total time", "<= 1 h?", "total $"],
            [
                [
                    e["model"],
                    b["memory_mb"],
                    f"{b['vcpus']:g} / {b['threads']}",
                    f"{b['seconds_per_image']:.3f}",
                    f"{b['total_seconds'] / 60:.0f} min",
                    "yes" if b["meets_target"] else "no",
                    f"{b['cost_usd']:.2f}",
                ]
                for e in estimates
                for b in e["by_memory"]
            ],
        )
    )
    first = estimates[0]["lambda"]
    print(
        f"\nAssumed (an estimate): Lambda s/image = (decode+preprocess + model + sha256, 1 "
        f"thread here) / {first['cpu_speedup']:g} ({aws.chunk_memory_mb} MB = "
        f"{first['vcpus']} vCPU running {first['threads']} threads at "
        f"{100 * first['thread_efficiency']:.0f} % each, a Lambda vCPU as fast as a core here), "
        f"beside the S3 read (MB / {aws.s3_mb_per_second:g} MB/s + "
        f"{aws.s3_first_byte_seconds:g} s first byte per batch of {aws.batch_size}): the longer "
        "sets the pace, and the share of the shorter that the run with the link did not hide "
        f"adds to it; + 2 x {aws.dynamodb_round_trip_seconds:g} s DynamoDB per batch and a "
        f"chunk's first read and {aws.chunk_overhead_seconds:g} s overhead per chunk; listing "
        f"{aws.list_page_seconds:g} s per page of 1,000 keys, with {aws.manifest_put_seconds:g} "
        f"s manifest writes {MANIFEST_WRITERS} at a time beside it, all before the Map starts. "
        f"Prices: Lambda ${usd(PRICES['lambda_gb_second_x86'])}/GB-s + "
        f"${PRICES['lambda_per_million_requests']}/1M requests, DynamoDB on-demand "
        f"${PRICES['dynamodb_per_million_wru']}/1M WRU and ${PRICES['dynamodb_per_million_rru']}"
        f"/1M RRU (WRU/image: the item + its KEYS_ONLY by-sha256 copy; RRU/image: "
        f"{aws.batch_get_rru:g} strongly consistent batch_get + {aws.gsi_query_rru:g} GSI "
        f"query), S3 ${PRICES['s3_get_per_1000']}/1k GET, ${PRICES['s3_list_per_1000']}/1k LIST"
        f", ${PRICES['s3_put_per_1000']}/1k PUT, Step Functions "
        f"${PRICES['sfn_standard_per_1000_transitions']}/1k transitions "
        f"({aws.transitions_per_child} per child). A new on-demand table serves "
        f"{aws.new_table_wru_per_second:,} WRU/s at once."
    )
    path = write_results(
        "backfill",
        {
            "environment": env,
            "command": " ".join(["python benchmarks/backfill.py", *command]),
            "seconds": round(time.perf_counter() - started, 1),
            "distributed_map": {
                "model": "demo-clip",
                "image_size": "1024x768",
                "chunk_size": args.chunk_size,
                "threads_per_child": 1,
                "settings": scaling,
            },
            "photos": {"image_size": "4000x3000", "quality": 90, "models": photo_rows},
            "aws": {"prices_usd": PRICES, "assumptions": asdict(aws), "estimates": estimates},
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
