"""Images embedded after the served index's snapshot, searched exactly beside the index.

The embed function writes ``embedded_at`` on every item it embeds; the sparse GSI ``fresh``
lists those items by (model shard, embedded_at) with their id and vector. ``FreshVectors``
loads the ones newer than the served version's snapshot when the version is loaded, then,
before a search, fetches those newer than the newest it holds of each shard (its watermarks)
if its last look is older than ``max_age`` seconds: an upload is searchable about a second
after it is embedded, with no index build. It holds at most ``limit`` vectors: past that it
stops growing and calls ``on_full`` once (the service starts an early index build; the next
version's fresh set starts from that build's snapshot)::

    fresh = FreshVectors(store, "demo-clip@1", fresh_since(current), dim=512, max_age=1.0,
                         limit=50_000)
    fresh.refresh_if_stale()
    for match in fresh.search(query_vector, count=21):
        match.key, match.id, match.score, match.embedded_at

Rows are only appended: a changed image gets a new row and its old one is skipped, so a search
reads a consistent prefix without a lock while a refresh appends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from imgsearch.catalog.current import CurrentIndex
from imgsearch.catalog.recent import RecentImage
from imgsearch.core.clock import shift_iso
from imgsearch.core.vectors import l2_normalise
from imgsearch.query.deletions import tombstones_since
from imgsearch.store import EmbeddingRecord, EmbeddingStore
from imgsearch.store.schema import FRESH_SHARDS

logger = logging.getLogger(__name__)

FRESH_SLACK = timedelta(seconds=2)
"""Each refresh re-reads this much before a shard's watermark: GSI writes propagate out of
order. Shorter than the deletes' 30 s because a shard can take hundreds of writes a second
during a backfill, each re-read each refresh; an image the slack misses is not lost but waits
for the next index build."""

_READERS = ThreadPoolExecutor(FRESH_SHARDS, thread_name_prefix="fresh")
"""Reads a refresh's shards at once: one round trip a refresh, not sixteen."""


def fresh_since(current: CurrentIndex) -> str:
    """What a version may lack: images embedded after its scan began (for a version that did
    not record it, after as long before ``built_at`` as a snapshot may have started)."""
    return current.scanned_from or tombstones_since(current.built_at)


@dataclass(frozen=True)
class FreshMatch:
    key: str
    id: int
    score: float
    embedded_at: str


@dataclass(frozen=True)
class _Rows:
    """What a search reads: the first ``count`` rows of the arrays are written."""

    vectors: np.ndarray
    ids: np.ndarray
    keys: tuple[str, ...]
    embedded: tuple[str, ...]
    count: int


