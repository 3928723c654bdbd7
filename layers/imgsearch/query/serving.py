"""The served index: one published version, loaded whole, swapped atomically for a newer one.

A ``Served`` holds everything a search needs from one version — the model that embeds its queries
(the one ``current.json`` names, loaded before the swap: model and index change together), the
memory-mapped index (either engine: ``imgsearch.ann``), the id -> key table, ``current.json``,
the keys deleted since it was built, the images embedded since (``fresh``, searched beside the
index) and the newest images of its snapshot (``recent.json``; none for a version built before
it existed).
``IndexServer`` loads the version that ``current.json`` names at init, then, at most every
``refresh_seconds``, checks ``current.json`` again: after a response (``defer``; on Lambda an
internal extension, ``imgsearch.core.after_response``, so the swap's work never runs beside a
request) or else in a background thread. While nothing is served, a request checks itself, at
most once a second, so the first index is served as soon as it is published. A new version is
downloaded to the cache directory, opened with ``view`` (memory-mapped, nothing parsed),
checked, and only then replaces the old one in a single reference assignment. Requests in
flight keep the ``Served`` they started with. A version that cannot be used is logged and
skipped; the old one keeps serving::

    server = IndexServer(s3, bucket, settings.index, models=QueryModels(...).get,
                         deletions=lambda current: DeletedKeys(store, ...),
                         fresh=lambda current, model: FreshVectors(store, ...))
    server.refresh()                 # at init: None before the first publish
    served = server.require()        # raises NoIndex (HTTP 503) when nothing is served
    server.refresh_if_due()          # per request: checks, or defers or starts the check, when due
    server.refresh()                 # now (a caller that knows current.json changed)
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch.ann import AnnIndex, open_index
from imgsearch.catalog.current import CurrentIndex, read_current
from imgsearch.catalog.errors import ContractError
from imgsearch.catalog.keytable import KeyTable
from imgsearch.catalog.layout import KEYS_FILE, index_file, version_key
from imgsearch.catalog.recent import RecentImage, read_recent
from imgsearch.core.aws import is_not_found
from imgsearch.core.config import IndexSettings
from imgsearch.core.errors import ImgsearchError
from imgsearch.model import ClipModel
from imgsearch.query.deletions import DeletedKeys
from imgsearch.query.errors import NoIndex
from imgsearch.query.fresh import FreshVectors

logger = logging.getLogger(__name__)

UNSERVED_CHECK_SECONDS = 1.0
"""While nothing is served, how often a request may read ``current.json`` itself."""


class BrokenVersion(ImgsearchError):
    """A published version that this function cannot serve (corrupt files, other model...)."""


class DownloadFailed(ImgsearchError):
    """A version's files could not be fetched this time (S3 throttled or unreachable)."""


@dataclass(frozen=True)
class Served:
    current: CurrentIndex
    index: AnnIndex
    keys: KeyTable
    deleted: DeletedKeys
    fresh: FreshVectors
    directory: Path
    model: ClipModel
    """Embeds this version's queries: the model its vectors were made with."""
    recent: tuple[RecentImage, ...] = ()
    """The snapshot's newest images, newest first (deleted ones included: callers filter)."""

    @property
    def version(self) -> str:
        return self.current.version

    def catch_up(self) -> None:
        """Read the images embedded and deleted since, each when its last look is stale."""
        self.fresh.refresh_if_stale()
        self.deleted.refresh_if_stale()


def load_recent(s3: Any, bucket: str, prefix: str, version: str) -> tuple[RecentImage, ...]:
    """A version's ``recent.json`` images; none when it has no such file, or a broken one (the
    first view loses its pictures, searches are unaffected). S3 errors propagate: transient."""
    try:
        recent = read_recent(s3, bucket, prefix, version)
    except ContractError as exc:
        logger.warning("index %s: recent.json ignored: %s", version, exc)
        return ()
    return recent.images if recent is not None else ()


def lower_priority(nice: int) -> None:
    """Run the calling thread (and the threads it starts) at ``nice`` or lower priority, where
    the platform has per-thread priorities (Linux); elsewhere nothing changes."""
    if nice <= 0 or not sys.platform.startswith("linux"):  # nice is per thread on Linux only
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, max(nice, os.getpriority(os.PRIO_PROCESS, thread)))
    except OSError:  # not permitted here: the refresh still runs, at the requests' priority
        logger.warning("the index refresh could not lower its CPU priority")


def download_version(
    s3: Any, bucket: str, prefix: str, current: CurrentIndex, cache_dir: str | Path
) -> Path:
    """Fetch a version's index and key table into ``cache_dir/<version>/`` (kept if present).

    Each file is written under a temporary name and renamed, so a file that exists is whole.
    """
    version = current.version
    directory = Path(cache_dir) / version
    directory.mkdir(parents=True, exist_ok=True)
    for name in (index_file(current.engine), KEYS_FILE):
        target = directory / name
        if target.is_file():
            continue
        partial = target.with_name(name + ".part")
        try:
            s3.download_file(bucket, version_key(prefix, version, name), str(partial))
        except ClientError as exc:
            if is_not_found(exc):
                raise BrokenVersion(f"index {version}: {name} is missing") from exc
            raise
        partial.replace(target)
    return directory


