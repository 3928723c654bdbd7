"""The usage log's records: one JSON object per line, told apart by their ``usage`` field.

The query function writes a ``search`` record per search and a ``feedback`` record per
``POST /feedback``; the embed function a ``ingest`` record per image an S3 event embedded (the
drift monitor's "new images"). ``imgsearch.usage.log`` writes them, ``imgsearch.usage.reader``
reads them back from S3 and ``imgsearch.usage.join`` ties feedback to its search::

    record = SearchRecord(query_id=qid, time=now_iso(), model="demo-clip@3", index_version=v,
                          kind="text", text="two red circles", k=20, offset=0,
                          results=(Shown("images/a.png", 0.31),), latency_ms=4.2,
                          vector=encode_vector(vector))
    line = record.to_json()
    parse_record(json.loads(line)) == record    # True

Vectors travel as base64 float16 (1,368 characters at 512-d): the monitor compares them with
the index's float16 reference sample, so nothing is lost that the index kept.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

USAGE_FIELD = "usage"
"""Every record has it (its kind); no other line of a function's log does."""

SearchKind = Literal["text", "image", "similar"]
FeedbackEvent = Literal["click", "relevant", "irrelevant"]
FEEDBACK_EVENTS: tuple[str, ...] = ("click", "relevant", "irrelevant")


class RecordError(ValueError):
    """A line of the usage log is not a record this version reads."""


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f2")


@dataclass(frozen=True)
class Shown:
    """A result as the user saw it (its rank is its position in ``results`` plus ``offset``)."""

    key: str
    score: float


@dataclass(frozen=True)
class SearchRecord:
    query_id: str
    time: str
    model: str
    index_version: str
    kind: SearchKind
    k: int
    offset: int
    """Results before this page (a cursor's page 2 starts after page 1's)."""
    results: tuple[Shown, ...]
    latency_ms: float
    text: str | None = None
    """The normalised query text (``kind == "text"``)."""
    image_sha256: str | None = None
    """The uploaded image's sha256 (``kind == "image"``): the log keeps no image."""
    key: str | None = None
    """The stored image searched like (``kind == "similar"``)."""
    vector: str | None = None
    """The query embedding (``encode_vector``)."""

    def to_json(self) -> str:
        body: dict[str, Any] = {
            USAGE_FIELD: "search",
            "query_id": self.query_id,
            "time": self.time,
            "model": self.model,
            "index_version": self.index_version,
            "kind": self.kind,
            "k": self.k,
            "offset": self.offset,
            "results": [[shown.key, round(shown.score, 6)] for shown in self.results],
            "latency_ms": round(self.latency_ms, 3),
        }
        for name in ("text", "image_sha256", "key", "vector"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    def rank_of(self, key: str) -> int | None:
        """The 1-based rank ``key`` was shown at, None if this page did not show it."""
        for position, shown in enumerate(self.results):
            if shown.key == key:
                return self.offset + position + 1
        return None


@dataclass(frozen=True)
class FeedbackRecord:
    query_id: str
    time: str
    key: str
    event: FeedbackEvent
    rank: int | None = None
    """The rank the page says it showed ``key`` at (the search record's own rank wins)."""

    def to_json(self) -> str:
        body: dict[str, Any] = {
            USAGE_FIELD: "feedback",
            "query_id": self.query_id,
            "time": self.time,
            "key": self.key,
            "event": self.event,
        }
        if self.rank is not None:
            body["rank"] = self.rank
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class IngestRecord:
    """An image an S3 event embedded, with its embedding: the drift monitor's new data."""

    time: str
    key: str
    model: str
    vector: str

    def to_json(self) -> str:
        body = {
            USAGE_FIELD: "ingest",
            "time": self.time,
            "key": self.key,
            "model": self.model,
            "vector": self.vector,
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


Record = SearchRecord | FeedbackRecord | IngestRecord


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise RecordError(f"{body.get(USAGE_FIELD)} record: {name!r} is missing or not {kind}")
    return value


def _optional(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise RecordError(f"{body.get(USAGE_FIELD)} record: {name!r} is not {kind}")
    return value


def parse_search(body: dict[str, Any]) -> SearchRecord:
    results = _field(body, "results", list)
    try:
        shown = tuple(Shown(str(key), float(score)) for key, score in results)
    except (TypeError, ValueError) as exc:
        raise RecordError("search record: results must be [key, score] pairs") from exc
    kind = _field(body, "kind", str)
    if kind not in ("text", "image", "similar"):
        raise RecordError(f"search record: unknown kind {kind!r}")
    return SearchRecord(
        query_id=_field(body, "query_id", str),
        time=_field(body, "time", str),
        model=_field(body, "model", str),
        index_version=_field(body, "index_version", str),
        kind=kind,
        k=_field(body, "k", int),
        offset=_field(body, "offset", int),
        results=shown,
        latency_ms=float(_field(body, "latency_ms", (int, float))),
        text=_optional(body, "text", str),
        image_sha256=_optional(body, "image_sha256", str),
        key=_optional(body, "key", str),
        vector=_optional(body, "vector", str),
    )


def _feedback(body: dict[str, Any]) -> FeedbackRecord:
    event = _field(body, "event", str)
    if event not in FEEDBACK_EVENTS:
        raise RecordError(f"feedback record: unknown event {event!r}")
    return FeedbackRecord(
        query_id=_field(body, "query_id", str),
        time=_field(body, "time", str),
        key=_field(body, "key", str),
        event=event,
        rank=_optional(body, "rank", int),
    )


def _ingest(body: dict[str, Any]) -> IngestRecord:
    return IngestRecord(
        time=_field(body, "time", str),
        key=_field(body, "key", str),
        model=_field(body, "model", str),
        vector=_field(body, "vector", str),
    )


_PARSERS = {"search": parse_search, "feedback": _feedback, "ingest": _ingest}


def parse_record(body: dict[str, Any]) -> Record:
    """The record ``body`` holds (a parsed line); RecordError for anything else."""
    parser = _PARSERS.get(body.get(USAGE_FIELD))  # type: ignore[arg-type]
    if parser is None:
        raise RecordError(f"not a usage record: {USAGE_FIELD}={body.get(USAGE_FIELD)!r}")
    return parser(body)
