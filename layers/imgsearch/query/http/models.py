"""The query API's request and response bodies: the contract the OpenAPI document publishes.

Routes return these models and Powertools validates and serialises them; errors are
``ErrorBody`` and each route lists its answer and the statuses it may refuse with in
``responses``. The models have no docstrings: pydantic would publish them in the OpenAPI
document::

    @router.get("/health", responses=responses(Health))
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
    query_id: str = Field(
        description="Signed id of this answer: send it with `POST /feedback` on its results"
    )
    index_version: str = Field(description="The index version that answered")
    model: str = Field(description="Model id (name@version) that embedded the query")
    k: int
    results: list[SearchResult]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` with the same query for the next page"
    )


class FeedbackRequest(BaseModel):
    query_id: str = Field(
        min_length=1, max_length=128, description="`query_id` of the answer that showed `key`"
    )
    key: str = Field(min_length=1, max_length=1024, description="S3 key of the result")
    event: Literal["click", "relevant", "irrelevant"] = Field(
        description="`click`: opened or used for more like this; `relevant`/`irrelevant`: judged"
    )
    rank: int | None = Field(
        default=None, ge=1, le=1000, description="The 1-based rank the result was shown at"
    )


class FeedbackResponse(BaseModel):
    status: Literal["accepted"]
    query_id: str


class RecentResult(BaseModel):
    key: str = Field(description="S3 key of the image")
    id: str = Field(description="Stable 63-bit image id (a string: JSON numbers lose digits)")
    updated_at: str = Field(description="When its embedding was written (ISO 8601, UTC)")
    url: str = Field(description="Presigned GET URL of the image, valid for a short time")


class RecentResponse(BaseModel):
    index_version: str | None = Field(
        default=None, description="The index version whose images these are; null before any"
    )
    k: int
    results: list[RecentResult] = Field(description="Newest first")


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


def responses(answer: type[BaseModel], *refusals: HTTPStatus) -> dict[int, Any]:
    """The OpenAPI ``responses`` of a route that answers 200 with ``answer`` and may refuse
    with ``refusals``. Every route may also answer 422 with ``ErrorBody`` (its parameters are
    validated): stated here because Powertools would otherwise publish its own 422 body, which
    the API never sends. Once a route states its responses, Powertools adds no 200 itself."""

    def body(model: type[BaseModel], description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {content_types.APPLICATION_JSON: {"model": model}},
        }

    statuses = sorted({*refusals, HTTPStatus.UNPROCESSABLE_ENTITY})
    return {200: body(answer, "OK")} | {int(s): body(ErrorBody, s.phrase) for s in statuses}
