"""``imgsearch_client`` against a local HTTP server that checks what it receives.

The server verifies SigV4 signatures with botocore's own signer: it rebuilds the canonical
request from what arrived (the signed headers only, the body, the ``X-Amz-Date``) and compares
signatures, as API Gateway's IAM authorization does. Throttling and auth refusals are answered
the way API Gateway answers them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import Session
from imgsearch_client import ApiError, AuthError, Bearer, Client, Iam, NoAuth

KEY, SECRET, REGION = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "eu-west-1"
PAGE = {
    "index_version": "20250101T000000.000000Z-a1b2c3",
    "model": "demo-clip@1",
    "k": 1,
    "results": [{"key": "images/a b.png", "id": "42", "score": 0.9, "url": "http://x/a"}],
    "next_cursor": None,
}


def signature_is_valid(method: str, url: str, headers: dict[str, str], body: bytes) -> bool:
    """botocore recomputes the signature of what arrived and compares."""
    authorization = headers.get("Authorization", "")
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return False
    fields = authorization.removeprefix("AWS4-HMAC-SHA256 ").split(",")
    parts = dict(field.strip().split("=", 1) for field in fields)
    received = {k.lower(): v for k, v in headers.items()}
    names = parts["SignedHeaders"].split(";")
    request = AWSRequest(
        method=method, url=url, data=body, headers={n: received[n] for n in names if n in received}
    )
    stamp = received["x-amz-date"]
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(KEY, Api.secret), "execute-api", REGION)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    scope = f"{KEY}/{stamp[:8]}/{REGION}/execute-api/aws4_request"
    return parts["Credential"] == scope and parts["Signature"] == expected


class Api(BaseHTTPRequestHandler):
    mode: ClassVar[str] = "none"
    secret: ClassVar[str] = SECRET
    """The secret the server expects the signer to hold."""
    throttle: ClassVar[int] = 0
    seen: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = f"http://{self.headers['Host']}{self.path}"
        headers = dict(self.headers.items())
        type(self).seen.append({"method": self.command, "path": self.path, "body": body})
        if type(self).throttle:
            type(self).throttle -= 1
            return self._answer(429, {"message": "Too Many Requests"}, {"Retry-After": "0"})
        if self.mode == "IAM" and not signature_is_valid(self.command, url, headers, body):
            return self._answer(403, {"message": "Forbidden"})
        if self.mode == "JWT" and headers.get("Authorization") != "Bearer good-token":
            return self._answer(401, {"message": "Unauthorized"})
        route = urlsplit(self.path).path
        if route in ("/search",) or route.endswith("/similar"):
            return self._answer(200, PAGE)
        if route == "/recent":
            image = {"key": "images/new.png", "id": "7", "updated_at": "2026-01-01T00:00:00Z",
                     "url": "http://x/new"}  # fmt: skip
            return self._answer(200, {"index_version": None, "k": 3, "results": [image]})
        if route == "/version":
            return self._answer(200, {"model": "demo-clip@1", "embedding_dim": 64,
                                      "index_version": PAGE["index_version"]})  # fmt: skip
        return self._answer(404, {"status": 404, "error": "not_found", "message": "no route"})

    do_GET = do_POST = _handle


@pytest.fixture
def server() -> Iterator[str]:
    Api.mode, Api.secret, Api.throttle, Api.seen = "none", SECRET, 0, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def signer() -> Iam:
    session = Session()
    session.set_credentials(KEY, SECRET)
    return Iam(session=session, region=REGION)


def test_iam_requests_carry_a_signature_botocore_accepts(server: str) -> None:
    Api.mode = "IAM"
    api = Client(server, auth=signer())
    page = api.search("two red circles", k=1)
    assert page.results[0].key == "images/a b.png" and page.results[0].score == 0.9
    assert api.similar("images/a b.png").index_version == PAGE["index_version"]
    assert api.search_image(b"\x89PNG fake bytes", filename="x.png").k == 1  # body is signed too
    assert Api.seen[-1]["body"] == b"\x89PNG fake bytes"
    assert parse_qs(urlsplit(Api.seen[0]["path"]).query) == {"q": ["two red circles"], "k": ["1"]}


def test_an_unsigned_or_wrongly_signed_request_is_refused_with_the_mode_named(server: str) -> None:
    Api.mode = "IAM"
    with pytest.raises(AuthError, match=r"403 Forbidden.*sent auth none.*wants IAM"):
        Client(server).search("x")
    Api.secret = SECRET + "x"  # the signer holds another secret: botocore's check fails
    with pytest.raises(AuthError, match="sent auth IAM"):
        Client(server, auth=signer()).search("x")


def test_jwt_and_none(server: str) -> None:
    Api.mode = "JWT"
    assert Client(server, auth=Bearer("good-token")).version().embedding_dim == 64
    with pytest.raises(AuthError, match=r"401.*wants JWT"):
        Client(server, auth=Bearer("stale")).version()
    Api.mode = "none"
    assert Client(server, auth=NoAuth()).version().model == "demo-clip@1"


def test_recent_images(server: str) -> None:
    page = Client(server).recent(k=3)
    assert page.index_version is None and page.k == 3
    assert [(r.key, r.id, r.url) for r in page.results] == [("images/new.png", "7", "http://x/new")]
    assert Api.seen[-1]["path"] == "/recent?k=3"


def test_throttled_calls_are_retried_then_raised(server: str) -> None:
    Api.throttle = 2
    assert Client(server, backoff=0.01).search("x").k == 1
    assert len(Api.seen) == 3
    Api.throttle = 10
    with pytest.raises(ApiError, match="429") as raised:
        Client(server, retries=1, backoff=0.01).search("x")
    assert raised.value.status == 429 and not isinstance(raised.value, AuthError)


def test_unknown_route_raises_the_api_envelope(server: str) -> None:
    with pytest.raises(ApiError) as raised:
        Client(server).request("GET", "/nope")
    assert raised.value.status == 404 and raised.value.body["error"] == "not_found"
    assert len(Api.seen) == 1  # no retry of a 404
