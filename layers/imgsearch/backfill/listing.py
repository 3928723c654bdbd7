"""The backfill's listing: the keys to embed, written as chunk manifests a few thousand at a time.

The source is the bucket itself (paged ``ListObjectsV2``) or an S3 Inventory report (CSV). One
call holds a few chunks in memory (the one it fills and up to ``MANIFEST_WRITERS`` being
written, as the next pages are listed) and stops after ``list_objects_per_call`` objects or when its
Lambda is near its timeout, saying where to go on; the state machine calls again until ``done``,
when the last call writes ``chunks.json``, the list the Distributed Map reads::

    state = begin(settings, s3, options, run_id="run-1", started_at=now_iso())
    while not state.done:
        state = list_more(settings, s3, state, deadline=time.monotonic() + 600)
    state.items_key          # "backfill/run-1/chunks.json"
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from imgsearch.backfill.contracts import (
    BackfillOptions,
    ChunkItem,
    ChunkManifest,
    ListingState,
    Resume,
)
from imgsearch.backfill.errors import BackfillError
from imgsearch.backfill.layout import RunLayout
from imgsearch.catalog.contract import write_object
from imgsearch.catalog.current import read_current
from imgsearch.catalog.registry import read_record
from imgsearch.core.aws import is_not_found
from imgsearch.core.config import Settings
from imgsearch.core.keys import decode_event_key, is_image_key, split_s3_uri
from imgsearch.ingest.pipeline import ListedObject
from imgsearch.model.bundle import bundle_model_id

logger = logging.getLogger(__name__)

PAGE = 1000
"""Objects between two checks of the budget (one ``ListObjectsV2`` page), at most."""
MANIFEST_WRITERS = 8
"""Manifests written at once while the listing goes on: a ``PutObject`` then costs the listing
nothing (10M keys are 10,000 manifests, over three minutes of writes one after another)."""
INVENTORY_COLUMNS = ("Bucket", "Key", "Size", "ETag")
"""Inventory fields the backfill needs; the report must have been configured with them."""


def begin(
    settings: Settings, s3: Any, options: BackfillOptions, run_id: str, started_at: str
) -> ListingState:
    """Resolve the run's options against the stack; refuse what cannot work, before any work."""
    prefix = options.prefix or settings.image_prefix
    if not prefix.startswith(settings.image_prefix):
        raise BackfillError(
            f"prefix {prefix!r} is outside the image prefix {settings.image_prefix!r}: the "
            "stack only reads (and its index only holds) keys under the image prefix"
        )
    bundle = bundle_model_id(settings.model.uri, s3, settings.model.cache_dir)
    current = read_current(s3, settings.bucket, settings.index.prefix)
    model = options.model or (current.model if current else bundle)
    if model != bundle and read_record(s3, settings.bucket, model) is None:
        raise BackfillError(
            f"cannot backfill with {model}: it is neither the functions' bundle ({bundle}) nor "
            "a registered model (imgsearch model register)"
        )
    cap = settings.backfill.max_concurrency
    if options.max_concurrency > cap:
        raise BackfillError(
            f"max_concurrency {options.max_concurrency} is above the stack's limit {cap} "
            "(the BackfillMaxConcurrency parameter)"
        )
    if options.inventory:
        _read_inventory_manifest(s3, options.inventory)  # fail now on a report that cannot serve
    state = ListingState(
        run_id=run_id,
        started_at=started_at,
        bucket=settings.image_bucket,
        prefix=prefix,
        model=model,
        chunk_size=options.chunk_size or settings.backfill.chunk_size,
        max_concurrency=options.max_concurrency or cap,
        force=options.force,
        inventory=options.inventory,
    )
    logger.info(
        "backfill %s: %s under s3://%s/%s with %s",
        run_id,
        "inventory " + options.inventory if options.inventory else "listing",
        state.bucket,
        prefix,
        model,
    )
    return state


class _Chunks:
    """Fills chunk manifests from the objects one listing call finds and writes them on
    ``MANIFEST_WRITERS`` threads; ``state_after`` waits for every write (and raises its error)."""

    def __init__(self, s3: Any, settings: Settings, state: ListingState, writers: Executor) -> None:
        self.s3, self.bucket, self.state = s3, settings.bucket, state
        self.layout = RunLayout(settings.backfill.prefix, state.run_id)
        self.buffer: list[ListedObject] = []
        self.chunks = state.chunks
        self.listed = self.queued = self.ignored = 0
        self.writers = writers
        self.writing: deque[Future[None]] = deque()

    def add(self, key: str, etag: str, size: int | None) -> None:
        self.listed += 1
        if not is_image_key(key, self.state.prefix):
            self.ignored += 1
            return
        self.queued += 1
        self.buffer.append(ListedObject(key=key, etag=etag.strip('"'), size=size))
        if len(self.buffer) >= self.state.chunk_size:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        self.chunks += 1
        manifest = ChunkManifest(
            run_id=self.state.run_id,
            chunk=self.chunks,
            bucket=self.state.bucket,
            objects=self.buffer,
        )
        key = self.layout.manifest(self.chunks)
        if len(self.writing) >= MANIFEST_WRITERS:
            self.writing.popleft().result()
        self.writing.append(self.writers.submit(write_object, self.s3, self.bucket, key, manifest))
        self.buffer = []

    def state_after(self, resume: Resume | None) -> ListingState:
        """The state once this call's objects are in manifests; ``resume`` None: all listed."""
        self.flush()
        while self.writing:
            self.writing.popleft().result()
        state = self.state
        update: dict[str, Any] = {
            "listed": state.listed + self.listed,
            "queued": state.queued + self.queued,
            "ignored": state.ignored + self.ignored,
            "chunks": self.chunks,
            "listing_calls": state.listing_calls + 1,
            "resume": resume or Resume(),
            "done": resume is None,
        }
        if resume is None:
            items = [
                ChunkItem(chunk=n, manifest=self.layout.manifest(n)).model_dump()
                for n in range(1, self.chunks + 1)
            ]
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.layout.items,
                Body=json.dumps(items).encode(),
                ContentType="application/json",
            )
            update["items_key"] = self.layout.items
        return state.model_copy(update=update)


