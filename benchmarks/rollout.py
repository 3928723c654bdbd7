"""Model rollout time as a function of collection size, query latency during the swap, the query
function's memory while it holds two models, and what a 10M-image rollout would take and cost on
AWS.

1. Rollout time: moto runs the three real state machines in this process (the model rollout
   nests the backfill and the index pipeline, ``startExecution.sync:2``) and
   ``imgsearch_devkit.local.lambda_dispatch`` routes their Lambda tasks to the real handlers,
   wired as ``tests/integration/test_model_rollout.py`` wires them. For each size a fresh moto
   world gets that many photo-like 640x480 JPEGs (cut, scaled, flipped and grained from
   scikit-image's photographs: every image has its own bytes), a small golden set (a few text
   queries, each relevant to the images of one photograph), and the demo model (models/demo-clip)
   serving: a backfill run (``force``: seeding is not measured) and an index pipeline run. The
   candidate is the demo bundle under another version (same weights, another model id), registered
   with ``register_model``; the rollout execution is timed end to end and per state (Begin,
   WaitForWriters, Backfill, Index, Promote) from its history, and the nested executions' states
   are in the JSON. ``IMGSEARCH_WRITE_MODELS_SECONDS`` is small here (default 0.3 s, so
   WaitForWriters waits 1 s); on AWS it is 10 s (a 30 s wait).
2. Queries during the swap: one client thread calls the real query handler (``query.app.build``)
   with text queries, one call at a time (a lock: a Lambda environment serves one request at a
   time), for ``--before`` seconds, for the whole rollout, and ``--after`` seconds after it;
   p50/p99 and failed queries per phase. Targets: zero failed queries, p99 during within 10 % of
   before. The CPU is shared with the rollout itself (moto, the backfill's children and the
   index build run in this process), which a Lambda query function does not share: a miss of
   the p99 target here is mostly that contention.
3. Memory: the RSS of this process before, during and after (a rough proxy: the process also
   holds moto, the backfill's models and the index builds), with how many models the query
   service held; and, in a fresh process, the RSS of what a query sandbox holds while it swaps
   (its own bundle, both towers, plus the candidate's text tower) for the ViT-B/32-shaped int8
   bundle if ``benchmarks/.cache/int8`` holds it (``benchmarks/embed.py`` or ``backfill.py``
   builds it), against the query function's MemorySize.
4. 10M images on AWS: the backfill's time and cost (``benchmarks/results/backfill.json``, else
   the README's Backfill figures), the index build (README / docs/pipeline.md figures, n log n
   from 1M) and the wait, with the source of every number in the result.

Sizes run one after the other (each is minutes long); the load average is recorded::

    python benchmarks/rollout.py                          # defaults: 500, 1000, 2000 images
    python benchmarks/rollout.py --sizes 50 100 --before 3 --after 3   # a smoke test

Prints markdown tables and writes ``benchmarks/results/rollout.json``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The handlers import as in the image (``query.app``, ``backfill_chunk.app``, ...).
sys.path.insert(0, str(ROOT / "functions"))

import boto3  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from _common import (  # noqa: E402
    api_event,
    environment,
    markdown_table,
    percentile,
    write_results,
)
from backfill import make_images  # noqa: E402
from imgsearch_devkit.demo.photos import COLOUR_PHOTOGRAPHS  # noqa: E402
from imgsearch_devkit.local.lambda_context import LambdaContext  # noqa: E402
from imgsearch_devkit.local.lambda_dispatch import (  # noqa: E402
    BACKFILL_HANDLERS,
    PIPELINE_HANDLERS,
    ROLLOUT_HANDLERS,
    create_rollout_machines,
    install_lambda_dispatch,
    pipeline_routes,
)
from imgsearch_devkit.local.moto_fixes import nested_executions  # noqa: E402
from imgsearch_devkit.ops.registry import register_model  # noqa: E402
from imgsearch_devkit.target import Target  # noqa: E402
from moto import mock_aws  # noqa: E402

from imgsearch.catalog.current import read_current  # noqa: E402
from imgsearch.core.aws import Clients  # noqa: E402
from imgsearch.core.config import Settings  # noqa: E402
from imgsearch.rollout.steps import WAIT_FACTOR  # noqa: E402
from imgsearch.store import table_definition  # noqa: E402

DEMO = ROOT / "models" / "demo-clip"
INT8 = ROOT / "benchmarks" / ".cache" / "int8"
MACHINES = ROOT / "statemachine"
BACKFILL_RESULT = ROOT / "benchmarks" / "results" / "backfill.json"
REGION = "us-east-1"
BUCKET, TABLE = "imgsearch-bench-rollout", "imgsearch-bench-rollout-embeddings"
PREFIX = "images/"
STATES = ("Begin", "WaitForWriters", "Backfill", "Index", "Promote")
PHASES = ("before", "during", "after")
DEFAULT_BACKFILL_CONCURRENCY = 50
"""``BackfillMaxConcurrency``'s default in template.yaml: the cap a rollout's backfill runs at."""
QUERY_MEMORY_MB = 2048
"""``QueryFunction``'s MemorySize in template.yaml."""
AWS_WRITE_MODELS_SECONDS = 10.0
"""``IMGSEARCH_WRITE_MODELS_SECONDS``'s default (core/config.py): WaitForWriters waits 3x."""
GOLDEN = {
    "astronaut": "an astronaut in a space suit",
    "coffee": "a cup of coffee",
    "chelsea": "a cat",
    "rocket": "a rocket on the launch pad",
}
"""Golden queries: each is relevant to the images cut from one of ``COLOUR_PHOTOGRAPHS``."""
QUERIES = [*GOLDEN.values(), "stars in the night sky", "cells under a microscope", "an eye"]
PRICE_LAMBDA_GB_SECOND = 0.0000166667
PRICE_DYNAMODB_PER_MILLION_RRU = 0.125
# README / docs/pipeline.md figures the 10M projection uses when no result file says otherwise.
README_BACKFILL = {
    "model": "ViT-B/32 int8 (random)",
    "seconds_per_image": 0.054,
    "total_seconds": 55 * 60,
    "listing_seconds": 0.0,
    "cost_usd": 88.0,
    "concurrency": 200,
    "source": "README.md, Backfill table (10M images, 200 chunk Lambdas)",
}
INDEX_FIGURES = {
    "build_cpu_seconds_1m": 1324.0,
    "build_seconds_1m_6_vcpus": 227.0,
    "snapshot_items_per_second": 15515.0,
    "lambda_vectors_limit": 3_000_000,
    "build_memory_mb": 10240,
    "snapshot_memory_mb": 1769,
    "validate_memory_mb": 3008,
    "scan_bytes_per_million": 1.1e9,
    "source": "README.md 'Index build' and docs/pipeline.md 'One Lambda's limit and beyond': "
    "1M usearch f16 build 1,324 CPU s, ~227 s on 6 vCPUs (extrapolated there), Snapshot "
    "15,515 items/s, ~1.1 GB of DynamoDB reads per 1M items, one 10,240 MB Build Lambda "
    "rebuilds ~3M vectors in 15 min; memory sizes from template.yaml",
}