class FreshVectors:
    """The vectors of one model embedded after a snapshot, refreshed from the ``fresh`` GSI."""

    def __init__(
        self,
        store: EmbeddingStore,
        model: str,
        since: str,
        dim: int,
        max_age: float,
        limit: int,
        on_full: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.model = model
        self.since = since
        self.dim = dim
        self.max_age = max_age
        self.limit = limit
        self._on_full = on_full
        self._clock = clock
        self._rows = _Rows(np.zeros((0, dim), np.float32), np.zeros(0, np.int64), (), (), 0)
        self._latest: dict[str, int] = {}
        """Key -> its newest row."""
        self._watermarks = [since] * FRESH_SHARDS
        """Per shard: the newest ``embedded_at`` taken from it."""
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self.full = False

    def __len__(self) -> int:
        """Images held (a changed image once)."""
        return len(self._latest)

    def __contains__(self, key: object) -> bool:
        return key in self._latest

    def vector(self, key: str) -> tuple[np.ndarray, str] | None:
        """``key``'s newest vector and its ``embedded_at``; None when it is not fresh."""
        row, rows = self._latest.get(key), self._rows
        if row is None or row >= rows.count:
            return None
        return rows.vectors[row], rows.embedded[row]

    def newest(self) -> Iterator[RecentImage]:
        """Each image held, newest first (rows are appended in ``embedded_at`` order, but for a
        shard that had more than a refresh reads)."""
        rows = self._rows
        for row in range(rows.count - 1, -1, -1):
            if self._latest.get(rows.keys[row]) == row:
                yield RecentImage(
                    key=rows.keys[row], id=int(rows.ids[row]), updated_at=rows.embedded[row]
                )

    def search(self, query: np.ndarray, count: int) -> list[FreshMatch]:
        """The ``count`` best images by cosine similarity (exact), best first."""
        rows = self._rows
        if rows.count == 0 or count <= 0:
            return []
        scores = rows.vectors[: rows.count] @ np.asarray(query, dtype=np.float32)
        # Superseded rows may take places: ask for as many more as there are (never fewer
        # than ``count``: a refresh may add keys after ``rows`` was read).
        wanted = count + max(0, rows.count - len(self._latest))
        candidates = (
            np.argpartition(-scores, wanted - 1)[:wanted]
            if wanted < rows.count
            else range(rows.count)
        )
        matches = [
            FreshMatch(rows.keys[r], int(rows.ids[r]), float(scores[r]), rows.embedded[r])
            for r in candidates
            if self._latest.get(rows.keys[r]) == r
        ]
        matches.sort(key=lambda m: (-m.score, m.id))
        return matches[:count]

    def refresh(self) -> None:
        """Fetch the images embedded since shortly before each shard's watermark (until
        full)."""
        with self._lock:
            started = self._clock()
            if not self.full and self.limit > 0:
                self._fetch()
            self._checked = started

    def refresh_if_stale(self) -> None:
        if self._clock() - self._checked >= self.max_age:
            self.refresh()

    def _fetch(self) -> None:
        room = self.limit - len(self._latest)
        # Each shard reads from its own watermark, at most ``cap`` items a refresh (bounded
        # memory when far more than the limit waits); a shard cut short goes on next time.
        cap = max(64, 2 * room // FRESH_SHARDS)
        batches = list(_READERS.map(lambda shard: self._read(shard, cap), range(FRESH_SHARDS)))
        pending = sorted(
            ((record, shard) for shard, batch in enumerate(batches) for record in batch),
            key=lambda pair: pair[0].updated_at,
        )
        keys, ids, vectors, embedded = [], [], [], []
        for record, shard in pending:
            if record.key not in self._latest and len(keys) >= room:
                self.full = True
                break
            keys.append(record.key)
            ids.append(record.id)
            vectors.append(record.vector)
            embedded.append(record.updated_at)
            self._watermarks[shard] = max(self._watermarks[shard], record.updated_at)
        if keys:
            self._append(keys, ids, vectors, embedded)
        if self.full:
            logger.warning(
                "fresh segment is full: images embedded since are searchable after the next "
                "index build",
                extra={"model": self.model, "fresh_vectors": len(self), "limit": self.limit},
            )
            self._on_full()

    def _read(self, shard: int, cap: int) -> list[EmbeddingRecord]:
        """Up to ``cap`` records of ``shard`` newer than what is held of their key."""
        # Re-read the slack (GSI writes propagate out of order), never before ``since``:
        # older vectors are in the index (the snapshot's scan reads consistently).
        since = max(self.since, shift_iso(self._watermarks[shard], -FRESH_SLACK))
        new: list[EmbeddingRecord] = []
        for record in self.store.embedded_since(self.model, shard, since):
            row = self._latest.get(record.key)
            if row is not None and record.updated_at <= self._rows.embedded[row]:
                continue  # held already: the slack's re-read
            new.append(record)
            if len(new) >= cap:
                break
        return new

    def _append(
        self, keys: list[str], ids: list[int], vectors: list[np.ndarray], embedded: list[str]
    ) -> None:
        old = self._rows
        added = l2_normalise(np.asarray(vectors, dtype=np.float32).reshape(len(keys), self.dim))
        needed = old.count + len(keys)
        store = old.vectors
        if needed > len(store):
            store = np.zeros((max(needed, 2 * len(store), 1024), self.dim), np.float32)
            store[: old.count] = old.vectors[: old.count]
            id_store = np.zeros(len(store), np.int64)
            id_store[: old.count] = old.ids[: old.count]
        else:
            id_store = old.ids
        store[old.count : needed] = added
        id_store[old.count : needed] = ids
        # Publish the rows before the keys point at them: a search never sees a row unwritten.
        self._rows = _Rows(
            store, id_store, old.keys + tuple(keys), old.embedded + tuple(embedded), needed
        )
        for offset, key in enumerate(keys):
            self._latest[key] = old.count + offset
