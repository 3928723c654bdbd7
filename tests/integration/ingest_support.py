"""Shared by the embed-function tests: a moto stack with the real handler, S3 notifications in the
exact shape S3 sends them to SQS (built from ``tests/fixtures/events``), and image bytes of every
good and bad kind.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import json
import logging
import struct
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import embed.app as embed_app
import numpy as np
from moto import mock_aws
from PIL import Image

from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Handler
from imgsearch.ingest import Ingestor
from imgsearch.store import EmbeddingRecord, EmbeddingStore, table_definition

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"
DEMO_BUNDLE = Path(__file__).resolve().parents[2] / "models" / "demo-clip"
BUCKET = "imgsearch-images"  # the bucket the fixtures name
TABLE = "imgsearch-embeddings"
REGION = "us-east-1"

# Limits small enough that over-limit images stay small files.
MAX_IMAGE_BYTES = 100_000
MAX_IMAGE_PIXELS = 1_000_000


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def encode_key(key: str) -> str:
    """How S3 writes a key into an event: form-encoded UTF-8, slashes kept."""
    return quote_plus(key, safe="/")


@dataclass(frozen=True)
class LambdaContext:
    function_name: str = "imgsearch-embed"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:imgsearch-embed"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


# -- images ------------------------------------------------------------------------------------


def image_bytes(seed: int, size: int = 40, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def _corrupt_png(seed: int) -> bytes:
    """A PNG whose IDAT chunk parses (valid CRC) but whose compressed stream is broken."""
    png = image_bytes(seed)
    start = png.index(b"IDAT")
    (length,) = struct.unpack(">I", png[start - 4 : start])
    data = bytearray(png[start + 4 : start + 4 + length])
    data[2:12] = np.random.default_rng(seed).integers(0, 256, 10, dtype=np.uint8).tobytes()
    crc = struct.pack(">I", zlib.crc32(b"IDAT" + bytes(data)))
    return png[: start + 4] + bytes(data) + crc + png[start + 8 + length :]


def bad_image(kind: str, seed: int) -> bytes:
    """Bytes that the runtime must quarantine with reason ``kind``."""
    if kind == "empty":
        return b""
    if kind == "not_an_image":
        return f"just some text {seed}, not an image".encode()
    if kind == "corrupt":
        return _corrupt_png(seed)
    if kind == "truncated":
        jpeg = image_bytes(seed, 48, "JPEG")
        return jpeg[: len(jpeg) // 2]
    if kind == "too_large_bytes":
        data = image_bytes(seed, 256)  # noise PNG: ~197 kB
        assert len(data) > MAX_IMAGE_BYTES
        return data
    if kind == "too_large_pixels":
        buffer = io.BytesIO()  # a flat 1100 x 1000 PNG is a few kB but 1.1 megapixels
        Image.new("RGB", (1100, 1000), (seed % 256, 10, 20)).save(buffer, "PNG")
        return buffer.getvalue()
    raise ValueError(kind)


BAD_KINDS = ("empty", "not_an_image", "corrupt", "truncated", "too_large_bytes", "too_large_pixels")


# -- S3 notifications -------------------------------------------------------------------------


class Uploader:
    """Writes objects to (moto) S3 and returns the notification S3 would send for each change.

    Sequencers grow with every change, as S3's do for one key.
    """

    def __init__(self, s3: Any, bucket: str = BUCKET) -> None:
        self.s3 = s3
        self.bucket = bucket
        self._sequence = itertools.count(0x0055AED6DCD9000000)

    def next_sequencer(self) -> str:
        return f"{next(self._sequence):018X}"

    def _record(self, template: str, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        body = load_fixture(template)
        record = body["Records"][0]
        record["responseElements"]["x-amz-request-id"] = uuid.uuid4().hex[:16].upper()
        record["s3"]["bucket"]["name"] = self.bucket
        record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{self.bucket}"
        record["s3"]["object"] = {"key": encode_key(key), **obj}
        return body

    def put(self, key: str, data: bytes) -> dict[str, Any]:
        response = self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        return self.put_event(key, response["ETag"].strip('"'), len(data))

    def put_event(self, key: str, etag: str, size: int) -> dict[str, Any]:
        obj = {"size": size, "eTag": etag, "sequencer": self.next_sequencer()}
        return self._record("s3-put.json", key, obj)

    def delete(self, key: str) -> dict[str, Any]:
        self.s3.delete_object(Bucket=self.bucket, Key=key)
        return self._record("s3-delete.json", key, {"sequencer": self.next_sequencer()})


def sqs_record(body: dict[str, Any] | str, message_id: str | None = None) -> dict[str, Any]:
    record = copy.deepcopy(load_fixture("sqs-s3-batch.json")["Records"][0])
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    record.update(
        messageId=message_id or str(uuid.uuid4()),
        body=text,
        md5OfBody=hashlib.md5(text.encode()).hexdigest(),
    )
    return record


def sqs_event(*bodies: dict[str, Any] | str) -> dict[str, Any]:
    return {"Records": [sqs_record(body) for body in bodies]}


# -- the stack ---------------------------------------------------------------------------------


class RecordingHandler(logging.Handler):
    """Keeps the handler's log lines (Powertools' JSON) for assertions."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@dataclass