# -- the world -----------------------------------------------------------------------------------


@dataclass
class World:
    s3: Any
    sfn: Any
    settings: Settings
    machines: dict[str, str]
    query: Any
    """The built query handler (``.api.service`` is its SearchService)."""

    @property
    def service(self) -> Any:
        return self.query.api.service

    def start(self, machine: str, payload: dict[str, Any]) -> str:
        return self.sfn.start_execution(
            stateMachineArn=self.machines[machine],
            name=f"{machine}-{uuid.uuid4().hex[:8]}",
            input=json.dumps(payload),
        )["executionArn"]

    def wait(self, arn: str, timeout: float = 1800) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (described := self.sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{arn} still running after {timeout:.0f} s")
            time.sleep(0.2)
        return described

    def run(self, machine: str, payload: dict[str, Any]) -> dict[str, Any]:
        described = self.wait(self.start(machine, payload))
        assert described["status"] == "SUCCEEDED", described
        return described


@contextlib.contextmanager
def world(tmp: Path, args: argparse.Namespace) -> Iterator[World]:
    """The three state machines and the query handler of ``test_model_rollout.py``, on moto."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        boto3.client("dynamodb", region_name=REGION).create_table(**table_definition(TABLE))
        topic = boto3.client("sns", region_name=REGION).create_topic(Name="alerts")["TopicArn"]
        settings = Settings.from_env(
            {
                "AWS_REGION": REGION,
                "IMGSEARCH_BUCKET": BUCKET,
                "IMGSEARCH_TABLE": TABLE,
                "IMGSEARCH_ALERTS_TOPIC_ARN": topic,
                "IMGSEARCH_MODEL_URI": str(DEMO),
                "IMGSEARCH_MODEL_CACHE_DIR": str(tmp / "models"),
                "IMGSEARCH_INDEX_CACHE_DIR": str(tmp / "indexes"),
                "IMGSEARCH_THREADS": "1",
                "IMGSEARCH_WRITE_MODELS_SECONDS": str(args.write_models_seconds),
                "IMGSEARCH_INDEX_REFRESH_SECONDS": "1",
                "IMGSEARCH_BACKFILL_CHUNK_SIZE": str(args.chunk_size),
                "IMGSEARCH_BACKFILL_MAX_CONCURRENCY": str(args.concurrency),
                "POWERTOOLS_SERVICE_NAME": "imgsearch-rollout-bench",
                "POWERTOOLS_METRICS_NAMESPACE": "imgsearch-bench",
            }
        )
        clients = Clients.for_settings(settings)
        handlers = {**PIPELINE_HANDLERS, **BACKFILL_HANDLERS, **ROLLOUT_HANDLERS}
        routes = pipeline_routes(settings, clients, handlers=handlers)
        with nested_executions(), install_lambda_dispatch(routes):
            sfn, lambda_, iam = (
                boto3.client(n, region_name=REGION) for n in ("stepfunctions", "lambda", "iam")
            )
            machines = create_rollout_machines(
                sfn, lambda_, iam, MACHINES, topic, BUCKET, settings.backfill.prefix
            )
            import query.app as query_app

            built = query_app.build(settings, Clients.for_settings(settings))
            yield World(s3, sfn, settings, machines, built)


def candidate_bundle(folder: Path) -> tuple[Path, str, str]:
    """The demo bundle's files under another version: (folder, champion id, candidate id)."""
    shutil.copytree(DEMO, folder)
    manifest = json.loads((folder / "model.json").read_text())
    version = "2" if str(manifest["version"]) != "2" else "3"
    (folder / "model.json").write_text(json.dumps({**manifest, "version": version}))
    name = manifest["name"]
    return folder, f"{name}@{manifest['version']}", f"{name}@{version}"


def seed(w: World, images: list[bytes]) -> dict[str, float]:
    """The images, the golden set, and the champion serving (a backfill and an index run)."""
    started = time.perf_counter()
    relevant: dict[str, list[str]] = {name: [] for name in GOLDEN}
    for n, body in enumerate(images):
        key = f"{PREFIX}{n:06d}.jpg"
        w.s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="image/jpeg")
        photograph = COLOUR_PHOTOGRAPHS[n % len(COLOUR_PHOTOGRAPHS)]  # as photo_variant picks
        if photograph in relevant:
            relevant[photograph].append(key)
    golden = [json.dumps({"query": GOLDEN[p], "relevant": keys}) for p, keys in relevant.items()]
    w.s3.put_object(Bucket=BUCKET, Key=w.settings.gate.golden_key, Body="\n".join(golden).encode())
    upload_s = time.perf_counter() - started
    started = time.perf_counter()
    w.run("backfill", {"force": True})  # no by-sha256 lookups: the seeding is not measured
    backfill_s = time.perf_counter() - started
    started = time.perf_counter()
    w.run("index", {})
    index_s = time.perf_counter() - started
    w.service.refresh_now()
    return {"upload_s": upload_s, "backfill_s": backfill_s, "index_s": index_s}


