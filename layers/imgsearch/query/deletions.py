"""Keys deleted after an index was built, so that search never returns them.

The embed function leaves a tombstone with ``deleted_at`` when an image is deleted; the sparse
GSI ``deletions`` lists tombstones by (model, deleted_at). ``DeletedKeys`` loads every tombstone
that may postdate the index's snapshot when a version is loaded, then, before a search, fetches
only the tombstones newer than the newest it has seen (its watermark) if its last look is older
than ``max_age`` seconds: one small Query per interval, nothing per hit::

    deleted = DeletedKeys(store, "demo-clip@1", since="2024-06-01T11:00:00.000000Z", max_age=1.0)
    deleted.refresh_if_stale()
    "images/cat.jpg" in deleted
    deleted.hides("images/cat.jpg", embedded_at="2024-06-01T12:00:00.000000Z")
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

from imgsearch.core.clock import shift_iso
from imgsearch.store import EmbeddingStore

SNAPSHOT_LOOKBACK = timedelta(hours=1)
"""How long before ``built_at`` a snapshot may have started: tombstones written since then are
hidden. A snapshot reads the table before the build, so a delete that raced it may be in the
index; one older than the snapshot cannot be."""

GSI_SLACK = timedelta(seconds=30)
"""Each refresh re-reads this much before the watermark: GSI writes propagate asynchronously,
so a tombstone may become visible after a newer one has been seen."""


def tombstones_since(built_at: str) -> str:
    """The ``deleted_at`` lower bound for an index built at ``built_at`` (ISO 8601, UTC)."""
    return shift_iso(built_at, -SNAPSHOT_LOOKBACK)


class DeletedKeys:
    """A growing set of deleted keys for one model, refreshed incrementally from the GSI."""

    def __init__(
        self,
        store: EmbeddingStore,
        model: str,
        since: str,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.model = model
        self.max_age = max_age
        self._clock = clock
        self._keys: dict[str, str] = {}
        """Key -> its newest ``deleted_at`` seen."""
        self._watermark = since
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def hides(self, key: str, embedded_at: str) -> bool:
        """Whether a vector of ``key`` embedded at ``embedded_at`` was deleted since (an image
        uploaded again after its delete is not hidden)."""
        deleted_at = self._keys.get(key)
        return deleted_at is not None and deleted_at >= embedded_at

    def refresh(self) -> None:
        """Fetch the tombstones written since shortly before the watermark."""
        with self._lock:
            started = self._clock()
            since = shift_iso(self._watermark, -GSI_SLACK) if self._watermark else ""
            for key, deleted_at in self.store.deleted_since(self.model, since):
                self._keys[key] = max(self._keys.get(key, ""), deleted_at)
                self._watermark = max(self._watermark, deleted_at)
            self._checked = started

    def refresh_if_stale(self) -> None:
        if self._clock() - self._checked >= self.max_age:
            self.refresh()
