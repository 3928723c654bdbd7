"""The newest images a scan sees, in bounded memory: a heap of at most ``limit`` entries.

The Snapshot step feeds it every page it writes (from several scan threads, under the
writer's lock) and records the result in its manifest; ``updated_at`` orders, the key breaks
ties (the smaller key counts as newer, so the result is the same whatever the page order)::

    newest = NewestImages(limit=24)
    newest.add(page)          # EmbeddingRecords; those without a vector are skipped
    newest.images()           # tuple of RecentImage, newest first
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from imgsearch.catalog.recent import RecentImage, rank
from imgsearch.store import EmbeddingRecord


@dataclass(frozen=True, slots=True)
class _Entry:
    updated_at: str
    key: str
    id: int

    def __lt__(self, other: _Entry) -> bool:
        """Older, or as old with a larger key: the first to leave the heap."""
        return (self.updated_at, other.key) < (other.updated_at, self.key)


class NewestImages:
    """The ``limit`` newest ok images among those added (not thread-safe: callers lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._heap: list[_Entry] = []

    def add(self, records: Iterable[EmbeddingRecord]) -> None:
        if self.limit <= 0:
            return
        for record in records:
            if record.vector is None:
                continue
            entry = _Entry(record.updated_at, record.key, record.id)
            if len(self._heap) < self.limit:
                heapq.heappush(self._heap, entry)
            elif self._heap[0] < entry:
                heapq.heapreplace(self._heap, entry)

    def images(self) -> tuple[RecentImage, ...]:
        return rank([RecentImage(key=e.key, id=e.id, updated_at=e.updated_at) for e in self._heap])
