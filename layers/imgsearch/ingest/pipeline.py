"""The embed function's batch logic: S3 object events in, embeddings-table items out.

For one SQS batch (see ``events.parse_batch``)::

    ingestor = Ingestor.from_settings(Settings.from_env(), s3=s3, dynamodb=dynamodb)
    report = ingestor.process(parse_batch(sqs_event, "images/"))
    report.is_failed(message_id)     # True only for transient failures: SQS redelivers those

The steps, and why:

1. Keep the newest event per key in the batch (by S3 ``sequencer``); older ones are superseded.
2. One strongly consistent ``batch_get`` of the items the serving model holds for those keys;
   an event whose sequencer is not newer than the item's is a duplicate or stale delivery and
   is dropped here: no S3 read, no model call, no write. This is the idempotency.
3. Deletes write a tombstone (``status=deleted``, ``deleted_at``) with the delete's sequencer,
   for every model that holds the key (the others first).
4. Puts, ``batch_size`` at a time: read the objects concurrently (the exact version: ``VersionId``
   when the bucket is versioned, else ``If-Match`` on the event's ETag), hash them, reuse the
   vector of bytes already embedded (this batch, else the ``by-sha256`` index), and embed the
   remaining distinct images in one model call. The next batch's objects are read while this
   one is decoded, embedded and written, so S3's time hides behind the CPU's (at most two
   batches' bytes are held at once).
5. Conditional writes (``EmbeddingStore.put``): only a strictly newer sequencer wins, so a race
   with a concurrent invocation cannot bring back older state.

Bad images become ``quarantined`` items (final); an AWS call that fails marks the event's
message failed, to be redelivered (and, after the queue's ``maxReceiveCount``, dead-lettered).

The backfill feeds listed objects through the same steps 4 and 5 (``Ingestor.backfill``), with
its own rules for 2 and 5: an object is embedded unless the table holds it already (same ETag);
the read is of that very ETag (``If-Match``: a newer object is its own event's work, a deleted
one is skipped), and the write is conditional on the item being unchanged since it was read, so
an S3 event that lands meanwhile wins, and one that lands later replaces it::

    report = ingestor.backfill(listed_objects, bucket="my-bucket", label="chunk-000001")
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
from aws_lambda_powertools import Tracer
from botocore.exceptions import ClientError

from imgsearch.catalog.contract import Part
from imgsearch.core.clock import now_iso
from imgsearch.core.config import Settings
from imgsearch.core.keys import image_id
from imgsearch.ingest.errors import error_code, is_transient
from imgsearch.ingest.events import Message, ObjectEvent
from imgsearch.model import ClipModel, ImageError
from imgsearch.model.batch import preprocess_many
from imgsearch.model.errors import TooManyBytes
from imgsearch.model.preprocess import ImageLimits
from imgsearch.store import EmbeddingRecord, EmbeddingStore, pad_sequencer
from imgsearch.usage.log import UsageLog, usage_log
from imgsearch.usage.records import IngestRecord, encode_vector

tracer = Tracer()

Result = Literal["embedded", "quarantined", "deleted", "skipped", "failed"]

OBJECT_MISSING = "object_missing"
"""Quarantine reason: the object was gone (NoSuchKey/NoSuchVersion) when it was read."""
# Skip reasons decided here (``events`` holds the ones decided while parsing).
SUPERSEDED = "superseded"
DUPLICATE = "duplicate"
STALE = "stale"
UNCHANGED = "unchanged"
"""Backfill: the table already holds this object (same ETag) for the model."""
GONE = "gone"
"""Backfill: the listed object was deleted before it was read (its event's work)."""
BACKFILL_SEQUENCER = pad_sequencer("0")
"""What a backfill writes for a key the table does not hold: below every S3 sequencer, so any
real event of the key, put or delete, replaces it."""
BACKFILL_EVENT = "Backfill"
# Failure kinds (``Outcome.reason`` of a failed event).
TRANSIENT = "transient"
UNEXPECTED = "unexpected"

_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})

T = TypeVar("T")


class ListedObject(Part):
    """An object as a listing (``ListObjectsV2`` or an S3 Inventory report) saw it."""

    key: str
    etag: str
    """Without the quotes S3 puts around it in listings, as in its event notifications."""
    size: int | None = None


