"""The query HTTP API: Powertools ``APIGatewayHttpResolver`` routes with validation and OpenAPI.

Routes (the OpenAPI document at ``/openapi.json`` and Swagger UI at ``/docs`` are generated from
these functions and models)::

    GET  /search?q=&k=&cursor=&min_score=    text -> images
    POST /search?k=&cursor=&min_score=       image -> images (raw image/* body, or JSON base64)
    GET  /images/{key}/similar?k=&cursor=    more like a stored image
    GET  /health   GET /version   GET /      (the search page)

Every error is JSON ``{"status", "error", "message", "details"?}`` with the right status; no
input reaches a 500. ``QueryApi.handle`` resolves one event and records per-route metrics::

    api = QueryApi(service, metrics)
    api.handle(event, context)      # the handler's whole body
"""

import base64
import binascii
import json
import logging
import time
from http import HTTPStatus
from importlib import resources
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.metrics import Metrics, MetricUnit
from pydantic import BaseModel, Field

from imgsearch.search.cursor import MAX_CURSOR_LENGTH
from imgsearch.search.engine import MAX_QUERY_CHARS, Page
from imgsearch.search.errors import (
    ApiError,
    BadRequest,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)
from imgsearch.search.service import SearchService

logger = logging.getLogger(__name__)

UNMATCHED_ROUTE = "unmatched"
_MALFORMED = {"json_invalid", "missing", "string_unicode"}
"""Validation error types that mean a malformed request (400) rather than a bad value (422)."""


class SearchResult(BaseModel):
    key: str = Field(description="S3 key of the image")
    id: str = Field(description="Stable 63-bit image id (a string: JSON numbers lose digits)")
    score: float = Field(description="Cosine similarity to the query")
    url: str = Field(description="Presigned GET URL of the image, valid for a short time")