# -- execution histories -------------------------------------------------------------------------


def state_seconds(sfn: Any, arn: str) -> dict[str, float]:
    """Seconds spent in each state of an execution (entered to exited), summed by name."""
    entered: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        for event in page["events"]:
            if "stateEnteredEventDetails" in event:
                entered[event["stateEnteredEventDetails"]["name"]] = event["timestamp"]
            elif "stateExitedEventDetails" in event:
                name = event["stateExitedEventDetails"]["name"]
                if name in entered:
                    spent = (event["timestamp"] - entered.pop(name)).total_seconds()
                    seconds[name] = seconds.get(name, 0.0) + spent
    return seconds


def state_exits(sfn: Any, arn: str) -> dict[str, float]:
    """Epoch seconds at which each state of an execution was last exited."""
    exits = {}
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        for event in page["events"]:
            if "stateExitedEventDetails" in event:
                exits[event["stateExitedEventDetails"]["name"]] = event["timestamp"].timestamp()
    return exits


def nested_seconds(w: World, parent: str, machine: str, suffix: str) -> dict[str, float]:
    """The states of the nested execution the rollout named ``<its name>-<suffix>``."""
    name = f"{parent.rpartition(':')[2]}-{suffix}"
    for page in w.sfn.get_paginator("list_executions").paginate(
        stateMachineArn=w.machines[machine]
    ):
        for execution in page["executions"]:
            if execution["name"] == name:
                return state_seconds(w.sfn, execution["executionArn"])
    return {}


