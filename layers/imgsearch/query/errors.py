"""Errors of the query API, each with its HTTP status and a stable machine-readable code.

The API turns every one into a JSON body ``{"status": 413, "error": "too_large", "message": ...}``::

    raise PayloadTooLarge(f"{size} bytes, limit {limit}")
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from imgsearch.core.errors import ImgsearchError


class ApiError(ImgsearchError):
    """An expected failure of a request; ``status`` and ``code`` go into the response."""

    status: HTTPStatus = HTTPStatus.BAD_REQUEST
    code: str = "bad_request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": int(self.status),
            "error": self.code,
            "message": self.message,
        }
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(ApiError):
    """Malformed input: bad JSON or base64, an empty query, a missing parameter."""


class NotFound(ApiError):
    status = HTTPStatus.NOT_FOUND
    code = "not_found"


class MethodNotAllowed(ApiError):
    """A known path asked with a method it does not have; ``allow`` lists the ones it has."""

    status = HTTPStatus.METHOD_NOT_ALLOWED
    code = "method_not_allowed"

    def __init__(self, message: str, allow: list[str]) -> None:
        super().__init__(message, allow=allow)
        self.allow = allow


class PayloadTooLarge(ApiError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "too_large"


class UnsupportedMediaType(ApiError):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"


class Unprocessable(ApiError):
    """Well-formed but unusable values: ``k`` out of range, a bad or foreign cursor."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "invalid_parameter"


class InvalidCursor(Unprocessable):
    code = "invalid_cursor"


class InvalidQueryId(Unprocessable):
    """Feedback on a query id this stack did not sign, or signed too long ago."""

    code = "invalid_query_id"


class UnknownImage(Unprocessable):
    """Feedback on a key that is not an indexed image."""

    code = "unknown_image"


class TooCostly(Unprocessable):
    """An image that would take longer to decode than the query function's budget."""

    code = "too_costly"


class NoIndex(ApiError):
    """No index is being served yet (nothing published, or the published one cannot be used)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "no_index"
