"""Shared by the query-API tests: a moto stack with synthetic images embedded by the demo model,
indexes published the way the pipeline publishes them, the real handler built by ``query.app``'s
``build`` from the stack's settings, and API Gateway HTTP API (payload 2.0) events built from
``tests/fixtures/events``.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import numpy as np
import query.app
from aws_lambda_powertools.metrics.provider.cold_start import reset_cold_start_flag
from imgsearch_devkit.demo.scenes import Scene, generate
from moto import mock_aws

from imgsearch.catalog.current import CurrentIndex, read_current, write_current
from imgsearch.catalog.keytable import KeyTable
from imgsearch.catalog.layout import KEYS_FILE, index_file, new_version, version_key
from imgsearch.core.aws import Clients
from imgsearch.core.clock import now_iso
from imgsearch.core.config import Settings
from imgsearch.core.entry import Handler
from imgsearch.core.keys import image_id
from imgsearch.model import ClipModel, embed_images
from imgsearch.pipeline.build import build_index
from imgsearch.query.service import SearchService
from imgsearch.store import EmbeddingRecord, EmbeddingStore, pad_sequencer, table_definition

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "events" / "apigw-http-search.json"
DEMO_BUNDLE = Path(__file__).resolve().parents[2] / "models" / "demo-clip"
BUCKET = "imgsearch-images"
TABLE = "imgsearch-embeddings"
REGION = "us-east-1"


@dataclass(frozen=True)
class LambdaContext:
    function_name: str = "imgsearch-query"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:imgsearch-query"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


# -- events ------------------------------------------------------------------------------------


def http_event(
    method: str,
    path: str,
    query: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The payload 2.0 event API Gateway sends for one request; ``bytes`` bodies arrive
    base64-encoded, as HTTP APIs pass binary media."""
    event = copy.deepcopy(json.loads(FIXTURE.read_text(encoding="utf-8")))
    event["rawPath"] = path
    event["requestContext"]["http"].update(method=method, path=path)
    event["requestContext"]["requestId"] = uuid.uuid4().hex[:16]
    event["rawQueryString"] = urlencode(query or {}, errors="surrogatepass")
    if query:
        event["queryStringParameters"] = dict(query)
    else:
        event.pop("queryStringParameters", None)
    event["headers"].update({k.lower(): v for k, v in (headers or {}).items()})
    if body is None:
        event.pop("body", None)
        event["isBase64Encoded"] = False
    elif isinstance(body, bytes):
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    else:
        event["body"] = body
        event["isBase64Encoded"] = False
    event["headers"]["content-length"] = str(len(body or ""))
    return event


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


@dataclass(frozen=True)
class QueryHandler:
    """A built query handler and the service behind it, which tests inspect."""

    handler: Handler
    service: SearchService


def invoke(built: QueryHandler, event: dict[str, Any]) -> Reply:
    response = built.handler(event, LambdaContext())
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8")
    return Reply(int(response["statusCode"]), dict(response.get("headers") or {}), body)


def get(built: QueryHandler, path: str, **query: str) -> Reply:
    """``GET path?query`` through the handler."""
    return invoke(built, http_event("GET", path, query))


# -- images and indexes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    key: str
    data: bytes
    scene: Scene
    vector: np.ndarray


def png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def make_images(model: ClipModel, n: int, seed: int, prefix: str = "images/") -> list[Image]:
    pairs = generate(n, seed=seed)
    blobs = [png(image) for image, _ in pairs]
    vectors = embed_images(model, blobs)
    return [
        Image(f"{prefix}{scene.colour}-{scene.shape}-{i:03d}.png", blob, scene, vector)
        for i, ((_, scene), blob, vector) in enumerate(zip(pairs, blobs, vectors, strict=True))
    ]


def record(model_id: str, image: Image, **changes: Any) -> EmbeddingRecord:
    fields: dict[str, Any] = {
        "key": image.key,
        "model": model_id,
        "id": image_id(image.key),
        "status": "ok",
        "sequencer": pad_sequencer("0001"),
        "updated_at": now_iso(),
        "vector": image.vector,
        "sha256": "0" * 64,
        "size": len(image.data),
    }
    fields.update(changes)
    return EmbeddingRecord(**fields)


def tombstone(model_id: str, key: str) -> EmbeddingRecord:
    """What the embed function writes for an ObjectRemoved event."""
    stamp = now_iso()
    return EmbeddingRecord(
        key=key,
        model=model_id,
        id=image_id(key),
        status="deleted",
        sequencer=pad_sequencer("0002"),
        updated_at=stamp,
        deleted_at=stamp,
    )


def publish_index(
    s3: Any,
    settings: Settings,
    model_id: str,
    images: list[Image],
    files: Mapping[str, bytes] | None = None,
    expansion_search: int = 0,
    scanned_from: str = "",
) -> CurrentIndex:
    """Build with the pipeline's ``build_index`` and publish as Publish does (conditional
    write of ``current.json``, naming ``expansion_search`` as Validate's choice when given).
    ``files`` replaces artifacts, to publish a broken version. The table's items are taken
    to be scanned from now (``scanned_from``): those written since are the fresh segment."""
    version = new_version()
    ids = np.array([image_id(i.key) for i in images], dtype=np.int64)
    vectors = np.stack([i.vector for i in images]).astype(np.float16)
    index = build_index(vectors, ids, settings.index, threads=1)
    index_name = index_file(settings.index.engine)
    with _tempdir() as folder:
        index.save(folder / index_name)
        KeyTable.write(folder / KEYS_FILE, ids, [i.key for i in images])
        for name in (index_name, KEYS_FILE):
            body = (files or {}).get(name, (folder / name).read_bytes())
            s3.put_object(
                Bucket=settings.bucket,
                Key=version_key(settings.index.prefix, version, name),
                Body=body,
            )
    previous = read_current(s3, settings.bucket, settings.index.prefix)
    current = CurrentIndex(
        version=version,
        model=model_id,
        count=len(images),
        built_at=now_iso(),
        scanned_from=scanned_from or now_iso(),
        published_at=now_iso(),
        dim=int(vectors.shape[1]),
        engine=settings.index.engine,
        dtype=settings.index.dtype,
        previous=previous.version if previous else "",
        expansion_search=expansion_search,
        headline={"recall_at_10": 1.0},
    )
    write_current(
        s3, settings.bucket, current, previous.etag if previous else None, settings.index.prefix
    )
    time.sleep(0.002)  # versions are named by time: keep two publishes apart
    return current


