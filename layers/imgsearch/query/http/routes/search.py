"""The three searches, which share their paging parameters and their response::

    GET  /search?q=&k=&cursor=&min_score=    text -> images
    POST /search?k=&cursor=&min_score=       image -> images (raw image/* body, or JSON base64)
    GET  /images/{key}/similar?k=&cursor=    more like a stored image (key URL-encoded)

Each route notes how many results it answered with under ``RESULTS`` in the routing context,
where the route metrics read it (``imgsearch.query.http.api.RouteMetrics``). The parameters
arrive decoded; each route refuses a query string or key that was not UTF-8 (API Gateway
would pass the replacement character on).
"""

from http import HTTPStatus
from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import content_types
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from imgsearch.core.config import ApiSettings
from imgsearch.query.cursor import MAX_CURSOR_LENGTH
from imgsearch.query.engine import MAX_QUERY_CHARS
from imgsearch.query.errors import BadRequest
from imgsearch.query.http.models import ImageUpload, SearchResponse, responses
from imgsearch.query.http.uploads import read_upload
from imgsearch.query.service import SearchService

RESULTS = "imgsearch_results"
"""Routing-context key: how many results the route answered with."""

CursorParam = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_LENGTH, description="`next_cursor` of the previous page"),
]
MinScore = Annotated[
    float | None, Query(ge=-1.0, le=1.0, description="Drop results scoring below this")
]
QueryText = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        pattern=r"\S",  # not only whitespace: that is an empty query (400)
        description="What the images should show",
    ),
]


def _unquote(raw: str, what: str) -> str:
    """Percent-decoded ``raw``, refusing bytes that are not UTF-8 (``%FF``): decoded leniently
    they become U+FFFD and would be searched."""
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the {what} is not valid UTF-8 text") from exc


def router(service: SearchService, settings: ApiSettings) -> APIGatewayHttpRouter:
    """Text, image and similar-image search; ``k`` defaults to and is bounded by ``settings``."""
    router = APIGatewayHttpRouter()
    K = Annotated[
        int, Query(ge=1, le=settings.max_k, description=f"Results per page (1-{settings.max_k})")
    ]

    def answered(response: SearchResponse) -> SearchResponse:
        router.append_context(**{RESULTS: len(response.results)})
        return response

    def utf8_query() -> None:
        _unquote(router.current_event.raw_query_string or "", "query string")

    @router.get(
        "/search",
        summary="Text to image search",
        responses=responses(SearchResponse, HTTPStatus.BAD_REQUEST, HTTPStatus.SERVICE_UNAVAILABLE),
    )
    def search_text(
        q: QueryText,
        k: K = settings.default_k,
        cursor: CursorParam = None,
        min_score: MinScore = None,
    ) -> SearchResponse:
        utf8_query()
        return answered(service.text(q, k, cursor, min_score))

    @router.post(
        "/search",
        summary="Image to image search",
        description=(
            "The image as the raw body with an `image/*` Content-Type, or as JSON "
            f'`{{"image": "<base64>"}}`; at most {settings.max_upload_bytes} bytes.'
        ),
        responses=responses(
            SearchResponse,
            HTTPStatus.BAD_REQUEST,
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            HTTPStatus.SERVICE_UNAVAILABLE,
        ),
        # The body is read by hand (raw bytes or JSON), so its schema is stated here.
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
        utf8_query()
        event = router.current_event
        data = read_upload(
            event.headers.get("content-type") or "",
            event.body,
            event.is_base64_encoded,
            settings.max_upload_bytes,
        )
        return answered(service.image(data, k, cursor, min_score))

    @router.get(
        "/images/<key>/similar",
        summary="More like this image",
        description="`key` is the image's S3 key, URL-encoded (`/` as `%2F`).",
        responses=responses(
            SearchResponse,
            HTTPStatus.BAD_REQUEST,
            HTTPStatus.NOT_FOUND,
            HTTPStatus.SERVICE_UNAVAILABLE,
        ),
    )
    def search_similar(
        key: Annotated[str, Path(description="S3 key of a stored image, URL-encoded")],
        k: K = settings.default_k,
        cursor: CursorParam = None,
        min_score: MinScore = None,
    ) -> SearchResponse:
        utf8_query()
        return answered(service.similar(_unquote(key, "key"), k, cursor, min_score))

    return router
