"""Ingest throughput: images per second through the real embed handler, per vCPU, and where the
time goes (S3 reads, decode+preprocess, model, DynamoDB writes).

The handler (``functions/embed/app.py``) runs in this process against moto's S3 and DynamoDB,
pinned to one CPU with ``IMGSEARCH_THREADS=1`` (one vCPU's worth: Lambda gives one full vCPU per
1,769 MB). Every case ingests the same photo-like JPEG uploads (1024x768), in SQS batches of 10
messages, into a freshly created table. Cases, timed in turns (round-robin):

- model: the demo bundle (``models/demo-clip``) and a ViT-B/32-shaped bundle with random weights
  (``benchmarks/.cache/fp32``, built by ``benchmarks/embed.py``'s ``fp32_bundle`` when missing);
- batching: one model call per SQS batch (``IMGSEARCH_EMBED_BATCH_SIZE=16``), against the
  per-record alternative, one model call per image (``=1``).

Phase times come from the handler's ``batch processed`` log line. S3 and DynamoDB are moto in
the same process, so their share is moto's CPU time, not AWS network latency::

    python benchmarks/ingest.py --images 80 --rounds 3

Prints a markdown table and writes ``benchmarks/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

ROOT = Path(__file__).resolve().parents[1]
# The handler imports as in the image (``embed.app``); functions/ must win over this folder,
# which holds a benchmark called embed.py.
sys.path.insert(0, str(ROOT / "functions"))
sys.path.insert(1, str(ROOT / "tools"))

import boto3  # noqa: E402
import embed.app as embed_app  # noqa: E402
from _common import (  # noqa: E402
    environment,
    fp32_bundle,
    markdown_table,
    median,
    photo_like_jpeg,
    write_results,
)
from moto import mock_aws  # noqa: E402

from imgsearch.core.config import Settings  # noqa: E402
from imgsearch.core.entry import Handler  # noqa: E402
from imgsearch.store import table_definition  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
DEMO = ROOT / "models" / "demo-clip"
FIXTURES = ROOT / "tests" / "fixtures" / "events"
BUCKET, TABLE, REGION = "imgsearch-bench", "imgsearch-bench-embeddings", "us-east-1"
SQS_BATCH = 10
PHASES = ("s3_read_ms", "preprocess_ms", "model_ms", "dynamodb_ms")


def vit_b32_bundle(cache: Path, threads: int) -> Path:
    """The random ViT-B/32 bundle, shared with (and built like) the embed benchmark's."""
    return fp32_bundle(cache, threads)[1]


def sqs_batches(s3: Any, count: int) -> list[dict[str, Any]]:
    """Upload ``count`` photos; their S3 notifications as Lambda SQS batch events."""
    put = json.loads((FIXTURES / "s3-put.json").read_text(encoding="utf-8"))
    sqs_template = json.loads((FIXTURES / "sqs-s3-batch.json").read_text(encoding="utf-8"))
    records = []
    for n in range(count):
        key = f"images/bench/photo {n}.jpg"
        data = photo_like_jpeg(1024, 768, seed=n, shapes=20, quality=88)
        etag = s3.put_object(Bucket=BUCKET, Key=key, Body=data)["ETag"].strip('"')
        body = json.loads(json.dumps(put))
        record = body["Records"][0]
        record["s3"]["bucket"].update(name=BUCKET, arn=f"arn:aws:s3:::{BUCKET}")
        record["s3"]["object"] = {
            "key": quote_plus(key, safe="/"),
            "size": len(data),
            "eTag": etag,
            "sequencer": f"{0x0055AED6DCD9000000 + n:018X}",
        }
        sqs_record = dict(sqs_template["Records"][0])
        sqs_record.update(messageId=str(uuid.uuid4()), body=json.dumps(body))
        records.append(sqs_record)
    return [
        {"Records": records[start : start + SQS_BATCH]}
        for start in range(0, len(records), SQS_BATCH)
    ]


class BatchLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = json.loads(self.format(record))
        if line.get("message") == "batch processed":
            self.lines.append(line)


