"""The models the query function embeds queries with, by id.

Its own bundle (``IMGSEARCH_MODEL_URI``) is loaded at init; a model a published index names
otherwise is a registered one, loaded from the registry (``models/<id>/`` in the service bucket)
when that index is about to serve, before the swap. Only the served version's model (and the
function's own) is kept afterwards (``keep``), so a sandbox holds a third only while it swaps::

    models = QueryModels(settings, s3, default=ClipModel.load(...))
    models.get("clip-b32@2")      # BrokenVersion if it is not registered
    models.keep("clip-b32@2")     # after the swap: the others are let go
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from imgsearch.catalog.registry import bundle_uri, read_record
from imgsearch.core.config import Settings
from imgsearch.model import BundleError, ClipModel
from imgsearch.query.serving import BrokenVersion, DownloadFailed

logger = logging.getLogger(__name__)


class QueryModels:
    def __init__(self, settings: Settings, s3: Any, default: ClipModel) -> None:
        self.settings, self.s3, self.default = settings, s3, default
        self._loaded = {default.model_id: default}
        self._lock = threading.Lock()

    def get(self, model_id: str) -> ClipModel:
        with self._lock:
            if model_id in self._loaded:
                return self._loaded[model_id]
        if read_record(self.s3, self.settings.bucket, model_id) is None:
            raise BrokenVersion(
                f"the index names model {model_id}, which is neither this function's bundle "
                f"({self.default.model_id}) nor registered"
            )
        uri = bundle_uri(self.settings.bucket, model_id)
        try:
            # Most traffic is text: the image tower's session is built by the first image query.
            model = ClipModel.load(
                uri,
                self.settings.model.threads,
                self.settings.model.cache_dir,
                self.s3,
                lazy_visual=True,
            )
        except BundleError as exc:  # a download that failed, most likely: the next check retries
            raise DownloadFailed(f"model {model_id} could not be loaded: {exc}") from exc
        if model.model_id != model_id:
            raise BrokenVersion(f"the bundle at {uri} is {model.model_id}, not {model_id}")
        logger.info("model loaded for the index", extra={"model": model_id, "bundle": uri})
        with self._lock:
            return self._loaded.setdefault(model_id, model)

    def keep(self, model_id: str) -> None:
        """Let every other registered model go (requests still using one keep it until they
        end); the function's own stays: it checks query images while no index is served."""
        with self._lock:
            keep = {model_id, self.default.model_id}
            self._loaded = {k: m for k, m in self._loaded.items() if k in keep}

    @property
    def loaded(self) -> list[str]:
        with self._lock:
            return sorted(self._loaded)
