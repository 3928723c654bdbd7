"""Opaque pagination cursors, bound to one index version and one query.

A cursor remembers the last hit returned, as (score, id): the next page holds the hits that rank
strictly after it in the order (score descending, id ascending). Searching one index version with
one query vector is deterministic, so a page never repeats a hit and never skips one that an
equally deep search would find. A malformed cursor is refused by ``parse`` (no index needed),
one from another index version or another query by ``check``::

    token = Cursor("20240601T120000Z-ab12cd", fingerprint, returned=20, score=0.31, id=42).encode()
    cursor = Cursor.parse(token)                            # raises InvalidCursor if malformed
    cursor.check(version="20240601T120000Z-ab12cd", query=fingerprint)
    Cursor.decode(token, version="another", query=fingerprint)   # both; raises InvalidCursor
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from imgsearch.query.errors import InvalidCursor

MAX_CURSOR_LENGTH = 512
_CHECK_BYTES = 4


def fingerprint(kind: str, query: bytes | str) -> str:
    """A short, stable digest of a query: a cursor only continues the query that made it."""
    data = query.encode("utf-8") if isinstance(query, str) else query
    return hashlib.blake2b(kind.encode() + b"\0" + data, digest_size=8).hexdigest()


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECK_BYTES).digest()


@dataclass(frozen=True)
class Cursor:
    version: str
    query: str
    """``fingerprint`` of the query."""
    returned: int
    """Hits returned by the previous pages: how deep the next search must reach."""
    score: float
    id: int

    def encode(self) -> str:
        payload = json.dumps(
            [self.version, self.query, self.returned, self.score, self.id], separators=(",", ":")
        ).encode()
        return base64.urlsafe_b64encode(payload + _checksum(payload)).rstrip(b"=").decode()

    @classmethod
    def decode(cls, token: str, version: str, query: str) -> Cursor:
        """Parse and check a cursor; every problem is an ``InvalidCursor`` (HTTP 422)."""
        return cls.parse(token).check(version, query)

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """A well-formed cursor (``InvalidCursor`` otherwise), not yet checked against a query."""
        if len(token) > MAX_CURSOR_LENGTH:
            raise InvalidCursor("cursor is too long")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            payload, check = raw[:-_CHECK_BYTES], raw[-_CHECK_BYTES:]
            if len(raw) <= _CHECK_BYTES or _checksum(payload) != check:
                raise ValueError("checksum mismatch")
            cursor_version, query_print, returned, score, image_id = json.loads(payload)
            cursor = cls(
                str(cursor_version), str(query_print), int(returned), float(score), int(image_id)
            )
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidCursor("cursor is malformed") from exc
        if cursor.returned < 1 or not -1.0 <= cursor.score <= 2.0:
            raise InvalidCursor("cursor is malformed")
        return cursor

    def check(self, version: str, query: str) -> Cursor:
        """This cursor, if it continues ``query`` on index ``version`` (else ``InvalidCursor``)."""
        if self.version != version:
            raise InvalidCursor(
                f"cursor belongs to index version {self.version}; the API now serves {version}:"
                " start the search again",
                cursor_version=self.version,
                index_version=version,
            )
        if self.query != query:
            raise InvalidCursor("cursor belongs to another query")
        return self
