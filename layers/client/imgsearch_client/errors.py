"""What a call can fail with: the API's answer, an authentication refusal, or no answer."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Root of the client's errors."""


class Unreachable(ClientError):
    """No answer: the URL is wrong, the network is down, or every retry timed out."""


class ApiError(ClientError):
    """The API answered with an error status; ``body`` is its JSON error envelope when it sent
    one (``{"status", "error", "message", "details"?}``)."""

    def __init__(self, message: str, status: int, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class AuthError(ApiError):
    """401 or 403: the request was not authenticated as the stack's ``AuthMode`` requires."""