def backfill_verdict(obj: ListedObject, record: EmbeddingRecord | None, force: bool) -> str | None:
    """Why the backfill leaves ``obj`` alone (a skip reason), or ``None`` to embed it.

    An item of another ETag (or a tombstone) is not the listed object: either that object's
    event is still on its way or it was lost. The read (``If-Match`` the listed ETag) tells
    which object is current, and the conditional write lets a racing event win.

    >>> item = EmbeddingRecord("images/a.jpg", "m@1", 1, "ok", "0" * 32, "", etag="e1")
    >>> backfill_verdict(ListedObject(key="images/a.jpg", etag="e1"), item, force=False)
    'unchanged'
    >>> backfill_verdict(ListedObject(key="images/a.jpg", etag="e2"), item, force=False)
    """
    if record is not None and record.etag == obj.etag and record.status != "deleted":
        return None if force else UNCHANGED
    return None


@dataclass(frozen=True)
class Outcome:
    """What happened to one S3 record (or one skipped message)."""

    message_id: str
    key: str
    result: Result
    reason: str = ""
    """Quarantine reason, skip reason, or failure kind (``transient`` | ``unexpected``)."""
    detail: str = ""
    reused: bool = False
    """``embedded`` without a model call: the same bytes were already embedded."""


@dataclass
class Timings:
    """Wall time per phase of one batch, in seconds (the benchmark's breakdown)."""

    s3_read: float = 0.0
    """Time spent waiting for reads: a read that finished during the previous batch's work
    costs nothing here."""
    preprocess: float = 0.0
    model: float = 0.0
    dynamodb: float = 0.0
    model_images: int = 0
    model_calls: int = 0


@dataclass
class BatchReport:
    messages: list[Message]
    outcomes: list[Outcome]
    timings: Timings = field(default_factory=Timings)
    model: str = ""
    """The model the outcomes are of."""

    def outcomes_for(self, message_id: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.message_id == message_id]

    def is_failed(self, message_id: str) -> bool:
        return any(o.result == "failed" for o in self.outcomes_for(message_id))


@dataclass
class _Work:
    """One put event on its way through read, hash, embed and write."""

    event: ObjectEvent
    data: bytes | None = None
    sha256: str | None = None
    vector: np.ndarray | None = None
    reason: str | None = None
    detail: str = ""
    reused: bool = False
    done: Outcome | None = None
    """Set when the event is finished without a write (skipped or failed)."""
    backfill: bool = False
    read: EmbeddingRecord | None = None
    """Backfill: the item its decision was made on (the write is conditional on it)."""


def newest_per_key(events: Iterable[ObjectEvent]) -> tuple[list[ObjectEvent], list[Outcome]]:
    """The newest event of each key; the others as ``superseded``/``duplicate`` skips."""
    by_key: dict[str, list[ObjectEvent]] = defaultdict(list)
    for event in events:
        by_key[event.key].append(event)
    newest: list[ObjectEvent] = []
    dropped: list[Outcome] = []
    for key, group in by_key.items():
        winner = max(group, key=lambda e: e.sequencer)
        newest.append(winner)
        for event in group:
            if event is winner:
                continue
            reason = DUPLICATE if event.sequencer == winner.sequencer else SUPERSEDED
            dropped.append(Outcome(event.message_id, key, "skipped", reason))
    return newest, dropped