@contextmanager
def _tempdir() -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


# -- the stack ---------------------------------------------------------------------------------


@dataclass
class Stack:
    s3: Any
    dynamodb: Any
    store: EmbeddingStore
    settings: Settings
    model: ClipModel
    images: list[Image]
    clients: Clients

    @property
    def model_id(self) -> str:
        return self.model.model_id

    def publish(self, images: list[Image] | None = None, **kwargs: Any) -> CurrentIndex:
        return publish_index(
            self.s3,
            self.settings,
            self.model_id,
            self.images if images is None else images,
            **kwargs,
        )

    def load_handler(self) -> QueryHandler:
        """Build the query handler as a new sandbox's init would (model, index, resolver)."""
        reset_logging(self.settings)
        reset_cold_start_flag()
        handler = query.app.build(self.settings, self.clients)
        return QueryHandler(handler, handler.api.service)  # type: ignore[attr-defined]


def reset_logging(settings: Settings) -> None:
    """Unconfigure what a previous handler build configured, as in a new sandbox: Powertools
    configures a logger once, binding it to the sys.stdout of that moment (another test's)."""
    for name in (settings.observability.service, "imgsearch"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        for attribute in ("init", "powertools_handler"):
            if hasattr(logger, attribute):
                delattr(logger, attribute)


def demo_model() -> ClipModel:
    assert (DEMO_BUNDLE / "model.json").is_file(), "the committed demo bundle is missing"
    return ClipModel.load(DEMO_BUNDLE, threads=1)


def query_environment(tmp_path: Path, model: ClipModel) -> dict[str, str]:
    """The query function's environment on a test stack: its bucket and table, ``model``'s
    bundle, one thread, an index cache in ``tmp_path``, a check for new versions every second."""
    return {
        "IMGSEARCH_BUCKET": BUCKET,
        "IMGSEARCH_TABLE": TABLE,
        "IMGSEARCH_MODEL_URI": str(model.bundle.root),
        "IMGSEARCH_THREADS": "1",
        "IMGSEARCH_INDEX_CACHE_DIR": str(tmp_path / "indexes"),
        "IMGSEARCH_INDEX_REFRESH_SECONDS": "1",
        "POWERTOOLS_SERVICE_NAME": "imgsearch-query",
        "POWERTOOLS_METRICS_NAMESPACE": "imgsearch",
    }


@contextmanager
def query_stack(
    tmp_path: Path,
    model: ClipModel,
    images: list[Image],
    overrides: Mapping[str, str | None] | None = None,
) -> Iterator[Stack]:
    """A moto stack holding ``images``; ``overrides`` change the query function's environment
    (``None`` removes a variable, leaving the setting at its default)."""
    env: dict[str, str | None] = {
        **query_environment(tmp_path, model),
        "IMGSEARCH_DELETED_REFRESH_SECONDS": "0",
        "IMGSEARCH_MAX_UPLOAD_BYTES": "200000",
        "IMGSEARCH_MAX_K": "50",
        "IMGSEARCH_DEFAULT_K": "10",
        **(overrides or {}),
    }
    settings = Settings.from_env({k: v for k, v in env.items() if v is not None})
    reset_logging(settings)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        store = seed(s3, dynamodb, model, images)
        yield Stack(s3, dynamodb, store, settings, model, images, Clients.for_settings(settings))


def seed(s3: Any, dynamodb: Any, model: ClipModel, images: list[Image]) -> EmbeddingStore:
    """The bucket and the table, holding ``images`` and their embeddings by ``model``."""
    s3.create_bucket(Bucket=BUCKET)
    dynamodb.create_table(**table_definition(TABLE))
    store = EmbeddingStore(TABLE, dynamodb)
    for image in images:
        s3.put_object(Bucket=BUCKET, Key=image.key, Body=image.data, ContentType="image/png")
        store.put(record(model.model_id, image))
    return store


@dataclass
class QueryLoad:
    """What ``query_load`` saw: failed replies, and (index version, model) of the others."""

    failures: list[str] = field(default_factory=list)
    answers: list[tuple[str, str]] = field(default_factory=list)


@contextmanager
def query_load(built: QueryHandler, q: str, threads: int = 3) -> Iterator[QueryLoad]:
    """``threads`` clients searching ``q`` until the block ends. One handler is one Lambda
    environment, which serves one request at a time: the calls take turns."""
    seen = QueryLoad()
    stop = threading.Event()
    sandbox = threading.Lock()

    def query() -> None:
        while not stop.is_set():
            with sandbox:
                reply = get(built, "/search", q=q, k="3")
            if reply.status != 200:
                seen.failures.append(f"{reply.status} {reply.json}")
            else:
                seen.answers.append((reply.json["index_version"], reply.json["model"]))

    clients = [threading.Thread(target=query) for _ in range(threads)]
    for client in clients:
        client.start()
    try:
        yield seen
    finally:
        stop.set()
        for client in clients:
            client.join()
