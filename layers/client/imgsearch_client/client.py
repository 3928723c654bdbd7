"""``Client``: the API's operations over HTTPS, authenticated, retried, typed.

Throttling (429) and unavailable answers (502, 503, 504) are retried with exponential backoff
and jitter, honouring ``Retry-After``; a 503 of a stack that serves no index yet is retried too,
then raised. A 401 or 403 raises ``AuthError`` saying which ``AuthMode`` the stack seems to want::

    api = Client("http://127.0.0.1:3000")                  # the local stack: no auth
    page = api.search("red circle", k=3)
    page.results[0].key
    api.feedback(page.query_id, page.results[0].key, "click", rank=1)
"""

from __future__ import annotations

import json
import mimetypes
import random
import time
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

from imgsearch_client.auth import Auth, NoAuth
from imgsearch_client.errors import ApiError, AuthError, Unreachable
from imgsearch_client.models import Health, RecentPage, SearchPage, Version

RETRIED = frozenset({429, 502, 503, 504})
WANTS = {
    401: "JWT: pass a bearer token (Bearer(token), --token or IMGSEARCH_TOKEN)",
    403: "IAM: sign with credentials allowed execute-api:Invoke (Iam(profile=...), --profile)",
}
"""What API Gateway's refusals mean: 401 from a JWT authorizer, 403 from IAM authorization."""


class Client:
    def __init__(
        self,
        base_url: str,
        auth: Auth | None = None,
        timeout: float = 30,
        retries: int = 4,
        backoff: float = 0.5,
    ) -> None:
        if not base_url:
            raise Unreachable("no API URL: name the stack's ApiUrl output")
        self.base_url = base_url.rstrip("/")
        self.auth = auth or NoAuth()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    # ------------------------------------------------------------------ operations
    def search(
        self,
        text: str,
        k: int | None = None,
        cursor: str | None = None,
        min_score: float | None = None,
    ) -> SearchPage:
        query = {"q": text, "k": k, "cursor": cursor, "min_score": min_score}
        return SearchPage.parse(self.request("GET", "/search", query))

    def search_image(
        self,
        data: bytes,
        filename: str = "",
        k: int | None = None,
        cursor: str | None = None,
        min_score: float | None = None,
    ) -> SearchPage:
        # The API reads the bytes whatever image/* type is named; unknown names get its 415.
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        query = {"k": k, "cursor": cursor, "min_score": min_score}
        answer = self.request("POST", "/search", query, data, content_type)
        return SearchPage.parse(answer)

    def similar(self, key: str, k: int | None = None, cursor: str | None = None) -> SearchPage:
        path = f"/images/{quote(key, safe='')}/similar"
        return SearchPage.parse(self.request("GET", path, {"k": k, "cursor": cursor}))

    def feedback(
        self, query_id: str, key: str, event: str = "click", rank: int | None = None
    ) -> None:
        """Report a click (or a ``relevant``/``irrelevant`` judgment) on ``key``, one of the
        results of the answer ``query_id`` names (``SearchPage.query_id``)."""
        body = {"query_id": query_id, "key": key, "event": event}
        if rank is not None:
            body["rank"] = rank
        self.request(
            "POST", "/feedback", body=json.dumps(body).encode(), content_type="application/json"
        )

    def recent(self, k: int | None = None) -> RecentPage:
        """The newest indexed images, newest first; none before the first index."""
        return RecentPage.parse(self.request("GET", "/recent", {"k": k}))

    def health(self) -> Health:
        return Health.parse(self.request("GET", "/health"))

    def version(self) -> Version:
        return Version.parse(self.request("GET", "/version"))

    def wait_for_version(self, version: str, timeout: float = 90, interval: float = 0.5) -> float:
        """Poll ``/version`` until the API serves ``version``; returns the seconds it took."""
        started = time.monotonic()
        while self.version().index_version != version:
            if time.monotonic() - started > timeout:
                raise ApiError(f"the API did not serve index {version} within {timeout:.0f} s", 0)
            time.sleep(interval)
        return time.monotonic() - started

    # ------------------------------------------------------------------ transport
    def request(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> Any:
        """One call, retried; the decoded JSON answer."""
        url = self.base_url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        for attempt in range(self.retries + 1):
            headers = {"Accept": "application/json"}
            if content_type:
                headers["Content-Type"] = content_type
            # Signed per attempt: a SigV4 signature is only good for a few minutes.
            headers.update(self.auth.headers(method, url, body or b""))
            request = Request(url, data=body, method=method, headers=headers)
            try:
                with urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read() or b"null")
            except HTTPError as exc:
                status, detail = exc.code, _decode(exc.read())
                if status in RETRIED and attempt < self.retries:
                    time.sleep(self._delay(attempt, exc.headers.get("Retry-After")))
                    continue
                raise self._error(method, path, status, detail) from None
            except (URLError, TimeoutError) as exc:
                if attempt < self.retries:
                    time.sleep(self._delay(attempt, None))
                    continue
                reason = getattr(exc, "reason", exc)
                raise Unreachable(f"cannot reach {self.base_url}: {reason}") from None
        raise AssertionError("unreachable")  # the loop returns or raises

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.isdigit():
            return float(retry_after)
        return self.backoff * (2**attempt) * (0.5 + random.random())

    def _error(self, method: str, path: str, status: int, detail: Any) -> ApiError:
        message = detail.get("message") if isinstance(detail, dict) else detail
        text = f"{method} {path}: {status} {message}"
        if status in WANTS:
            sent = self.auth.mode
            return AuthError(f"{text} (sent auth {sent}; the stack wants {WANTS[status]})",
                             status, detail)  # fmt: skip
        return ApiError(text, status, detail)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