# -- the query client and the memory sampler -----------------------------------------------------


@dataclass
class Answer:
    phase: str
    at: float
    wall: float
    """``time.time()`` at the start, to place it against the execution history's timestamps."""
    seconds: float
    status: int
    model: str = ""
    error: str = ""


@dataclass
class Client:
    """One caller, one request at a time (the sandbox lock), until ``stop``."""

    w: World
    k: int
    phase: str = "before"
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    sandbox: threading.Lock = field(default_factory=threading.Lock)

    def loop(self) -> None:
        n = 0
        while not self.stop.is_set():
            # A new query text each call (a counter in it) so no embedding cache answers.
            text = f"{QUERIES[n % len(QUERIES)]} {n}"
            n += 1
            phase, event = self.phase, api_event("GET", "/search", {"q": text, "k": str(self.k)})
            wall, started = time.time(), time.perf_counter()
            try:
                with self.sandbox:
                    response = self.w.query(event, LambdaContext("imgsearch-query"))
                seconds = time.perf_counter() - started
                body = response.get("body") or ""
                if response.get("isBase64Encoded"):
                    body = base64.b64decode(body).decode()
                status = int(response["statusCode"])
                answer = Answer(phase, started, wall, seconds, status)
                if status == 200:
                    answer.model = json.loads(body)["model"]
                else:
                    answer.error = body[:300]
            except Exception as exc:  # a raising handler is a failed query too
                spent = time.perf_counter() - started
                answer = Answer(phase, started, wall, spent, 0, error=repr(exc))
            self.answers.append(answer)


