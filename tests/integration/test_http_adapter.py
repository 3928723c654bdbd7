"""The local stack's API Gateway emulation over a real socket: what API Gateway and Lambda refuse
before the function runs gets the query API's JSON error envelope, as the function's own
refusals do (a bad Content-Length, a method an HTTP API does not route, an oversized event)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from imgsearch_devkit.local.http_adapter import MAX_PAYLOAD_BYTES, ApiServer


@pytest.fixture
def server() -> Iterator[tuple[ApiServer, list[dict[str, Any]]]]:
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        return {"statusCode": 200, "body": "{}", "headers": {"content-type": "application/json"}}

    api = ApiServer(handler, port=0)
    api.start()
    try:
        yield api, events
    finally:
        api.stop()


def raw_request(api: ApiServer, request: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send bytes as they are (http.client would refuse to send a bad Content-Length)."""
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


def request(api: ApiServer, method: str, path: str, body: bytes = b"", **headers: str):
    host, port = api.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def assert_envelope(body: dict[str, Any], status: int, error: str) -> None:
    assert body["status"] == status and body["error"] == error and body["message"], body


@pytest.mark.parametrize(
    ("request_line", "status", "error"),
    [
        *((f"POST /search HTTP/1.1\r\nContent-Length: {n}", 400, "bad_request")
          for n in ("abc", "-5", "1.5")),
        *((f"{m} /search HTTP/1.1", 405, "method_not_allowed")
          for m in ("TRACE", "QUERY", "CONNECT")),
    ],
)  # fmt: skip
def test_what_api_gateway_refuses_gets_its_status_as_json(
    server, request_line: str, status: int, error: str
) -> None:
    """A bad Content-Length is a 400, a method an HTTP API does not route a 405 (with Allow);
    neither reaches the function."""
    api, events = server
    answer, headers, body = raw_request(api, f"{request_line}\r\nHost: x\r\n\r\n".encode())
    assert answer == status and headers["content-type"] == "application/json"
    if status == 405:
        assert "GET" in headers["allow"] and "POST" in headers["allow"]
    assert_envelope(body, status, error)
    assert events == []


def test_an_event_over_lambdas_limit_gets_413_json(server) -> None:
    api, events = server
    # Binary bodies arrive base64-encoded: 4.8 MB raw is 6.4 MB in the event.
    too_big = b"\0" * (MAX_PAYLOAD_BYTES * 3 // 4 + 10_000)
    status, _, body = request(api, "POST", "/search", too_big, **{"Content-Type": "image/png"})
    assert status == 413
    assert_envelope(body, 413, "too_large")
    assert body["details"]["limit"] == MAX_PAYLOAD_BYTES
    assert events == []

    fits = b"\0" * (4 * 1024 * 1024)  # the query function's default upload limit
    status, _, _ = request(api, "POST", "/search", fits, **{"Content-Type": "image/png"})
    assert status == 200 and len(events) == 1


def test_a_body_over_api_gateways_limit_is_refused_unread(server) -> None:
    api, events = server
    status, headers, body = raw_request(
        api, b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\nabc"
    )
    assert status == 413 and headers["connection"] == "close"
    assert_envelope(body, 413, "too_large")
    assert events == []