class SearchResponse(BaseModel):
    index_version: str = Field(description="The index version that answered")
    model: str = Field(description="Model id (name@version) that embedded the query")
    k: int
    results: list[SearchResult]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` with the same query for the next page"
    )


class Health(BaseModel):
    status: Literal["ok", "no_index"]
    index_loaded: bool
    index_version: str | None = None
    model: str


class VersionInfo(BaseModel):
    model: str
    embedding_dim: int
    index_version: str | None = None
    built_at: str | None = None
    published_at: str | None = None
    image_count: int | None = None
    headline: dict[str, float] = Field(
        default_factory=dict, description="Key figures of the index's validation report"
    )


class ErrorBody(BaseModel):
    status: int
    error: str
    message: str
    details: dict[str, Any] | None = None


class ImageUpload(BaseModel):
    image: str = Field(description="The image, base64 (a data: URL prefix is accepted)")


def _error_responses(*statuses: HTTPStatus) -> dict[int, Any]:
    return {
        int(status): {
            "description": status.phrase,
            "content": {content_types.APPLICATION_JSON: {"model": ErrorBody}},
        }
        for status in statuses
    }


def _json_error(error: ApiError) -> Response:
    return Response(
        status_code=int(error.status),
        content_type=content_types.APPLICATION_JSON,
        body=error.body(),
    )


class RouteMetrics:
    """Per-route latency, results and errors, added to the handler's Powertools ``Metrics``."""

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics
        self.route = UNMATCHED_ROUTE
        self.results: int | None = None

    def note_route(self, app: APIGatewayHttpResolver) -> None:
        route = app.context.get("_route")
        if route is not None:
            self.route = f"{route.method} {route.openapi_path}"

    def record(self, status: int, seconds: float) -> None:
        if self.metrics is None:
            return
        self.metrics.add_dimension(name="route", value=self.route)
        self.metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=seconds * 1e3)
        self.metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        self.metrics.add_metric(
            name="ClientErrors", unit=MetricUnit.Count, value=int(400 <= status < 500)
        )
        self.metrics.add_metric(
            name="ServerErrors", unit=MetricUnit.Count, value=int(status >= 500)
        )
        if self.results is not None:
            self.metrics.add_metric(name="Results", unit=MetricUnit.Count, value=self.results)


class QueryApi:
    """The resolver and its per-request bookkeeping for one ``SearchService``."""

    def __init__(self, service: SearchService, metrics: Metrics | None = None) -> None:
        self.service = service
        self.stats = RouteMetrics(metrics)
        self.app = create_app(service, self.stats)

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.stats.route, self.stats.results = UNMATCHED_ROUTE, None
        started = time.perf_counter()
        response = self.app.resolve(event, context)
        self.stats.record(int(response.get("statusCode", 500)), time.perf_counter() - started)
        return response


def read_upload(content_type: str, body: str | None, is_base64: bool, limit: int) -> bytes:
    """The image bytes of a ``POST /search``: a raw ``image/*`` body or JSON with base64."""
    media = content_type.split(";", 1)[0].strip().lower()
    raw = body or ""
    if media.startswith("image/"):
        if is_base64:
            return _decode_base64(raw, limit)
        data = raw.encode("utf-8", "replace")
        _check_size(len(data), limit)
        return data
    if media == content_types.APPLICATION_JSON or media.endswith("+json"):
        text = _decode_base64(raw, 2 * limit).decode("utf-8", "replace") if is_base64 else raw
        _check_size(len(text) // 4 * 3 - 1024, limit)  # the base64 inside inflates by 4/3
        try:
            document = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from exc
        image = document.get("image") if isinstance(document, dict) else None
        if not isinstance(image, str):
            raise BadRequest('the JSON body must be an object with "image": a base64 string')
        if image.startswith("data:") and "," in image:
            image = image.split(",", 1)[1]
        return _decode_base64(image, limit)
    raise UnsupportedMediaType(
        f"send the image as the body with an image/* Content-Type, or as JSON; got {media!r}",
        content_type=media,
    )


def _check_size(size: int, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(f"the upload is {size} bytes; the limit is {limit}", limit=limit)


def _decode_base64(text: str, limit: int) -> bytes:
    compact = "".join(text.split())
    _check_size(len(compact) // 4 * 3, limit)  # before decoding: never decode a huge body
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"the image is not valid base64: {exc}") from exc
    _check_size(len(data), limit)
    return data


def _page_html() -> str:
    return resources.files("imgsearch.search").joinpath("page.html").read_text(encoding="utf-8")


def create_app(service: SearchService, stats: RouteMetrics | None = None) -> APIGatewayHttpResolver:
    """The resolver with every route, the OpenAPI document and the error mapping."""
    stats = stats or RouteMetrics(None)
    settings = service.settings.api
    app = APIGatewayHttpResolver(enable_validation=True)
    title, version = "imgsearch query API", "1.0"
    description = "Semantic image search: text, image and similar-image queries over S3 images."
    app.enable_swagger(path="/docs", title=title, version=version, description=description)
    page_html = _page_html()

    K = Annotated[
        int, Query(ge=1, le=settings.max_k, description=f"Results per page (1-{settings.max_k})")
    ]
    CursorParam = Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_LENGTH, description="`next_cursor` of the previous page"),
    ]
    MinScore = Annotated[
        float | None, Query(ge=-1.0, le=1.0, description="Drop results scoring below this")
    ]
    search_errors = _error_responses(
        HTTPStatus.BAD_REQUEST, HTTPStatus.UNPROCESSABLE_ENTITY, HTTPStatus.SERVICE_UNAVAILABLE
    )

    def respond(page: Page, k: int) -> SearchResponse:
        stats.results = len(page.hits)
        return SearchResponse(
            index_version=page.served.version,
            model=page.served.current.model,
            k=k,
            results=[
                SearchResult(key=h.key, id=str(h.id), score=h.score, url=service.presign(h.key))
                for h in page.hits
            ],
            next_cursor=page.next_cursor,
        )

    def serving():
        service.server.refresh_if_due()
        return service.server.require()

    def note_route(app: APIGatewayHttpResolver, next_middleware: Any) -> Response:
        stats.note_route(app)
        return next_middleware(app)

    app.use([note_route])

    @app.get("/", include_in_schema=False)
    def page():
        return Response(status_code=200, content_type="text/html; charset=utf-8", body=page_html)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi():
        body = app.get_openapi_json_schema(title=title, version=version, description=description)
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=body)

    @app.get("/health", summary="Liveness and whether an index is loaded (no model or index work)")
    def health() -> Health:
        served = service.server.served
        return Health(
            status="ok" if served else "no_index",
            index_loaded=served is not None,
            index_version=served.version if served else None,
            model=service.model.model_id,
        )

    @app.get("/version", summary="Model and index versions, with the index's headline figures")
    def version_info() -> VersionInfo:
        service.server.refresh_if_due()
        served = service.server.served
        current = served.current if served else None
        return VersionInfo(
            model=service.model.model_id,
            embedding_dim=service.model.dim,
            index_version=current.version if current else None,
            built_at=current.built_at if current else None,
            published_at=(current.published_at or None) if current else None,
            image_count=len(served.index) if served else None,
            headline=current.headline if current else {},
        )

    @app.get(
        "/search",
        summary="Text to image search",
        responses=search_errors,
    )
    def search_text(
        q: Annotated[
            str, Query(max_length=MAX_QUERY_CHARS, description="What the images should show")
        ],
        k: K = settings.default_k,
        cursor: CursorParam = None,
        min_score: MinScore = None,
    ) -> SearchResponse:
        page = service.engine.text(serving(), q, k, cursor, min_score)
        return respond(page, k)

    @app.post(
        "/search",
        summary="Image to image search",
        description=(
            "The image as the raw body with an `image/*` Content-Type, or as JSON "
            f'`{{"image": "<base64>"}}`; at most {settings.max_upload_bytes} bytes.'
        ),
        responses=_error_responses(
            HTTPStatus.BAD_REQUEST,
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            HTTPStatus.UNPROCESSABLE_ENTITY,
            HTTPStatus.SERVICE_UNAVAILABLE,
        ),
        openapi_extensions={
            "requestBody": {
                "required": True,
                "content": {
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                    content_types.APPLICATION_JSON: {"schema": ImageUpload.model_json_schema()},
                },
            }
        },
    )
    def search_image(
        k: K = settings.default_k,
        cursor: CursorParam = None,
        min_score: MinScore = None,
    ) -> SearchResponse:
        event = app.current_event
        data = read_upload(
            event.headers.get("content-type") or "",
            event.body,
            event.is_base64_encoded,
            settings.max_upload_bytes,
        )
        page = service.engine.image(serving(), data, k, cursor, min_score)
        return respond(page, k)

    @app.get(
        "/images/<key>/similar",
        summary="More like this image",
        description="`key` is the image's S3 key, URL-encoded (`/` as `%2F`).",
        responses=_error_responses(
            HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY, HTTPStatus.SERVICE_UNAVAILABLE
        ),
    )
    def search_similar(
        key: Annotated[str, Path(description="S3 key of a stored image, URL-encoded")],
        k: K = settings.default_k,
        cursor: CursorParam = None,
        min_score: MinScore = None,
    ) -> SearchResponse:
        page = service.engine.similar(serving(), unquote(key), k, cursor, min_score)
        return respond(page, k)

    @app.exception_handler(ApiError)
    def api_error(error: ApiError) -> Response:
        stats.note_route(app)
        log = logger.warning if error.status >= 500 else logger.info
        log("request refused: %s", error.message, extra={"status": int(error.status)})
        return _json_error(error)

    @app.exception_handler(RequestValidationError)
    def invalid_request(error: RequestValidationError) -> Response:
        stats.note_route(app)
        problems = [
            {"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")}
            for e in error.errors()
        ]
        kind = BadRequest if any(p["type"] in _MALFORMED for p in problems) else Unprocessable
        summary = "; ".join(
            f"{'.'.join(str(part) for part in p['loc'])}: {p['msg']}" for p in problems
        )
        return _json_error(kind(summary or "invalid request", errors=problems))

    @app.not_found
    def not_found(_: NotFoundError) -> Response:
        event = app.current_event
        return _json_error(NotFound(f"no route {event.http_method} {event.path}"))

    @app.exception_handler(Exception)
    def unexpected(error: Exception) -> Response:
        stats.note_route(app)
        logger.exception("unhandled error")
        body = {"status": 500, "error": "internal", "message": "internal error"}
        return Response(status_code=500, content_type=content_types.APPLICATION_JSON, body=body)

    return app