@dataclass
class Sampler:
    """RSS of this process and the models the query service holds, every ``interval`` s."""

    client: Client
    interval: float = 0.25
    samples: list[tuple[str, float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def loop(self) -> None:
        process = psutil.Process()
        while not self.stop.is_set():
            loaded = len(self.client.w.service.models.loaded)
            self.samples.append((self.client.phase, process.memory_info().rss / 2**20, loaded))
            self.stop.wait(self.interval)


def phase_summary(client: Client, sampler: Sampler) -> dict[str, dict[str, Any]]:
    summary = {}
    for phase in PHASES:
        answers = [a for a in client.answers if a.phase == phase]
        ok = [a.seconds for a in answers if a.status == 200]
        rss = [s[1] for s in sampler.samples if s[0] == phase]
        models = [s[2] for s in sampler.samples if s[0] == phase]
        summary[phase] = {
            "queries": len(answers),
            "failed": len(answers) - len(ok),
            "errors": sorted({a.error for a in answers if a.error})[:5],
            "p50_ms": 1000 * percentile(ok, 50),
            "p99_ms": 1000 * percentile(ok, 99),
            "max_ms": 1000 * max(ok, default=float("nan")),
            "models_answering": sorted({a.model for a in answers if a.model}),
            "rss_mb_median": percentile(rss, 50),
            "rss_mb_max": max(rss, default=float("nan")),
            "query_models_held_max": max(models, default=0),
        }
    return summary


# -- one size ------------------------------------------------------------------------------------


def measure(size: int, images: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as name, world(Path(name), args) as w:
        tmp = Path(name)
        seeded = seed(w, images[:size])
        folder, champion, candidate = candidate_bundle(tmp / "candidate")
        served = read_current(w.s3, BUCKET)
        assert served is not None and served.model == champion, served
        register_model(Target(REGION, BUCKET, TABLE), str(folder))

        client = Client(w, args.k)
        sampler = Sampler(client)
        threads = [threading.Thread(target=t.loop, daemon=True) for t in (client, sampler)]
        for thread in threads:
            thread.start()
        time.sleep(args.before)
        client.phase = "during"
        started = time.perf_counter()
        arn = w.start("rollout", {"model": candidate})
        described = w.wait(arn)
        seconds = time.perf_counter() - started
        # The swap ends when the query function answers with the candidate (its next check of
        # current.json, then the candidate's text tower and index load): "during" lasts until then.
        deadline = time.monotonic() + args.swap_timeout
        while time.monotonic() < deadline and not any(
            a.model == candidate for a in client.answers[-50:]
        ):
            time.sleep(0.05)
        client.phase = "after"
        time.sleep(args.after)
        client.stop.set()
        sampler.stop.set()
        for thread in threads:
            thread.join()

        status = json.loads(described.get("output") or "{}").get("status", described["status"])
        states = state_seconds(w.sfn, arn)
        first_new = min(
            (a.at for a in client.answers if a.model == candidate), default=float("nan")
        )
        swap_s = first_new - started
        # The swap proper: from Publish's start (the end of the Index state less Publish's
        # time) to the first answer by the candidate; the backfill is over by then.
        index_states = nested_seconds(w, arn, "index", "index")
        index_end = state_exits(w.sfn, arn).get("Index", float("nan"))
        swap_from = index_end - index_states.get("Publish", 0.0)
        swap_to = min((a.wall for a in client.answers if a.model == candidate), default=swap_from)
        in_swap = [a for a in client.answers if swap_from <= a.wall <= swap_to]
        swap_ok = [a.seconds for a in in_swap if a.status == 200]
        return {
            "images": size,
            "champion": champion,
            "candidate": candidate,
            "execution_status": described["status"],
            "rollout_status": status,
            "cause": described.get("cause", "")[:500],
            "seed": seeded,
            "seconds": seconds,
            "sfn_seconds": (described["stopDate"] - described["startDate"]).total_seconds(),
            "states": states,
            "backfill_states": nested_seconds(w, arn, "backfill", "backfill"),
            "index_states": index_states,
            "swap": {
                "seconds": swap_to - swap_from,
                "queries": len(in_swap),
                "failed": len(in_swap) - len(swap_ok),
                "p50_ms": 1000 * percentile(swap_ok, 50),
                "p99_ms": 1000 * percentile(swap_ok, 99),
                "max_ms": 1000 * max(swap_ok, default=float("nan")),
            },
            "candidate_answers_after_end_s": swap_s - seconds,
            "seconds_per_image": seconds / size,
            "first_candidate_answer_after_start_s": swap_s,
            "serving_after": (read_current(w.s3, BUCKET) or served).model,
            "query_models_held_at_end": w.service.models.loaded,
            "phases": phase_summary(client, sampler),
            "load_average_1": round(os.getloadavg()[0], 2),
        }


# -- memory of a query sandbox holding two models (a fresh process) ------------------------------


def memory_probe(bundle: Path) -> dict[str, float]:
    """RSS (MB) of a fresh process: imports; the function's own bundle, text tower (``query.app``
    loads it with ``lazy_visual``); a second model's text tower (``QueryModels.get`` at the
    swap: the two models of a rollout); then each image tower as an image query builds it."""
    from imgsearch.model import ClipModel

    def mb() -> float:
        return psutil.Process().memory_info().rss / 2**20

    rss: dict[str, float] = {"imports": mb()}
    with tempfile.TemporaryDirectory() as cache:
        own = ClipModel.load(bundle, 1, cache, lazy_visual=True)
        own.encode_text(["warm up"])
        rss["own_text_tower"] = mb()
        other = ClipModel.load(bundle, 1, cache, lazy_visual=True)
        other.encode_text(["warm up"])
        rss["plus_candidate_text_tower"] = mb()
        size = own.manifest.image_size
        other.encode_images(np.zeros((1, 3, size, size), dtype=np.float32))
        rss["plus_candidate_image_tower"] = mb()
        own.encode_images(np.zeros((1, 3, size, size), dtype=np.float32))
        rss["plus_own_image_tower"] = mb()
    return rss


def probe_in_fresh_process(bundle: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--memory-probe", str(bundle)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the 10M projection --------------------------------------------------------------------------


def backfill_figures() -> dict[str, Any]:
    """The int8 ViT-B/32 row of ``backfill.json``'s 10M estimate, else the README's."""
    try:
        data = json.loads(BACKFILL_RESULT.read_text())
        row = next(e for e in data["aws"]["estimates"] if "int8" in e["model"])
    except (OSError, StopIteration, KeyError, ValueError):
        return README_BACKFILL
    return {
        "model": row["model"],
        "seconds_per_image": row["seconds_per_image"],
        "total_seconds": row["total_seconds"],
        "listing_seconds": row["listing_seconds"],
        "cost_usd": row["cost_usd"]["total"],
        "concurrency": data["aws"]["assumptions"]["concurrency"],
        "source": f"benchmarks/results/backfill.json ({data.get('command', '')}), "
        f"aws.estimates[{row['model']}]",
    }


def projection(images: int = 10_000_000) -> dict[str, Any]:
    backfill = backfill_figures()
    f = INDEX_FIGURES
    millions = images / 1e6
    wait_s = math.ceil(WAIT_FACTOR * AWS_WRITE_MODELS_SECONDS)
    snapshot_s = images / f["snapshot_items_per_second"]
    # n log n from the measured 1M build; the same 6-vCPU speed-up as docs/pipeline.md's.
    growth = millions * math.log(images) / math.log(1e6)
    build_cpu_s = f["build_cpu_seconds_1m"] * growth
    build_s = f["build_seconds_1m_6_vcpus"] * growth
    index_s = snapshot_s + build_s
    index_cost = (
        build_s * f["build_memory_mb"] / 1024 + snapshot_s * f["snapshot_memory_mb"] / 1024
    ) * PRICE_LAMBDA_GB_SECOND
    # The Snapshot's Scan: eventually consistent, 0.5 RRU per 4 KB.
    scan_rru = millions * f["scan_bytes_per_million"] / 4096 * 0.5
    scan_cost = scan_rru / 1e6 * PRICE_DYNAMODB_PER_MILLION_RRU
    total_s = wait_s + backfill["total_seconds"] + index_s
    # The rollout's backfill runs at the stack's cap (it passes no max_concurrency):
    # BackfillMaxConcurrency, 50 by default. Same image-seconds (same cost), fewer at once.
    spi, concurrency = backfill["seconds_per_image"], backfill["concurrency"]
    fixed_s = backfill["total_seconds"] - images * spi / concurrency
    at_default_s = fixed_s + images * spi / DEFAULT_BACKFILL_CONCURRENCY
    return {
        "images": images,
        "wait": {
            "seconds": wait_s,
            "source": f"WaitForWriters = ceil({WAIT_FACTOR} x IMGSEARCH_WRITE_MODELS_SECONDS "
            f"{AWS_WRITE_MODELS_SECONDS:g} s) (imgsearch/rollout/steps.py, core/config.py)",
        },
        "backfill": backfill,
        "index": {
            "snapshot_seconds": snapshot_s,
            "build_cpu_seconds": build_cpu_s,
            "build_seconds_6_vcpus": build_s,
            "seconds": index_s,
            "lambda_cost_usd": index_cost,
            "scan_rru": scan_rru,
            "scan_cost_usd": scan_cost,
            "fits_one_build_lambda": images <= f["lambda_vectors_limit"],
            "not_counted": "Validate (exact search of the probes over the snapshot) and Publish; "
            "moving the ~22 GB of snapshot and index files (~2.2 GB per million, "
            "docs/pipeline.md), beyond one Lambda's 10 GB of /tmp at 10M",
            "method": "snapshot = images / items per s; build = the 1M build x (n log n growth)",
            **{"figures": f},
        },
        "backfill_at_default_cap": {
            "concurrency": DEFAULT_BACKFILL_CONCURRENCY,
            "seconds": at_default_s,
            "source": "template.yaml BackfillMaxConcurrency default; the backfill's time less "
            "its images x s/image / concurrency, plus that at the default",
        },
        "total_seconds": total_s,
        "total_seconds_at_default_cap": total_s - backfill["total_seconds"] + at_default_s,
        "cost_usd": backfill["cost_usd"] + index_cost + scan_cost,
    }


# -- main ----------------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--before", type=float, default=10.0, help="seconds of queries before")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of queries after")
    parser.add_argument(
        "--swap-timeout",
        type=float,
        default=60.0,
        help="seconds after the rollout to wait for the query handler to answer with the candidate",
    )
    parser.add_argument("--k", type=int, default=10, help="results per query")
    parser.add_argument("--chunk-size", type=int, default=250, help="backfill objects per chunk")
    parser.add_argument("--concurrency", type=int, default=2, help="backfill children at most")
    parser.add_argument(
        "--write-models-seconds",
        type=float,
        default=0.3,
        help="IMGSEARCH_WRITE_MODELS_SECONDS here (10 on AWS); WaitForWriters waits 3x, rounded up",
    )
    parser.add_argument("--no-memory-probe", action="store_true", help="skip the int8 probe")
    parser.add_argument("--memory-probe", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe)))
        return
    command = sys.argv[1:] if argv is None else argv
    # moto's ASL parser warns on every parse that it ignores ToleratedFailurePercentage.
    logging.getLogger("moto.stepfunctions.parser.asl.parse.preprocessor").setLevel(logging.ERROR)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION=REGION
    )
    started = time.perf_counter()
    env_start = environment("onnxruntime", "moto", "boto3", "faiss-cpu", "usearch", "psutil")

    probe: dict[str, Any] | None = None
    if not args.no_memory_probe and (INT8 / "model.json").is_file():
        print("memory probe: int8 ViT-B/32 in a fresh process", file=sys.stderr, flush=True)
        probe = {"bundle": str(INT8.relative_to(ROOT)), "rss_mb": probe_in_fresh_process(INT8)}

    largest = max(args.sizes)
    print(f"making {largest} 640x480 JPEGs", file=sys.stderr, flush=True)
    images = make_images(0, largest, 640, 480, 88, 6.0)
    assert len({hashlib.sha256(b).digest() for b in images}) == len(images), "same bytes twice"
    image_kb = sum(len(b) for b in images) / len(images) / 1000

    runs = []
    devnull = open(os.devnull, "w")  # noqa: SIM115 - the handlers' logs and EMF for the whole run
    for size in sorted(args.sizes):
        print(f"{size} images: seed, then the rollout", file=sys.stderr, flush=True)
        with contextlib.redirect_stdout(devnull):
            run = measure(size, images, args)
        runs.append(run)
        p = run["phases"]
        print(
            f"  {run['rollout_status']} in {run['seconds']:.1f} s; p99 before/during/after "
            f"{ms(p['before']['p99_ms'])}/{ms(p['during']['p99_ms'])}/{ms(p['after']['p99_ms'])}"
            f" ms, failed {sum(p[x]['failed'] for x in PHASES)}",
            file=sys.stderr,
            flush=True,
        )
    devnull.close()

    for run in runs:
        p = run["phases"]
        run["targets"] = {
            "zero_failed_queries": sum(p[x]["failed"] for x in PHASES) == 0,
            "p99_during_vs_before": p["during"]["p99_ms"] / p["before"]["p99_ms"],
            "p99_during_within_10_percent": p["during"]["p99_ms"] <= 1.1 * p["before"]["p99_ms"],
            "p99_swap_vs_before": run["swap"]["p99_ms"] / p["before"]["p99_ms"],
        }
    aws = projection()
    env = environment("onnxruntime", "moto", "boto3", "faiss-cpu", "usearch", "psutil")
    print(
        f"\nCPU: {env['cpu']} ({env['cpu_count']} cores), load average at start "
        f"{env_start['load_average_1_5_15']}, at end {env['load_average_1_5_15']}; S3, DynamoDB,"
        f" Step Functions = moto in this process; IMGSEARCH_WRITE_MODELS_SECONDS "
        f"{args.write_models_seconds:g} (WaitForWriters "
        f"{math.ceil(WAIT_FACTOR * args.write_models_seconds)} s; 30 s on AWS)\n"
    )
    print(
        f"Rollout, demo model to the same weights under another version, 640x480 JPEGs "
        f"({image_kb:.0f} KB), backfill chunks of {args.chunk_size}, {args.concurrency} children,"
        " seconds:\n"
    )
    print(
        markdown_table(
            ["images", "result", "total s", *STATES, "ms/image", "candidate answers"],
            [
                [
                    f"{r['images']:,}",
                    r["rollout_status"],
                    f"{r['seconds']:.1f}",
                    *(f"{r['states'].get(s, float('nan')):.1f}" for s in STATES),
                    f"{1000 * r['seconds_per_image']:.1f}",
                    f"{r['candidate_answers_after_end_s']:.2f} s after",
                ]
                for r in runs
            ],
        )
    )
    print(
        "\nText queries through the query handler, one at a time, before / during / after the "
        f"rollout (k = {args.k}; the rollout shares the CPU), ms; RSS of the whole process "
        "(a proxy):\n"
    )
    rows = []
    for r in runs:
        for phase in PHASES:
            q = r["phases"][phase]
            rows.append(
                [
                    f"{r['images']:,}",
                    phase,
                    q["queries"],
                    q["failed"],
                    f"{ms(q['p50_ms'])} / {ms(q['p99_ms'])}",
                    ", ".join(q["models_answering"]),
                    f"{q['rss_mb_max']:.0f}",
                    q["query_models_held_max"],
                ]
            )
            if phase == "during":
                q = r["swap"]
                rows.append(
                    [
                        f"{r['images']:,}",
                        f"of which the swap ({q['seconds']:.2f} s)",
                        q["queries"],
                        q["failed"],
                        f"{ms(q['p50_ms'])} / {ms(q['p99_ms'])}",
                        "",
                        "",
                        "",
                    ]
                )
    print(
        markdown_table(
            [
                "images",
                "phase",
                "queries",
                "failed",
                "p50 / p99",
                "answered by",
                "RSS max MB",
                "models held",
            ],
            rows,
        )
    )
    print()
    for r in runs:
        t = r["targets"]
        failed = "met" if t["zero_failed_queries"] else "NOT met"
        p99 = "met" if t["p99_during_within_10_percent"] else "not met"
        print(
            f"- {r['images']:,}: zero failed queries {failed}; p99 during "
            f"{t['p99_during_vs_before']:.2f}x before ({p99}, target <= 1.10x); in the swap "
            f"alone {t['p99_swap_vs_before']:.2f}x"
        )
    if probe:
        rss = probe["rss_mb"]
        labels = {
            "imports": "imports (boto3, onnxruntime, moto, ...)",
            "own_text_tower": "+ its own bundle's text tower (init)",
            "plus_candidate_text_tower": "+ the candidate's text tower (the swap: two models)",
            "plus_candidate_image_tower": "+ the candidate's image tower (an image query)",
            "plus_own_image_tower": "+ its own image tower (all four sessions)",
        }
        print(
            f"\nQuery sandbox memory, a fresh process, {probe['bundle']} (int8 ViT-B/32) as both "
            f"models; the index is memory-mapped and not counted; MemorySize {QUERY_MEMORY_MB} MB:"
            "\n"
        )
        print(
            markdown_table(
                ["held", "RSS MB", "of MemorySize"],
                [
                    [label, f"{rss[k]:.0f}", f"{100 * rss[k] / QUERY_MEMORY_MB:.0f} %"]
                    for k, label in labels.items()
                ],
            )
        )
    b, i = aws["backfill"], aws["index"]
    print(f"\n{aws['images'] / 1e6:g}M images on AWS (projection, sources in the JSON):\n")
    print(
        markdown_table(
            ["step", "time", "cost $", "from"],
            [
                ["WaitForWriters", f"{aws['wait']['seconds']} s", "0", "3 x 10 s"],
                [
                    f"Backfill ({b['model']}, {b['concurrency']} Lambdas)",
                    f"{b['total_seconds'] / 60:.0f} min",
                    f"{b['cost_usd']:.0f}",
                    f"{b['seconds_per_image']:.3f} s/image",
                ],
                [
                    f"Backfill at BackfillMaxConcurrency {DEFAULT_BACKFILL_CONCURRENCY} "
                    "(the default)",
                    f"{aws['backfill_at_default_cap']['seconds'] / 3600:.1f} h",
                    f"{b['cost_usd']:.0f}",
                    "same image-seconds",
                ],
                [
                    "Index: Snapshot",
                    f"{i['snapshot_seconds'] / 60:.0f} min",
                    f"{i['scan_cost_usd']:.2f} (scan)",
                    f"{INDEX_FIGURES['snapshot_items_per_second']:,.0f} items/s",
                ],
                [
                    "Index: Build (6 vCPUs)",
                    f"{i['build_seconds_6_vcpus'] / 60:.0f} min",
                    f"{i['lambda_cost_usd']:.2f}",
                    "1M build x n log n"
                    + ("" if i["fits_one_build_lambda"] else "; > one Lambda's 15 min"),
                ],
                [
                    f"total ({b['concurrency']} / {DEFAULT_BACKFILL_CONCURRENCY} Lambdas)",
                    f"{aws['total_seconds'] / 3600:.1f} h / "
                    f"{aws['total_seconds_at_default_cap'] / 3600:.1f} h",
                    f"{aws['cost_usd']:.0f}",
                    "",
                ],
            ],
        )
    )
    path = write_results(
        "rollout",
        {
            "environment": {**env, "load_average_at_start": env_start["load_average_1_5_15"]},
            "command": " ".join(["python benchmarks/rollout.py", *command]),
            "seconds": round(time.perf_counter() - started, 1),
            "settings": {
                "image_size": "640x480",
                "image_kb": image_kb,
                "chunk_size": args.chunk_size,
                "max_concurrency": args.concurrency,
                "write_models_seconds": args.write_models_seconds,
                "query_k": args.k,
                "before_s": args.before,
                "after_s": args.after,
                "golden_queries": list(GOLDEN.values()),
            },
            "runs": runs,
            "memory_probe": probe,
            "query_memory_mb": QUERY_MEMORY_MB,
            "aws": aws,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
