"""Everything the query function holds for its lifetime, built once at init.

``SearchService.from_settings`` loads the model bundle and the serving index (when one is
published) before the first request, so no request pays for either::

    service = SearchService.from_settings(Settings.from_env())
    service.server.require()          # the served version, or NoIndex (HTTP 503)
    service.presign("images/cat.jpg") # a short-lived GET URL (SigV4 query auth)
"""

from __future__ import annotations

import functools
import time
from typing import Any

from botocore.config import Config

from imgsearch.config import Settings
from imgsearch.index.artifacts import CurrentIndex
from imgsearch.model import ClipModel, ImageLimits
from imgsearch.search.deletions import DeletedKeys, tombstones_since
from imgsearch.search.engine import SearchEngine
from imgsearch.search.presign import Presigner
from imgsearch.search.serving import IndexServer
from imgsearch.store import EmbeddingStore

AWS_CONFIG = Config(
    connect_timeout=2, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}
)
"""Short timeouts: a request waits on DynamoDB (rarely) and never on a slow index download."""


class SearchService:
    def __init__(
        self,
        settings: Settings,
        model: ClipModel,
        store: EmbeddingStore,
        s3: Any,
        credentials: Any,
    ) -> None:
        self.settings = settings
        self.model = model
        api = settings.api
        self.engine = SearchEngine(
            model,
            store,
            ImageLimits(
                max_bytes=min(api.max_upload_bytes, settings.model.max_image_bytes),
                max_pixels=settings.model.max_image_pixels,
            ),
            cache_size=api.query_cache_size,
        )

        def deletions(current: CurrentIndex) -> DeletedKeys:
            since = tombstones_since(current.built_at)
            return DeletedKeys(store, current.model, since, api.deleted_refresh_seconds)

        self.server = IndexServer(
            s3, settings.bucket, settings.index, model.model_id, model.dim, deletions
        )
        self._presigner = Presigner(s3, settings.bucket, credentials, api.presign_seconds)
        # A URL is reused while at least half its lifetime is left.
        self._half_life = max(1, api.presign_seconds // 2)
        self._presign = functools.lru_cache(maxsize=4096)(self._presign_uncached)

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchService:
        """Load the model and, if one is published, the serving index (never raises for it)."""
        import boto3

        settings.require("bucket", "table")
        session = boto3.Session(region_name=settings.region)
        s3 = session.client("s3", config=AWS_CONFIG.merge(Config(signature_version="s3v4")))
        dynamodb = session.client("dynamodb", config=AWS_CONFIG)
        # Most traffic is text: the image tower's session is built by the first image query.
        model = ClipModel.load(
            settings.model.uri,
            settings.model.threads,
            settings.model.cache_dir,
            s3,
            lazy_visual=True,
        )
        store = EmbeddingStore(settings.table, dynamodb)
        service = cls(settings, model, store, s3, session.get_credentials())
        service.server.refresh()
        return service

    def presign(self, key: str) -> str:
        return self._presign(key, int(time.time()) // self._half_life)

    def _presign_uncached(self, key: str, _period: int) -> str:
        return self._presigner.url(key)