@dataclass
class Case:
    model: str
    batching: str
    handler: Handler
    lines: list[dict[str, Any]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    images: int = 0


@dataclass(frozen=True)
class Context:
    function_name: str = "imgsearch-embed-bench"
    memory_limit_in_mb: int = 1769
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id: str = "bench"


def load_handler(bundle: Path, batch_size: int) -> Handler:
    settings = Settings.from_env(
        {
            "AWS_REGION": REGION,
            "IMGSEARCH_BUCKET": BUCKET,
            "IMGSEARCH_TABLE": TABLE,
            "IMGSEARCH_MODEL_URI": str(bundle),
            "IMGSEARCH_THREADS": "1",
            "IMGSEARCH_EMBED_BATCH_SIZE": str(batch_size),
            "POWERTOOLS_SERVICE_NAME": "imgsearch-embed-bench",
            "POWERTOOLS_METRICS_NAMESPACE": "imgsearch-bench",
        }
    )
    return embed_app.build(settings)


def reset_table(dynamodb: Any) -> None:
    with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
        dynamodb.delete_table(TableName=TABLE)
    dynamodb.create_table(**table_definition(TABLE))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=80, help="uploads per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=1, help="pin the process to this many CPUs")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--demo", type=Path, default=DEMO, help="the demo bundle folder")
    args = parser.parse_args(argv)

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION=REGION,
    )
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cpus])
    bundles = {"ViT-B/32 (random)": vit_b32_bundle(args.cache, threads=args.cpus)}
    if (args.demo / "model.json").is_file():
        bundles = {"demo-clip": args.demo, **bundles}
    else:
        print(f"no bundle at {args.demo}: measuring the ViT-B/32 bundle only", flush=True)

    devnull = open(os.devnull, "w")  # noqa: SIM115 - the handlers' logs and EMF for the whole run
    with mock_aws(), contextlib.redirect_stdout(devnull):
        s3 = boto3.client("s3", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        reset_table(dynamodb)
        batches = sqs_batches(s3, args.images)
        cases = [
            Case(model, batching, load_handler(bundle, size))
            for model, bundle in bundles.items()
            for batching, size in (("one call per batch", 16), ("one call per image", 1))
        ]
        # Every handler's Powertools Logger shares one service name, hence one stdlib logger.
        collector = BatchLines()
        collector.setFormatter(cases[0].handler.logger.registered_formatter)
        cases[0].handler.logger.addHandler(collector)
        for case in cases:  # warm-up: onnxruntime's first runs allocate and optimise
            reset_table(dynamodb)
            case.handler(batches[0], Context())
        for _ in range(args.rounds):
            for case in cases:
                reset_table(dynamodb)
                collector.lines.clear()
                start = time.perf_counter()
                for batch in batches:
                    response = case.handler(batch, Context())
                    assert not response["batchItemFailures"], response
                case.seconds.append(time.perf_counter() - start)
                case.lines.extend(collector.lines)
        model_ids = {case.model: case.handler.ingestor.model_id for case in cases}
    devnull.close()

    rows, results = [], []
    for case in cases:
        for line in case.lines:
            for phase in PHASES:
                case.phases[phase] += line[phase] / 1000
        total = sum(case.seconds)
        embedded = sum(line["results"].get("embedded", 0) for line in case.lines)
        assert embedded == args.images * args.rounds, (case.model, case.batching, embedded)
        rate = args.images / median(case.seconds) / args.cpus
        shares = {phase: case.phases[phase] / total for phase in PHASES}
        other = 1.0 - sum(shares.values())
        rows.append(
            [
                case.model,
                case.batching,
                f"{rate:.1f}",
                *(f"{100 * shares[p]:.0f} %" for p in PHASES),
                f"{100 * other:.0f} %",
            ]
        )
        results.append(
            {
                "model": case.model,
                "model_id": model_ids[case.model],
                "batching": case.batching,
                "images_per_second_per_vcpu": rate,
                "seconds_per_round": case.seconds,
                "share": {**{p.removesuffix("_ms"): shares[p] for p in PHASES}, "other": other},
            }
        )
    headers = [
        "model",
        "batching",
        "images/s per vCPU",
        "S3 reads",
        "decode+preprocess",
        "model",
        "DynamoDB",
        "other",
    ]
    print(
        f"\n{args.images} JPEG uploads (1024x768) per round, SQS batches of {SQS_BATCH}, "
        f"{args.cpus} CPU, median of {args.rounds} rounds; S3/DynamoDB = moto in-process\n"
    )
    print(markdown_table(headers, rows))
    path = write_results(
        "ingest",
        {
            "environment": environment("onnxruntime", "pillow", "numpy", "moto"),
            "images": args.images,
            "rounds": args.rounds,
            "cpus": args.cpus,
            "sqs_batch": SQS_BATCH,
            "cases": results,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
