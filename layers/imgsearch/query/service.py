"""The query function's facade: everything it holds for its lifetime, built once at init.

``SearchService.from_settings`` loads the model bundle and the serving index (when one is
published) before the first request, so no request pays for either. The HTTP routes call its
operations and nothing else; each checks for a newer index when due (see
``IndexServer.refresh_if_due``), each search checks its input before it requires the served
version, answers with presigned image URLs and a signed ``query_id``, and writes a search record
to the usage log (``imgsearch.usage``) after its answer is made::

    service = SearchService.from_settings(settings, clients)
    first = service.text("two red circles", k=20)   # SearchResponse, or NoIndex (HTTP 503)
    service.text("two red circles", k=20, cursor=first.next_cursor)
    service.similar("images/cat.jpg", k=20)
    service.feedback(first.query_id, first.results[0].key, "click", rank=1)
    service.recent(k=12)                            # the newest images: the page's first view
    service.health()                                # Health: no model or index work
    service.refresh_now()                           # current.json changed: serve it at once
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from imgsearch.catalog.current import CurrentIndex
from imgsearch.core.aws import Clients
from imgsearch.core.clock import now_iso
from imgsearch.core.config import Settings
from imgsearch.core.keys import image_id
from imgsearch.model import ClipModel, ImageLimits
from imgsearch.query.deletions import DeletedKeys, tombstones_since
from imgsearch.query.engine import Page, SearchEngine, normalise_text
from imgsearch.query.errors import InvalidQueryId, UnknownImage
from imgsearch.query.fresh import FreshVectors, fresh_since
from imgsearch.query.http.models import (
    FeedbackResponse,
    Health,
    RecentResponse,
    RecentResult,
    SearchResponse,
    SearchResult,
    VersionResponse,
)
from imgsearch.query.models import QueryModels
from imgsearch.query.presign import Presigner
from imgsearch.query.serving import IndexServer, Served
from imgsearch.store import EmbeddingStore
from imgsearch.usage.log import UsageLog, usage_log
from imgsearch.usage.records import (
    FeedbackEvent,
    FeedbackRecord,
    SearchKind,
    SearchRecord,
    Shown,
    encode_vector,
)
from imgsearch.usage.signing import QuerySignatureError, QuerySigner

logger = logging.getLogger(__name__)

QUERY_AWS_CONFIG = Config(
    connect_timeout=2, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}
)
"""Short timeouts: a request waits on DynamoDB (rarely) and never on a slow index download."""


class SearchService:
    """Text, image and similar-image search, recent images, health and version, over the
    served index.

    ``engine``, ``server``, ``models`` and ``model`` (the function's own bundle; the served
    version's model, ``server.served.model``, embeds the queries) are its parts, open to tests
    and benchmarks; the routes use the methods below only."""

    def __init__(
        self,
        settings: Settings,
        model: ClipModel,
        store: EmbeddingStore,
        s3: Any,
        credentials: Any,
        signing_key: bytes | None = None,
        usage: UsageLog = usage_log,
        sfn: Any = None,
        defer: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sfn = sfn
        """Starts an early index build when the fresh set is full (None: never)."""
        self.model = model
        self.usage = usage
        self.signer = QuerySigner(
            signing_key or secrets.token_bytes(32), settings.usage.feedback_max_age_seconds
        )
        api = settings.api
        self.engine = SearchEngine(
            model,
            store,
            ImageLimits(
                max_bytes=min(api.max_upload_bytes, settings.model.max_image_bytes),
                max_pixels=min(api.max_image_pixels, settings.model.max_image_pixels),
                decode_seconds=api.decode_seconds,
            ),
            cache_size=api.query_cache_size,
        )

        def deletions(current: CurrentIndex) -> DeletedKeys:
            since = tombstones_since(current.built_at)
            return DeletedKeys(store, current.model, since, api.deleted_refresh_seconds)

        def fresh(current: CurrentIndex, model: ClipModel) -> FreshVectors:
            return FreshVectors(
                store,
                current.model,
                fresh_since(current),
                model.dim,
                api.fresh_refresh_seconds,
                api.fresh_max_vectors,
                on_full=lambda: self.build_early(current.version),
            )

        self.models = QueryModels(settings, s3, default=model)

        def swapped(served: Served) -> None:
            self.models.keep(served.current.model)
            self.engine.forget_texts()

        self.server = IndexServer(
            s3,
            settings.bucket,
            settings.index,
            self.models.get,
            deletions,
            fresh,
            on_swap=swapped,
            defer=defer,
        )
        # Results link to the images where they are: the stack's bucket or the user's own.
        images = settings.image_bucket or settings.bucket
        self._presigner = Presigner(s3, images, credentials, api.presign_seconds)
        # A URL is reused while at least half its lifetime is left.
        self._half_life = max(1, api.presign_seconds // 2)
        self._presign = functools.lru_cache(maxsize=4096)(self._presign_uncached)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        clients: Clients | None = None,
        defer: Callable[[Callable[[], None]], None] | None = None,
    ) -> SearchService:
        """Load the model and, if one is published, the serving index (never raises for it);
        ``defer`` runs the later checks for a new version after a response (``IndexServer``)."""
        settings.require("bucket", "table")
        clients = clients or Clients.for_settings(settings)
        s3 = clients.client("s3", QUERY_AWS_CONFIG.merge(Config(signature_version="s3v4")))
        dynamodb = clients.client("dynamodb", QUERY_AWS_CONFIG)
        # Most traffic is text: the image tower's session is built by the first image query.
        model = ClipModel.load(
            settings.model.uri,
            settings.model.threads,
            settings.model.cache_dir,
            s3,
            lazy_visual=True,
        )
        store = EmbeddingStore(settings.table, dynamodb)
        service = cls(
            settings,
            model,
            store,
            s3,
            clients.session.get_credentials(),
            signing_key=_signing_key(settings, clients),
            sfn=clients.client("stepfunctions", QUERY_AWS_CONFIG)
            if settings.state_machine_arn
            else None,
            defer=defer,
        )
        service.server.refresh()
        return service

    def text(
        self, q: str, k: int, cursor: str | None = None, min_score: float | None = None
    ) -> SearchResponse:
        """Images that match the text ``q``."""
        started = time.perf_counter()
        page = self.engine.text(self._serving, q, k, cursor, min_score)
        return self._respond(page, k, started, "text", text=normalise_text(q))

    def image(
        self, data: bytes, k: int, cursor: str | None = None, min_score: float | None = None
    ) -> SearchResponse:
        """Images that look like the encoded image ``data``."""
        started = time.perf_counter()
        page = self.engine.image(self._serving, data, k, cursor, min_score)
        digest = hashlib.sha256(data).hexdigest()
        return self._respond(page, k, started, "image", image_sha256=digest)

    def similar(
        self, key: str, k: int, cursor: str | None = None, min_score: float | None = None
    ) -> SearchResponse:
        """Images like the stored image ``key``, itself left out (NotFound if unknown)."""
        started = time.perf_counter()
        page = self.engine.similar(self._serving, key, k, cursor, min_score)
        return self._respond(page, k, started, "similar", key=key)

    def feedback(
        self, query_id: str, key: str, event: FeedbackEvent, rank: int | None = None
    ) -> FeedbackResponse:
        """Record that the user clicked or judged ``key`` among ``query_id``'s results.

        Unprocessable (422) for an id this stack did not sign, or signed longer ago than
        ``IMGSEARCH_FEEDBACK_MAX_AGE_SECONDS``, and for a key that is not an indexed image;
        whether the search showed it is checked where the log is joined (``imgsearch.usage.join``),
        as the query function keeps no state between requests."""
        try:
            self.signer.verify(query_id)
        except QuerySignatureError as exc:
            raise InvalidQueryId(str(exc), parameter="query_id", reason=exc.reason) from exc
        if not self._known(key):
            raise UnknownImage(f"no image {key!r} is indexed", parameter="key", key=key)
        self.usage.emit(FeedbackRecord(query_id, now_iso(), key, event, rank))
        return FeedbackResponse(status="accepted", query_id=query_id)

    def _known(self, key: str) -> bool:
        """In the served index, or (embedded since it was built, or a swap away) in the table."""
        self.server.refresh_if_due()
        served = self.server.served
        if served is not None and served.keys.key(image_id(key)) == key:
            return True
        model = served.current.model if served else self.model.model_id
        return self.engine.table_vector(key, model) is not None

    def recent(self, k: int) -> RecentResponse:
        """The ``k`` newest images, newest first: those embedded since the served version was
        built, then its snapshot's, without those deleted since (as searches hide them); none
        before the first publish (no 503: the page asks for them on its first view)."""
        self.server.refresh_if_due()
        served = self.server.served
        if served is None:
            return RecentResponse(index_version=None, k=k, results=[])
        served.catch_up()
        fresh, deleted = served.fresh, served.deleted
        newest = (i for i in fresh.newest() if not deleted.hides(i.key, i.updated_at))
        older = (i for i in served.recent if i.key not in deleted and i.key not in fresh)
        kept = list(itertools.islice(itertools.chain(newest, older), k))
        return RecentResponse(
            index_version=served.version,
            k=k,
            results=[
                RecentResult(
                    key=image.key,
                    id=str(image.id),
                    updated_at=image.updated_at,
                    url=self.presign(image.key),
                )
                for image in kept
            ],
        )

    def health(self) -> Health:
        """Whether an index is served; no model or index work (while nothing is served, it
        reads ``current.json`` at most once a second, as every operation does)."""
        self.server.refresh_if_due()
        served = self.server.served
        return Health(
            status="ok" if served else "no_index",
            index_loaded=served is not None,
            index_version=served.version if served else None,
            model=served.current.model if served else self.model.model_id,
        )

    def version(self) -> VersionResponse:
        """The model and the served index, with its headline figures."""
        self.server.refresh_if_due()
        served = self.server.served
        current = served.current if served else None
        return VersionResponse(
            model=served.current.model if served else self.model.model_id,
            embedding_dim=served.model.dim if served else self.model.dim,
            index_version=current.version if current else None,
            built_at=current.built_at if current else None,
            published_at=(current.published_at or None) if current else None,
            image_count=len(served.index) if served else None,
            headline=current.headline if current else {},
        )

    def build_early(self, version: str) -> str:
        """Start an index build now because the fresh set of ``version`` is full; the
        execution's ARN, or "" (none configured, one started already, or it failed: logged).

        The execution is named after the version, so every instance of the function that
        fills its fresh set starts the same one build."""
        arn = self.settings.state_machine_arn
        if not arn or self.sfn is None:
            logger.warning("fresh segment full and no index pipeline is configured to start")
            return ""
        try:
            started = self.sfn.start_execution(
                stateMachineArn=arn, name=f"fresh-full-{version}", input="{}"
            )
        except self.sfn.exceptions.ExecutionAlreadyExists:
            return ""
        except (ClientError, BotoCoreError):  # the search goes on; the alarm is raised
            logger.exception("early index build could not be started")
            return ""
        logger.info("early index build started", extra={"execution": started["executionArn"]})
        return str(started["executionArn"])

    def refresh_now(self) -> bool:
        """Read ``current.json`` now and serve the version it names; True when swapped. For a
        caller in the same process that knows it changed (the local stack, after a publish)."""
        return self.server.refresh()

    def presign(self, key: str) -> str:
        return self._presign(key, int(time.time()) // self._half_life)

    def _presign_uncached(self, key: str, _period: int) -> str:
        return self._presigner.url(key)

    def _serving(self) -> Served:
        """The version this request searches (NoIndex when none), checking for a newer one
        when due; the engine asks for it once the input is valid."""
        self.server.refresh_if_due()
        return self.server.require()

    def _respond(
        self,
        page: Page,
        k: int,
        started: float,
        kind: SearchKind,
        text: str | None = None,
        image_sha256: str | None = None,
        key: str | None = None,
    ) -> SearchResponse:
        query_id = self.signer.issue()
        response = SearchResponse(
            query_id=query_id,
            index_version=page.served.version,
            model=page.served.current.model,
            k=k,
            results=[
                SearchResult(key=h.key, id=str(h.id), score=h.score, url=self.presign(h.key))
                for h in page.hits
            ],
            next_cursor=page.next_cursor,
        )
        self.usage.emit(
            SearchRecord(
                query_id=query_id,
                time=now_iso(),
                model=page.served.current.model,
                index_version=page.served.version,
                kind=kind,
                k=k,
                offset=page.offset,
                results=tuple(Shown(h.key, h.score) for h in page.hits),
                latency_ms=(time.perf_counter() - started) * 1e3,
                text=text,
                image_sha256=image_sha256,
                key=key,
                vector=encode_vector(page.vector),
            )
        )
        return response


def _signing_key(settings: Settings, clients: Clients) -> bytes | None:
    """The stack's query-signing key from Secrets Manager; None (a key of this process's own)
    when none is configured."""
    arn = settings.usage.signing_secret_arn
    if not arn:
        logger.warning(
            "IMGSEARCH_QUERY_SIGNING_SECRET_ARN is not set: query ids are signed with a key of "
            "this process, and feedback is taken only by it"
        )
        return None
    secret = clients.client("secretsmanager", QUERY_AWS_CONFIG).get_secret_value(SecretId=arn)
    return secret["SecretString"].encode("utf-8")
