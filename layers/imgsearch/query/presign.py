"""Presigned S3 GET URLs for search results, signed with SigV4 query authentication.

``generate_presigned_url`` resolves the endpoint, emits events and derives the signing key for
every URL: ~0.4 ms each, 8 ms for a page of 20, as long as the whole search. The URL of one bucket
differs only by key and time, so ``Presigner`` takes the endpoint from one URL botocore makes,
keeps the day's signing key, and signs each URL as botocore's ``S3SigV4QueryAuth`` does (the unit
test checks that both give the same URL)::

    presigner = Presigner(s3, "my-bucket", credentials, expires=900)
    presigner.url("images/cat.jpg")
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

_PROBE = "imgsearch-probe"
_ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def _quote(text: str) -> str:
    return quote(text, safe="-_.~")


class Presigner:
    def __init__(self, s3: Any, bucket: str, credentials: Any, expires: int) -> None:
        """``s3``: a client (its endpoint and region); ``credentials``: botocore credentials
        (refreshable ones are read at each signature)."""
        probe = urlsplit(
            s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": _PROBE}, ExpiresIn=expires
            )
        )
        if not probe.path.endswith("/" + _PROBE):
            raise ValueError(f"unexpected presigned URL layout: {probe.geturl()}")
        self._base = f"{probe.scheme}://{probe.netloc}"
        self._host = probe.netloc
        self._path_prefix = probe.path[: -len(_PROBE)]
        self._region = s3.meta.region_name
        self._credentials = credentials
        self._expires = str(expires)
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, day: str) -> bytes:
        cached = self._keys.get((secret, day))
        if cached is None:
            key = _hmac(("AWS4" + secret).encode("utf-8"), day)
            for part in (self._region, "s3", "aws4_request"):
                key = _hmac(key, part)
            self._keys = {(secret, day): key}  # one day's key is all that is ever needed
            cached = key
        return cached

    def url(self, key: str, now: datetime | None = None) -> str:
        credentials = self._credentials.get_frozen_credentials()
        moment = now or datetime.now(UTC)
        stamp, day = moment.strftime("%Y%m%dT%H%M%SZ"), moment.strftime("%Y%m%d")
        scope = f"{day}/{self._region}/s3/aws4_request"
        params = {
            "X-Amz-Algorithm": _ALGORITHM,
            "X-Amz-Credential": f"{credentials.access_key}/{scope}",
            "X-Amz-Date": stamp,
            "X-Amz-Expires": self._expires,
            "X-Amz-SignedHeaders": "host",
        }
        if credentials.token:
            params["X-Amz-Security-Token"] = credentials.token
        query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(params.items()))
        path = self._path_prefix + quote(key, safe="/~")
        canonical = f"GET\n{path}\n{query}\nhost:{self._host}\n\nhost\nUNSIGNED-PAYLOAD"
        to_sign = "\n".join(
            [_ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
        )
        signature = hmac.new(
            self._signing_key(credentials.secret_key, day),
            to_sign.encode("utf-8"),
            hashlib.sha256,
        ).hexdigest()
        return f"{self._base}{path}?{query}&X-Amz-Signature={signature}"
