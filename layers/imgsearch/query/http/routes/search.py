"""The three searches, which share their paging parameters and their response::

    GET  /search?q=&k=&cursor=&min_score=    text -> images
    POST /search?k=&cursor=&min_score=       image -> images (raw image/* body, or JSON base64)
    GET  /images/{key}/similar?k=&cursor=    more like a stored image (key URL-encoded)

Each route notes how many results it answered with under ``RESULTS`` in the routing context,
where the route metrics read it (``imgsearch.query.http.api.RouteMetrics``).
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
from imgsearch.query.http.models import ImageUpload, SearchResponse, error_responses
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


def router(service: SearchService, settings: ApiSettings) -> APIGatewayHttpRouter:
    """Text, image and similar-image search; ``k`` defaults to and is bounded by ``settings``."""
    router = APIGatewayHttpRouter()
    K = Annotated[
        int, Query(ge=1, le=settings.max_k, description=f"Results per page (1-{settings.max_k})")
    ]

    def answered(response: SearchResponse) -> SearchResponse:
        router.append_context(**{RESULTS: len(response.results)})
        return response

    @router.get(
        "/search",
        summary="Text to image search",
        responses=error_responses(
            HTTPStatus.BAD_REQUEST, HTTPStatus.UNPROCESSABLE_ENTITY, HTTPStatus.SERVICE_UNAVAILABLE
        ),
    )
    def search_text(
        q: Annotated[
            str, Query(max_length=MAX_QUERY_CHARS, description="What the images should show")
        ],
        k: K = settings.default_k,
        cursor: CursorParam = None,
        min_score: MinScore = None,
    ) -> SearchResponse:
        return answered(service.text(q, k, cursor, min_score))

    @router.post(
        "/search",
        summary="Image to image search",
        description=(
            "The image as the raw body with an `image/*` Content-Type, or as JSON "
            f'`{{"image": "<base64>"}}`; at most {settings.max_upload_bytes} bytes.'
        ),
        responses=error_responses(
            HTTPStatus.BAD_REQUEST,
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            HTTPStatus.UNPROCESSABLE_ENTITY,
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
        responses=error_responses(
            HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY, HTTPStatus.SERVICE_UNAVAILABLE
        ),
    )
    def search_similar(
        key: Annotated[str, Path(description="S3 key of a stored image, URL-encoded")],
        k: K = settings.default_k,
        cursor: CursorParam = None,
        min_score: MinScore = None,
    ) -> SearchResponse:
        return answered(service.similar(unquote(key), k, cursor, min_score))

    return router