def _guarded(fn: Callable[[T], None], item: T) -> BaseException | None:
    """``fn(item)``; the exception it raised, or None."""
    try:
        fn(item)
    except Exception as exc:
        return exc
    return None


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Ingestor:
    """Turns parsed S3 events into embeddings-table items with one model call per chunk."""

    def __init__(
        self,
        store: EmbeddingStore,
        s3: Any,
        model: ClipModel,
        limits: ImageLimits = ImageLimits(),
        batch_size: int = 16,
        io_workers: int = 16,
        logger: logging.Logger | Any = None,
        usage: UsageLog = usage_log,
    ) -> None:
        self.store = store
        self.usage = usage
        self.s3 = s3
        self.model = model
        self.model_id = model.model_id
        self.limits = limits
        self.batch_size = batch_size
        self.log = logger or logging.getLogger(__name__)
        self._pool = ThreadPoolExecutor(max_workers=io_workers, thread_name_prefix="ingest-io")
        # Reads of the next batch run on their own threads, so this batch's lookups and writes
        # never queue behind them.
        self._reads = ThreadPoolExecutor(max_workers=io_workers, thread_name_prefix="ingest-read")

    @classmethod
    def from_settings(
        cls, settings: Settings, s3: Any, dynamodb: Any, logger: logging.Logger | Any = None
    ) -> Ingestor:
        """Load the configured bundle (``settings.model.uri``)."""
        model = ClipModel.load(
            settings.model.uri,
            threads=settings.model.threads,
            cache_dir=settings.model.cache_dir,
            s3_client=s3,
        )
        return cls(
            EmbeddingStore(settings.table, dynamodb),
            s3,
            model,
            ImageLimits(settings.model.max_image_bytes, settings.model.max_image_pixels),
            batch_size=settings.model.batch_size,
            logger=logger,
        )

    def process(self, messages: Sequence[Message]) -> BatchReport:
        report = BatchReport(list(messages), [], model=self.model_id)
        for message in messages:
            report.outcomes.extend(
                Outcome(s.message_id, s.key, "skipped", s.reason, s.detail) for s in message.skipped
            )
        newest, dropped = newest_per_key(e for m in messages for e in m.events)
        report.outcomes.extend(dropped)
        if not newest:
            return report
        timings = report.timings
        held = self._held(newest, report)
        if held is None:
            return report
        fresh: list[ObjectEvent] = []
        for event in newest:
            record = held.get(event.key)
            if record is not None and record.sequencer >= event.sequencer:
                reason = DUPLICATE if record.sequencer == event.sequencer else STALE
                detail = f"table holds {record.status} at sequencer {record.sequencer}"
                report.outcomes.append(
                    Outcome(event.message_id, event.key, "skipped", reason, detail)
                )
            else:
                fresh.append(event)
        deletes = [e for e in fresh if e.action == "delete"]
        puts = [e for e in fresh if e.action == "put"]
        if deletes:
            started = time.perf_counter()
            report.outcomes.extend(self._settle(self._delete, [_Work(e) for e in deletes]))
            timings.dynamodb += time.perf_counter() - started
        report.outcomes.extend(self._ingest_all([_Work(e) for e in puts], timings))
        return report

    def backfill(
        self, objects: Sequence[ListedObject], bucket: str, label: str, force: bool = False
    ) -> BatchReport:
        """Embed the listed objects the table lacks (``backfill_verdict``); ``label`` names the
        work in outcomes (where an event's SQS message id goes). ``force`` also re-embeds what
        is already embedded, with a model call for each distinct image."""
        report = BatchReport([], [], model=self.model_id)
        events = [
            ObjectEvent(
                label,
                "put",
                bucket,
                o.key,
                BACKFILL_SEQUENCER,
                BACKFILL_EVENT,
                etag=o.etag,
                size=o.size,
            )
            for o in objects
        ]
        held = self._held(events, report)
        if held is None:
            return report
        works: list[_Work] = []
        for obj, event in zip(objects, events, strict=True):
            record = held.get(obj.key)
            reason = backfill_verdict(obj, record, force)
            if reason and record:  # a verdict is only reached on an item
                detail = f"table holds {record.status} written {record.updated_at}"
                report.outcomes.append(Outcome(label, obj.key, "skipped", reason, detail))
                continue
            if record:  # a replaced item keeps its sequencer: the events it saw stay seen
                event = dataclasses.replace(event, sequencer=record.sequencer)
            works.append(_Work(event, backfill=True, read=record))
        report.outcomes.extend(self._ingest_all(works, report.timings, reuse=not force))
        return report

    def _held(
        self, events: Sequence[ObjectEvent], report: BatchReport
    ) -> dict[str, EmbeddingRecord] | None:
        """What the table holds for the events' keys (one consistent read); ``None``, with
        every event failed in ``report``, when it cannot be read."""
        started = time.perf_counter()
        try:
            return self.store.batch_get([e.key for e in events], self.model_id)
        except Exception as exc:  # every AWS failure is retried; see _failed
            report.outcomes.extend(self._failed(e, exc) for e in events)
            return None
        finally:
            report.timings.dynamodb += time.perf_counter() - started

    # -- deletes -------------------------------------------------------------------------------

    def _delete(self, work: _Work) -> Outcome:
        event = work.event
        now = now_iso()

        def tombstone(model: str) -> EmbeddingRecord:
            return EmbeddingRecord(
                key=event.key,
                model=model,
                id=image_id(event.key),
                status="deleted",
                sequencer=event.sequencer,
                updated_at=now,
                deleted_at=now,
                reason=event.event_name,
            )

        # Every model's item becomes a tombstone (a rollout's candidate, a model kept for a
        # rollback: its index must hide the image too). Others go first: if this fails, this
        # model's tombstone is not written yet and the redelivered event does all of it again.
        for model in self.store.models_for_key(event.key):
            if model != self.model_id:
                self.store.put(tombstone(model))  # False: that model saw a newer event
        if not self.store.put(tombstone(self.model_id)):
            return Outcome(event.message_id, event.key, "skipped", STALE, "lost a write race")
        return Outcome(event.message_id, event.key, "deleted")

    # -- puts ----------------------------------------------------------------------------------

    def _ingest_all(
        self, works: Sequence[_Work], timings: Timings, reuse: bool = True
    ) -> list[Outcome]:
        """``batch_size`` at a time, each batch's reads started before the previous batch's
        decode, model call and writes."""
        batches = list(_chunks(works, self.batch_size))
        vectors: dict[str, np.ndarray | ImageError] = {}
        outcomes: list[Outcome] = []
        reading = self._start_reads(batches[0]) if batches else []
        for number, batch in enumerate(batches):
            started = time.perf_counter()
            errors = [future.result() for future in reading]
            timings.s3_read += time.perf_counter() - started
            following = batches[number + 1] if number + 1 < len(batches) else []
            reading = self._start_reads(following)
            for work, error in zip(batch, errors, strict=True):
                if error is not None:
                    work.done = self._failed(work.event, error)
            outcomes.extend(self._ingest_chunk(batch, vectors, timings, reuse))
        return outcomes

    def _start_reads(self, works: Sequence[_Work]) -> list[Future[BaseException | None]]:
        return [self._reads.submit(_guarded, self._read, work) for work in works]

    @tracer.capture_method(capture_response=False)
    def _ingest_chunk(
        self,
        works: Sequence[_Work],
        vectors: dict[str, np.ndarray | ImageError],
        timings: Timings,
        reuse: bool,
    ) -> list[Outcome]:
        """One read batch: reuse or embed its distinct images, then write each."""
        readable = [w for w in works if w.done is None and w.data is not None]
        started = time.perf_counter()
        unknown = list({w.sha256: w for w in readable if w.sha256 not in vectors}.values())
        lookups = unknown if reuse else []
        for work, error in zip(lookups, self._map(self._find_copy, lookups), strict=True):
            if error is not None:
                for same in readable:
                    if same.sha256 == work.sha256:
                        same.done = self._failed(same.event, error)
            elif work.vector is not None:
                vectors[work.sha256 or ""] = work.vector
        timings.dynamodb += time.perf_counter() - started

        to_embed = [w for w in unknown if w.done is None and w.vector is None]
        if to_embed:
            try:
                self._embed(to_embed, vectors, timings)
            except Exception as exc:  # an onnxruntime failure is not the images' fault: retry
                for work in readable:
                    if work.done is None and work.sha256 not in vectors:
                        work.done = self._failed(work.event, exc)
        embedded_now = {w.sha256 for w in to_embed}
        for work in readable:
            if work.done is not None:
                continue
            result = vectors[work.sha256 or ""]
            if isinstance(result, ImageError):
                work.reason, work.detail = result.reason, result.detail
            else:
                work.vector = result
                # The first event of bytes embedded in this call paid the model; the rest reuse.
                work.reused = work.sha256 not in embedded_now
                embedded_now.discard(work.sha256)
            work.data = None  # release the bytes before the writes

        writable = [w for w in works if w.done is None]
        started = time.perf_counter()
        outcomes = [w.done for w in works if w.done is not None]
        outcomes.extend(self._settle(self._write, writable))
        timings.dynamodb += time.perf_counter() - started
        return outcomes

    def _read(self, work: _Work) -> None:
        """Fetch the event's object version; a verdict instead of bytes when there is one."""
        event = work.event
        if event.size is not None and event.size > self.limits.max_bytes:
            work.reason = TooManyBytes.reason
            work.detail = f"{event.size} bytes, limit {self.limits.max_bytes}"
            return
        request: dict[str, Any] = {"Bucket": event.bucket, "Key": event.key}
        if event.version_id:
            request["VersionId"] = event.version_id
        elif event.etag:
            request["IfMatch"] = f'"{event.etag}"'
        try:
            response = self.s3.get_object(**request)
        except ClientError as exc:
            code = error_code(exc)
            if code in _MISSING_CODES and work.backfill:
                work.done = Outcome(event.message_id, event.key, "skipped", GONE, code or "")
                return
            if code in _MISSING_CODES:
                work.reason, work.detail = OBJECT_MISSING, f"{code} when read"
                return
            if code in _PRECONDITION_CODES:
                # Overwritten since this event: the newer put's own event brings the new bytes.
                work.done = Outcome(
                    event.message_id, event.key, "skipped", SUPERSEDED, "object overwritten"
                )
                return
            raise
        body = response["Body"]
        with body:
            length = int(response.get("ContentLength") or 0)
            if length > self.limits.max_bytes:
                work.reason = TooManyBytes.reason
                work.detail = f"{length} bytes, limit {self.limits.max_bytes}"
                return
            work.data = body.read()
        work.sha256 = hashlib.sha256(work.data).hexdigest()

    def _find_copy(self, work: _Work) -> None:
        record = self.store.find_by_sha256(work.sha256 or "", self.model_id)
        if record is not None and record.vector is not None:
            work.vector = record.vector

    def _embed(
        self, works: Sequence[_Work], vectors: dict[str, np.ndarray | ImageError], timings: Timings
    ) -> None:
        """Preprocess the distinct images, then one model call for all that decoded."""
        started = time.perf_counter()
        prepared = preprocess_many(self.model, [w.data or b"" for w in works], self.limits)
        timings.preprocess += time.perf_counter() - started
        good = [i for i, p in enumerate(prepared) if not isinstance(p, ImageError)]
        for work, pixels in zip(works, prepared, strict=True):
            if isinstance(pixels, ImageError):
                vectors[work.sha256 or ""] = pixels
        if not good:
            return
        started = time.perf_counter()
        out = self.model.encode_images([prepared[i] for i in good])
        timings.model += time.perf_counter() - started
        timings.model_images += len(good)
        timings.model_calls += 1
        for row, index in enumerate(good):
            vectors[works[index].sha256 or ""] = out[row]

    def _write(self, work: _Work) -> Outcome:
        event = work.event
        record = EmbeddingRecord(
            key=event.key,
            model=self.model_id,
            id=image_id(event.key),
            status="quarantined" if work.reason else "ok",
            sequencer=event.sequencer,
            updated_at=now_iso(),
            vector=None if work.reason else work.vector,
            reason=work.reason,
            sha256=work.sha256,
            etag=event.etag or None,
            size=event.size,
        )
        if work.backfill:
            written = self.store.put_if_unchanged(record, work.read)
        else:
            written = self.store.put(record)
        if not written:
            return Outcome(event.message_id, event.key, "skipped", STALE, "lost a write race")
        if work.reason:
            return Outcome(event.message_id, event.key, "quarantined", work.reason, work.detail)
        if not work.backfill and work.vector is not None:
            # An upload, not the past filled in: the drift monitor's new images.
            self.usage.emit(
                IngestRecord(
                    record.updated_at, event.key, self.model_id, encode_vector(work.vector)
                )
            )
        return Outcome(event.message_id, event.key, "embedded", reused=work.reused)

    # -- helpers -------------------------------------------------------------------------------

    def _map(self, fn: Callable[[T], None], items: Sequence[T]) -> list[BaseException | None]:
        """Run ``fn`` over ``items`` on the I/O pool; the exception of each, or None."""
        return list(self._pool.map(functools.partial(_guarded, fn), items))

    def _settle(self, fn: Callable[[_Work], Outcome], works: Sequence[_Work]) -> list[Outcome]:
        """``fn`` over works on the I/O pool; a failure outcome for each one that raises."""

        def guarded(work: _Work) -> Outcome:
            try:
                return fn(work)
            except Exception as exc:
                return self._failed(work.event, exc)

        return list(self._pool.map(guarded, works))

    def _failed(self, event: ObjectEvent, exc: BaseException) -> Outcome:
        """Any failure that is not a verdict on the image goes back to the queue.

        Transient ones (throttling, timeouts, 5xx) are expected to pass on a later receive;
        anything else (a permission or code error) is logged with its traceback and still
        retried, so that after ``maxReceiveCount`` the message waits in the DLQ instead of
        being lost.
        """
        transient = is_transient(exc)
        extra = {
            "key": event.key,
            "message_id": event.message_id,
            "error": error_code(exc) or type(exc).__name__,
        }
        if transient:
            self.log.warning("transient failure, message will be retried", extra=extra)
        else:
            self.log.error("unexpected failure, message will be retried", extra=extra, exc_info=exc)
        kind = TRANSIENT if transient else UNEXPECTED
        return Outcome(event.message_id, event.key, "failed", kind, f"{type(exc).__name__}: {exc}")
