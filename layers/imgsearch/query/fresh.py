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

Rows are only appended: a changed image gets a new row and its old one is skipped. A search
reads one ``FreshView`` (the rows written and which row of each key is newest, as of one
refresh) without a lock while a refresh appends and publishes the next.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
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
class FreshView:
    """The fresh set as one search sees it: the first ``count`` rows of the arrays are written,
    and ``latest`` maps each key to its newest row among them. A refresh makes a new view; a
    search that holds this one neither hides an indexed hit for a key it cannot see nor skips a
    key's row for one that came after it."""

    vectors: np.ndarray
    ids: np.ndarray
    keys: tuple[str, ...]
    embedded: tuple[str, ...]
    count: int
    latest: Mapping[str, int]

    def __len__(self) -> int:
        """Images held (a changed image once)."""
        return len(self.latest)

    def __contains__(self, key: object) -> bool:
        return key in self.latest

    def vector(self, key: str) -> tuple[np.ndarray, str] | None:
        """``key``'s newest vector and its ``embedded_at``; None when it is not fresh."""
        row = self.latest.get(key)
        if row is None:
            return None
        return self.vectors[row], self.embedded[row]

    def newest(self) -> Iterator[RecentImage]:
        """Each image held, newest first (rows are appended in ``embedded_at`` order, but for a
        shard that had more than a refresh reads)."""
        for row in range(self.count - 1, -1, -1):
            if self.latest.get(self.keys[row]) == row:
                yield RecentImage(
                    key=self.keys[row], id=int(self.ids[row]), updated_at=self.embedded[row]
                )

    def search(self, query: np.ndarray, count: int) -> list[FreshMatch]:
        """The ``count`` best images by cosine similarity (exact), best first."""
        if self.count == 0 or count <= 0:
            return []
        scores = self.vectors[: self.count] @ np.asarray(query, dtype=np.float32)
        wanted = count + self.count - len(self.latest)  # superseded rows may take places
        candidates = (
            np.argpartition(-scores, wanted - 1)[:wanted]
            if wanted < self.count
            else range(self.count)
        )
        matches = [
            FreshMatch(self.keys[r], int(self.ids[r]), float(scores[r]), self.embedded[r])
            for r in candidates
            if self.latest.get(self.keys[r]) == r
        ]
        matches.sort(key=lambda m: (-m.score, m.id))
        return matches[:count]


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
        empty = np.zeros((0, dim), np.float32)
        self._view = FreshView(empty, np.zeros(0, np.int64), (), (), 0, {})
        self._watermarks = [since] * FRESH_SHARDS
        """Per shard: the newest ``embedded_at`` taken from it."""
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self.full = False

    def view(self) -> FreshView:
        """What one search reads, whatever refreshes run meanwhile."""
        return self._view

    def __len__(self) -> int:
        return len(self._view)

    def __contains__(self, key: object) -> bool:
        return key in self._view

    def vector(self, key: str) -> tuple[np.ndarray, str] | None:
        return self._view.vector(key)

    def newest(self) -> Iterator[RecentImage]:
        return self._view.newest()

    def search(self, query: np.ndarray, count: int) -> list[FreshMatch]:
        return self._view.search(query, count)

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
        room = self.limit - len(self._view)
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
            if record.key not in self._view and len(keys) >= room:
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
            held = self._view.vector(record.key)
            if held is not None and record.updated_at <= held[1]:
                continue  # held already: the slack's re-read
            new.append(record)
            if len(new) >= cap:
                break
        return new

    def _append(
        self, keys: list[str], ids: list[int], vectors: list[np.ndarray], embedded: list[str]
    ) -> None:
        old = self._view
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
        # Rows past the old view's count: searches holding it never read them.
        store[old.count : needed] = added
        id_store[old.count : needed] = ids
        latest = dict(old.latest)  # a copy per refresh that adds: the old view stays whole
        latest.update((key, old.count + offset) for offset, key in enumerate(keys))
        self._view = FreshView(
            store, id_store, old.keys + tuple(keys), old.embedded + tuple(embedded), needed, latest
        )