class EmbedStack:
    handler: Handler
    ingestor: Ingestor
    handler_clients: Clients
    s3: Any
    dynamodb: Any
    sqs: Any
    store: EmbeddingStore
    uploader: Uploader
    logs: RecordingHandler

    @property
    def model_id(self) -> str:
        return self.ingestor.model_id

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.handler(event, LambdaContext())

    def items(self) -> dict[tuple[str, str], EmbeddingRecord]:
        found: dict[tuple[str, str], EmbeddingRecord] = {}
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=TABLE):
            for item in page["Items"]:
                record = EmbeddingRecord.from_item(item)
                assert (record.key, record.model) not in found
                found[record.key, record.model] = record
        return found

    def snapshot(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every item as DynamoDB holds it (comparable with ``==``)."""
        return {k: record.to_item() for k, record in self.items().items()}


def bundle_uri() -> str:
    """The committed demo bundle (the image's default model)."""
    assert (DEMO_BUNDLE / "model.json").is_file(), "the committed demo bundle is missing"
    return str(DEMO_BUNDLE)


@contextmanager
def embed_stack(tmp_dir: Path, **env: str) -> Iterator[EmbedStack]:
    """moto S3 + DynamoDB + SQS, and ``functions/embed/app.py`` built inside it."""
    settings = Settings.from_env(
        {
            "AWS_REGION": REGION,
            "IMGSEARCH_BUCKET": BUCKET,
            "IMGSEARCH_TABLE": TABLE,
            "IMGSEARCH_MODEL_URI": bundle_uri(),
            "IMGSEARCH_MODEL_CACHE_DIR": str(tmp_dir / "models"),
            "IMGSEARCH_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
            "IMGSEARCH_MAX_IMAGE_PIXELS": str(MAX_IMAGE_PIXELS),
            "IMGSEARCH_THREADS": "1",
            **env,
        }
    )
    with mock_aws():
        # The handler's own clients, apart from the test's: call counters see only its calls.
        clients = Clients.for_settings(settings)
        s3 = boto3.client("s3", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        dynamodb.create_table(**table_definition(TABLE))
        sqs = boto3.client("sqs", region_name=REGION)
        handler = embed_app.build(settings, clients)
        logger = handler.logger
        logs = RecordingHandler()
        logs.setFormatter(logger.registered_formatter)
        logger.addHandler(logs)
        try:
            yield EmbedStack(
                handler=handler,
                ingestor=handler.ingestor,
                handler_clients=clients,
                s3=s3,
                dynamodb=dynamodb,
                sqs=sqs,
                store=EmbeddingStore(TABLE, dynamodb),
                uploader=Uploader(s3),
                logs=logs,
            )
        finally:
            logger.removeHandler(logs)


def emf_metrics(stdout: str) -> dict[str, list[tuple[float, dict[str, str]]]]:
    """Metric name -> [(value, dimensions)] from the EMF lines Powertools printed."""
    metrics: dict[str, list[tuple[float, dict[str, str]]]] = {}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        blob = json.loads(line)
        if "_aws" not in blob:
            continue
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            dims = {d: blob[d] for group in directive["Dimensions"] for d in group}
            for metric in directive["Metrics"]:
                values = blob[metric["Name"]]
                for value in values if isinstance(values, list) else [values]:
                    metrics.setdefault(metric["Name"], []).append((value, dims))
    return metrics


def metric_total(metrics: dict[str, list[tuple[float, dict[str, str]]]], name: str) -> float:
    """Sum of a metric's values without a ``Reason`` dimension (the totals)."""
    return sum(v for v, dims in metrics.get(name, []) if "Reason" not in dims)


def metric_by_reason(
    metrics: dict[str, list[tuple[float, dict[str, str]]]], name: str
) -> dict[str, float]:
    totals: dict[str, float] = {}
    for value, dims in metrics.get(name, []):
        if "Reason" in dims:
            totals[dims["Reason"]] = totals.get(dims["Reason"], 0) + value
    return totals