def open_version(
    current: CurrentIndex,
    directory: Path,
    model: ClipModel,
    expansion_search: int,
    deleted: DeletedKeys,
    fresh: FreshVectors,
    recent: tuple[RecentImage, ...] = (),
) -> Served:
    """Open downloaded files without reading them whole, and check that they fit together.

    The index searches at the effort Validate chose for it (``current.expansion_search``), or
    at ``expansion_search`` for a version published before Validate chose one."""
    if current.model != model.model_id:
        raise BrokenVersion(
            f"index {current.version} was built with model {current.model}, "
            f"but the model loaded for it is {model.model_id}"
        )
    dim = model.dim
    try:
        index = open_index(current.engine, directory / index_file(current.engine), view=True)
        keys = KeyTable.open(directory / KEYS_FILE)
    except (ValueError, OSError, RuntimeError) as exc:
        raise BrokenVersion(f"index {current.version} cannot be opened: {exc}") from exc
    if index.ndim != dim:
        raise BrokenVersion(
            f"index {current.version} holds {index.ndim}-d vectors, the model makes {dim}-d ones"
        )
    if len(keys) != len(index):
        raise BrokenVersion(
            f"index {current.version}: {len(index)} vectors but {len(keys)} keys in {KEYS_FILE}"
        )
    index.expansion_search = current.expansion_search or expansion_search
    fresh.refresh()
    deleted.refresh()
    return Served(current, index, keys, deleted, fresh, directory, model, recent)


class IndexServer:
    """Holds the served version and replaces it when ``current.json`` names another one."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        settings: IndexSettings,
        models: Callable[[str], ClipModel],
        deletions: Callable[[CurrentIndex], DeletedKeys],
        fresh: Callable[[CurrentIndex, ClipModel], FreshVectors],
        clock: Callable[[], float] = time.monotonic,
        on_swap: Callable[[Served], None] = lambda served: None,
        defer: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.settings = settings
        self._models = models
        """Model id -> the loaded model (``BrokenVersion`` for one that cannot be loaded)."""
        self._deletions = deletions
        self._fresh = fresh
        self._clock = clock
        self._on_swap = on_swap
        self._defer = defer
        """Runs a due refresh after the response (``AfterResponse.defer``); None: a thread."""
        self._deferred = False
        self._served: Served | None = None
        self._problem = "no index has been published yet"
        self._broken: set[str] = set()
        self._checked = float("-inf")
        self._refreshing = threading.Lock()
        self._worker: threading.Thread | None = None

    @property
    def served(self) -> Served | None:
        return self._served

    def require(self) -> Served:
        served = self._served
        if served is None:
            raise NoIndex(f"no index is being served: {self._problem}")
        return served

    def refresh(self) -> bool:
        """Check ``current.json`` now; load and swap in a new version. True when swapped.

        Never raises: a failure is logged and the version being served (if any) stays.
        """
        with self._refreshing:
            self._checked = self._clock()
            try:
                return self._refresh()
            except Exception as exc:  # a refresh must never take the API down
                self._problem = f"the serving index could not be loaded ({exc})"
                logger.exception("index refresh failed; the served version stays")
                return False

    def _refresh(self) -> bool:
        prefix = self.settings.prefix
        current = read_current(self.s3, self.bucket, prefix)
        served = self._served
        if current is None or (served and served.version == current.version):
            return False
        if current.version in self._broken:
            return False
        try:
            directory = download_version(
                self.s3, self.bucket, prefix, current, self.settings.cache_dir
            )
            model = self._models(current.model)
            loaded = open_version(
                current,
                directory,
                model,
                self.settings.expansion_search,
                self._deletions(current),
                self._fresh(current, model),
                load_recent(self.s3, self.bucket, prefix, current.version),
            )
        except BrokenVersion as exc:
            self._broken.add(current.version)
            if served is None:
                self._problem = str(exc)
            shutil.rmtree(Path(self.settings.cache_dir) / current.version, ignore_errors=True)
            logger.error(
                "index version cannot be served; keeping %s: %s",
                served.version if served else "none",
                exc,
                extra={"index_version": current.version},
            )
            return False
        except (ClientError, BotoCoreError) as exc:  # transient: try again at the next check
            raise DownloadFailed(f"download of index {current.version} failed: {exc}") from exc
        self._served = loaded  # the swap: one reference, requests in flight keep the old one
        self._on_swap(loaded)
        logger.info(
            "serving index version",
            extra={
                "index_version": loaded.version,
                "previous_version": served.version if served else None,
                "count": len(loaded.index),
                "fresh_vectors": len(loaded.fresh),
            },
        )
        if served is not None:
            # Mapped pages stay valid after unlink, so requests still using it are safe.
            shutil.rmtree(served.directory, ignore_errors=True)
        return True

    def refresh_if_due(self) -> None:
        """While nothing is served, refresh now when the last check is a second old (the
        request waits: it would get a 503 otherwise); else, when the last check is
        ``refresh_seconds`` old, defer a refresh to after the response (with ``defer``) or
        start one in a background thread."""
        age = self._clock() - self._checked
        if self._served is None:
            if age >= min(UNSERVED_CHECK_SECONDS, self.settings.refresh_seconds):
                self.refresh()
            return
        if age < self.settings.refresh_seconds:
            return
        if self._defer is not None:
            if not self._deferred:  # one at a time: it is due again once it has run
                self._deferred = True
                self._defer(self._refresh_deferred)
            return
        if self._worker is not None and self._worker.is_alive():
            return
        self._checked = self._clock()
        self._worker = threading.Thread(
            target=self._refresh_behind, name="index-refresh", daemon=True
        )
        self._worker.start()

    def _refresh_deferred(self) -> None:
        self._deferred = False
        self.refresh()

    def _refresh_behind(self) -> None:
        """The background refresh, at ``refresh_nice`` (the threads it starts inherit it)."""
        lower_priority(self.settings.refresh_nice)
        self.refresh()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background refresh to finish (tests, graceful shutdown)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
