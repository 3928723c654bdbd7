"""API Gateway HTTP API emulation: HTTP requests in, payload format 2.0 events to a handler.

Each request becomes the event an HTTP API ``$default`` route with a Lambda proxy integration
(payload format 2.0) would send, and the handler's result becomes the response as API Gateway
would shape it (a dict with ``statusCode``, or any other JSON value as a 200 JSON body). What
API Gateway and Lambda refuse before the function runs is refused here too, as JSON in the
query API's error envelope: a bad ``Content-Length`` (400), a method an HTTP API does not route
(405), and a body over API Gateway's 10 MB or an event over Lambda's 6 MiB (413; the query
function's own, smaller upload limit then answers for everything that fits)::

    server = ApiServer(query_handler, port=3000)   # port 0 picks a free port
    server.start()
    server.url                                     # "http://127.0.0.1:3000"
    server.stop()
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from imgsearch.query.errors import ApiError, BadRequest, MethodNotAllowed, PayloadTooLarge
from imgsearch_devkit.local.lambda_context import LambdaContext

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
"""Lambda's synchronous invocation payload limit (6,291,456 bytes), for the whole event."""
MAX_BODY_BYTES = 10 * 1024 * 1024
"""API Gateway's own request body limit: a longer body is refused unread."""
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
"""The methods an HTTP API routes (``ANY``); others never reach the function."""

TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
)
"""Request bodies API Gateway passes as text; any other body arrives base64-encoded."""

API_ID = "local"


def is_text(content_type: str) -> bool:
    return content_type.lower().startswith(TEXT_TYPES)


def build_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str = "127.0.0.1",
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """The payload format 2.0 event for one request (``target`` is the path and query)."""
    parts = urlsplit(target)
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        name = name.lower()
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path or "/",
        "rawQueryString": parts.query,
        "headers": joined,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_ID,
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": method,
                "path": parts.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        if is_text(joined.get("content-type", "")):
            event["body"] = body.decode("utf-8", errors="replace")
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def event_too_large(event: dict[str, Any]) -> PayloadTooLarge | None:
    """Lambda's refusal of an event over its payload limit, or None."""
    size = len(json.dumps(event, separators=(",", ":")).encode("utf-8"))
    if size <= MAX_PAYLOAD_BYTES:
        return None
    return PayloadTooLarge(
        f"the request makes a {size}-byte Lambda event; the limit is {MAX_PAYLOAD_BYTES}"
        " (binary bodies arrive base64-encoded, 4/3 larger)",
        limit=MAX_PAYLOAD_BYTES,
    )


def error_response(error: ApiError) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [("content-type", "application/json")]
    if isinstance(error, MethodNotAllowed):
        headers.append(("allow", ", ".join(error.allow)))
    return int(error.status), headers, json.dumps(error.body()).encode()


def shape_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body API Gateway would send for a handler's result."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # Format 2.0: anything else is taken as a JSON body with status 200.
        return 200, [("content-type", "application/json")], json.dumps(result).encode()
    headers = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, str(v)) for v in values)
    headers.extend(("set-cookie", c) for c in result.get("cookies") or [])
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
    return int(result["statusCode"]), headers, body


class ApiServer:
    """A threaded HTTP server on 127.0.0.1 in front of one API Gateway v2 handler."""

    def __init__(
        self,
        handler: Handler,
        port: int = 3000,
        host: str = "127.0.0.1",
        function_name: str = "query",
        timeout_seconds: int = 30,
    ) -> None:
        self.handler = handler
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        self._httpd = ThreadingHTTPServer((host, port), self._request_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        # One event at a time, as in one Lambda execution environment (the handler's resolver
        # keeps the current event on a module-level object).
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="imgsearch-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread:  # shutdown() would wait forever for a loop that never ran
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def invoke(self, event: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        """Call the handler as the integration would; a crash is API Gateway's 500."""
        context = LambdaContext(self.function_name, timeout_seconds=self.timeout_seconds)
        try:
            with self._lock:
                result = self.handler(event, context)
        except Exception:
            logger.exception("query handler failed on %s", event["rawPath"])
            body = json.dumps({"message": "Internal Server Error"}).encode()
            return 500, [("content-type", "application/json")], body
        return shape_response(result)

    def _request_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                started = time.perf_counter()
                raw_length = (self.headers.get("content-length") or "0").strip()
                if not raw_length.isdigit():
                    self.close_connection = True  # where the body ends is unknown
                    self._refuse(BadRequest("Content-Length must be a non-negative integer"))
                    return
                length = int(raw_length)
                if length > MAX_BODY_BYTES:
                    self.close_connection = True  # the body is left unread
                    self._refuse(
                        PayloadTooLarge(
                            f"the body is {length} bytes; the limit is {MAX_BODY_BYTES}",
                            limit=MAX_BODY_BYTES,
                        )
                    )
                    return
                body = self.rfile.read(length) if length else b""
                event = build_event(
                    self.command,
                    self.path,
                    list(self.headers.items()),
                    body,
                    source_ip=self.client_address[0],
                    host=self.headers.get("host", "127.0.0.1").split(":")[0],
                )
                refusal = event_too_large(event)
                status, headers, payload = (
                    error_response(refusal) if refusal else server.invoke(event)
                )
                self._send(status, headers, payload)
                logger.info(
                    "%s %s -> %d in %.1f ms",
                    self.command,
                    self.path,
                    status,
                    (time.perf_counter() - started) * 1000,
                )

            def _refuse(self, error: ApiError) -> None:
                self._send(*error_response(error))

            def _unrouted_method(self) -> None:
                self.close_connection = True  # any body is left unread
                self._refuse(
                    MethodNotAllowed(f"an HTTP API does not route {self.command}", list(METHODS))
                )

            def __getattr__(self, name: str) -> Any:
                # http.server answers a method without a do_ handler with an HTML 501.
                if name.startswith("do_"):
                    return self._unrouted_method
                raise AttributeError(name)

            def send_error(
                self, code: int, message: str | None = None, explain: str | None = None
            ) -> None:
                # What http.server refuses itself (a bad request line, too long a URI or
                # header): JSON, as API Gateway answers, instead of its HTML page.
                self.close_connection = True
                text = message or HTTPStatus(code).phrase
                body = {"status": code, "error": "bad_request", "message": text}
                self._send(code, [("content-type", "application/json")], json.dumps(body).encode())

            def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                if self.close_connection:
                    self.send_header("connection", "close")
                self.end_headers()
                if getattr(self, "command", None) != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("api: " + format, *args)

        return Request
