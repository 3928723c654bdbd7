"""Signed query ids: every search answer carries one, and ``POST /feedback`` takes only ids this
stack issued, and only for a while.

An id is ``q1.<random>.<issued>.<mac>``: 96 random bits, the issue time in seconds (base 36)
and an HMAC-SHA256 over both with the stack's key (128 bits kept), so an id can be checked with
no lookup and no state::

    signer = QuerySigner(key=b"32 random bytes ...", max_age_seconds=86400)
    query_id = signer.issue()
    signer.verify(query_id)     # or QuerySignatureError(reason="forged"|"stale"|"malformed")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

VERSION = "q1"
FUTURE_SKEW_SECONDS = 300
"""An id may come from an environment whose clock is this far ahead."""
_MAC_BYTES = 16


class QuerySignatureError(ValueError):
    """A feedback's query id was not issued by this stack, or no longer counts."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class QuerySigner:
    def __init__(
        self,
        key: bytes,
        max_age_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(key) < 16:
            raise ValueError("a query signing key needs at least 16 bytes")
        self._key = key
        self.max_age_seconds = max_age_seconds
        self._clock = clock

    def _mac(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest()
        return _b64(digest[:_MAC_BYTES])

    def issue(self) -> str:
        body = f"{VERSION}.{_b64(secrets.token_bytes(12))}.{_to36(int(self._clock()))}"
        return f"{body}.{self._mac(body)}"

    def issued_at(self, query_id: str) -> int:
        """When ``query_id`` was issued (unix seconds), once ``verify`` accepted it."""
        return int(query_id.split(".")[2], 36)

    def verify(self, query_id: str) -> None:
        """Raise ``QuerySignatureError`` unless this stack issued ``query_id`` recently enough."""
        parts = query_id.split(".")
        if len(parts) != 4 or parts[0] != VERSION:
            raise QuerySignatureError("malformed", "query_id is not one this API issued")
        body = ".".join(parts[:3])
        if not hmac.compare_digest(self._mac(body), parts[3]):
            raise QuerySignatureError("forged", "query_id is not one this API issued")
        try:
            issued = int(parts[2], 36)
        except ValueError:  # signed, so only a key leak could get here
            raise QuerySignatureError("malformed", "query_id is not one this API issued") from None
        age = self._clock() - issued
        if age > self.max_age_seconds:
            raise QuerySignatureError(
                "stale",
                f"query_id was issued {int(age)} s ago; feedback is taken for "
                f"{int(self.max_age_seconds)} s",
            )
        if age < -FUTURE_SKEW_SECONDS:
            raise QuerySignatureError("malformed", "query_id was issued in the future")


def _to36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out