def list_more(settings: Settings, s3: Any, state: ListingState, deadline: float) -> ListingState:
    """Go on listing from ``state.resume`` until done, the call's object budget, or ``deadline``
    (``time.monotonic()``); returns the state to pass to the next call."""
    if state.done:
        return state
    budget = settings.backfill.list_objects_per_call
    page = min(PAGE, budget)
    with ThreadPoolExecutor(MANIFEST_WRITERS, thread_name_prefix="manifests") as writers:
        chunks = _Chunks(s3, settings, state, writers)

        def spent() -> bool:
            return chunks.listed >= budget or time.monotonic() >= deadline

        if state.inventory:
            resume = _from_inventory(s3, state, chunks, spent, page)
        else:
            resume = _from_bucket(s3, state, chunks, spent, page)
        after = chunks.state_after(resume)
    logger.info(
        "backfill %s: listed %d (%d images) in %d chunks so far%s",
        state.run_id,
        after.listed,
        after.queued,
        after.chunks,
        ", done" if after.done else ", going on",
    )
    return after


def _from_bucket(
    s3: Any, state: ListingState, chunks: _Chunks, spent: Callable[[], bool], page_size: int
) -> Resume | None:
    request: dict[str, Any] = {"Bucket": state.bucket, "Prefix": state.prefix, "MaxKeys": page_size}
    if state.resume.start_after:
        request["StartAfter"] = state.resume.start_after
    while True:
        page = s3.list_objects_v2(**request)
        contents = page.get("Contents", [])
        for item in contents:
            chunks.add(item["Key"], item.get("ETag", ""), item.get("Size"))
        if not page.get("IsTruncated"):
            return None
        if spent() and contents:
            # A plain key to start after, rather than the token: valid in any later call.
            return Resume(start_after=contents[-1]["Key"])
        request["ContinuationToken"] = page["NextContinuationToken"]


def _read_inventory_manifest(s3: Any, uri: str) -> tuple[str, dict[str, int], list[str]]:
    """(bucket of the data files, column positions, data file keys) of an inventory report."""
    bucket, key = split_s3_uri(uri)
    try:
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if is_not_found(exc):
            raise BackfillError(f"no S3 Inventory manifest at {uri}") from None
        raise
    except json.JSONDecodeError as exc:
        raise BackfillError(f"{uri} is not an S3 Inventory manifest: {exc}") from None
    if manifest.get("fileFormat") != "CSV":
        raise BackfillError(
            f"{uri}: inventory format {manifest.get('fileFormat')!r} is not supported; "
            "configure the inventory as CSV"
        )
    columns = [name.strip() for name in str(manifest.get("fileSchema", "")).split(",")]
    missing = [name for name in INVENTORY_COLUMNS if name not in columns]
    if missing:
        raise BackfillError(f"{uri}: the inventory has no {', '.join(missing)} field")
    positions = {name: columns.index(name) for name in columns}
    files = [str(entry["key"]) for entry in manifest.get("files", [])]
    destination = str(manifest.get("destinationBucket", bucket)).rpartition(":")[2] or bucket
    return destination, positions, files


def _inventory_rows(s3: Any, bucket: str, key: str) -> Iterator[list[str]]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with gzip.GzipFile(fileobj=body) as unzipped:
        yield from csv.reader(io.TextIOWrapper(unzipped, encoding="utf-8", newline=""))


def _from_inventory(
    s3: Any, state: ListingState, chunks: _Chunks, spent: Callable[[], bool], page_size: int
) -> Resume | None:
    bucket, column, files = _read_inventory_manifest(s3, state.inventory)
    latest, marker = column.get("IsLatest"), column.get("IsDeleteMarker")
    for number in range(state.resume.inventory_file, len(files)):
        first = state.resume.inventory_row if number == state.resume.inventory_file else 0
        for row_number, row in enumerate(_inventory_rows(s3, bucket, files[number])):
            if row_number < first:
                continue
            # Versioned inventories list every version: the current, live one is the object.
            if latest is not None and row[latest] != "true":
                continue
            if marker is not None and row[marker] == "true":
                continue
            if row[column["Bucket"]] != state.bucket:
                continue
            # Inventory CSVs URL-encode keys the way event notifications do.
            key = decode_event_key(row[column["Key"]])
            if key.startswith(state.prefix):
                size = row[column["Size"]]
                chunks.add(key, row[column["ETag"]], int(size) if size else None)
            if (row_number + 1) % page_size == 0 and spent():
                return Resume(inventory_file=number, inventory_row=row_number + 1)
    return None
