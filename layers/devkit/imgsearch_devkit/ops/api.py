"""A small client of the query HTTP API, as any HTTP client would call it (standard library only).

::

    api = ApiClient("http://127.0.0.1:3000")
    api.search("red circle", k=5)["results"]          # text -> images
    api.search_image(Path("cat.jpg").read_bytes())     # image -> images
    api.similar("images/cat.jpg")                      # more like this
"""

from __future__ import annotations

import json
import mimetypes
import time
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen


class ApiClientError(RuntimeError):
    """The API answered with an error status, or could not be reached."""

    def __init__(self, message: str, status: int = 0, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class ApiClient:
    def __init__(self, base_url: str, timeout: float = 60) -> None:
        if not base_url:
            raise ApiClientError("the stack has no API URL")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> Any:
        url = self.base_url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        request = Request(url, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except HTTPError as exc:
            raw = exc.read()
            try:
                detail = json.loads(raw)
            except ValueError:
                detail = raw.decode("utf-8", "replace")
            message = detail.get("message") if isinstance(detail, dict) else detail
            raise ApiClientError(
                f"{method} {path}: {exc.code} {message}", exc.code, detail
            ) from exc
        except URLError as exc:
            raise ApiClientError(f"cannot reach {self.base_url}: {exc.reason}") from exc

    def search(self, text: str, k: int | None = None, min_score: float | None = None) -> Any:
        return self.request("GET", "/search", {"q": text, "k": k, "min_score": min_score})

    def search_image(
        self, data: bytes, filename: str = "", k: int | None = None, min_score: float | None = None
    ) -> Any:
        # The API takes any image/* type (it reads the bytes); unknown names get a 415 from it.
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return self.request(
            "POST",
            "/search",
            {"k": k, "min_score": min_score},
            body=data,
            content_type=content_type,
        )

    def similar(self, key: str, k: int | None = None) -> Any:
        return self.request("GET", f"/images/{quote(key, safe='')}/similar", {"k": k})

    def health(self) -> Any:
        return self.request("GET", "/health")

    def version(self) -> Any:
        """Model and index versions; also makes the function look for a newer index."""
        return self.request("GET", "/version")

    def wait_for_version(self, version: str, timeout: float = 60, interval: float = 0.5) -> None:
        """Poll ``/version`` until the API serves ``version`` (it checks at its refresh rate)."""
        deadline = time.monotonic() + timeout
        while self.version().get("index_version") != version:
            if time.monotonic() > deadline:
                raise ApiClientError(
                    f"the API did not serve index {version} within {timeout:.0f} s"
                )
            time.sleep(interval)
