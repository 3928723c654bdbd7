"""The query API's request and response bodies: the contract the OpenAPI document publishes.

Routes return these models and Powertools validates and serialises them; errors are
``ErrorBody`` and each route lists the statuses it may answer with ``error_responses``. The
models have no docstrings: pydantic would publish them in the OpenAPI document::

    @router.get("/health", responses=error_responses(HTTPStatus.SERVICE_UNAVAILABLE))
    def health() -> Health: ...
"""

from http import HTTPStatus
from typing import Any, Literal

from aws_lambda_powertools.event_handler import content_types
from pydantic import BaseModel, Field


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


# Not "VersionInfo": that name is a stored index version (imgsearch.catalog.versions).
class VersionResponse(BaseModel):
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


def error_responses(*statuses: HTTPStatus) -> dict[int, Any]:
    """The OpenAPI ``responses`` of a route that may refuse with ``statuses``."""
    return {
        int(status): {
            "description": status.phrase,
            "content": {content_types.APPLICATION_JSON: {"model": ErrorBody}},
        }
        for status in statuses
    }
