"""One Lambda sandbox's Runtime API and Extensions API, for a real runtime client to run against.

The local stack calls handlers in-process; this runs a function the way Lambda does, through the
runtime the image ships (``awslambdaric``) polling ``AWS_LAMBDA_RUNTIME_API``, so that what
depends on the sandbox's lifecycle can be measured and tested: an invocation is handed to the
runtime only when the runtime and every registered extension have asked for the next event, the
response reaches the caller when the runtime posts it, and the invocation ends (the sandbox is
free again) when every extension has asked for the next event after it. Extensions register in
the init phase only, for ``INVOKE`` (internal extensions get no ``SHUTDOWN``). Protocol:
docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html and runtimes-extensions-api.html::

    with RuntimeApi(timeout_seconds=29) as api:
        process = subprocess.Popen([sys.executable, "-m", "awslambdaric", "query.app.handler"],
                                   env={**os.environ, **api.environment("imgsearch-query")})
        invocation = api.invoke({"rawPath": "/health", ...})     # waits for the response
        invocation.response, invocation.service_seconds, invocation.busy_after_seconds
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

RUNTIME = "/2018-06-01/runtime"
EXTENSION = "/2020-01-01/extension"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:local"


@dataclass
class Invocation:
    """One request to the sandbox and, once they happened, the times (``time.monotonic``) of
    its steps."""

    event: bytes
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float | None = None
    """When the runtime received it."""
    responded: float | None = None
    """When the runtime posted its response (or error): when the caller has its answer."""
    ended: float | None = None
    """When every extension had asked for the next event: the sandbox is free."""
    response: bytes | None = None
    error: bytes | None = None
    deadline_ms: int = 0
    answered: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def service_seconds(self) -> float:
        """From the runtime receiving the event to its response: what a caller waits."""
        assert self.started is not None and self.responded is not None
        return self.responded - self.started

    @property
    def busy_after_seconds(self) -> float:
        """How long the sandbox stayed busy (and billed) after the response."""
        assert self.responded is not None and self.ended is not None
        return self.ended - self.responded

    def json(self) -> Any:
        """The response, parsed."""
        if self.response is None:
            raise RuntimeError(f"invocation {self.request_id} failed: {self.error!r}")
        return json.loads(self.response)


class RuntimeApi:
    """The Runtime and Extensions APIs of one sandbox, served on ``127.0.0.1``."""

    def __init__(self, timeout_seconds: int = 30) -> None:
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Condition()
        self._initialised = False
        self._runtime_waiting = False
        self._extensions: dict[str, deque[dict[str, Any]]] = {}
        """Extension id -> its undelivered events."""
        self._waiting: set[str] = set()
        """The extensions blocked in a next-event request."""
        self._queue: deque[Invocation] = deque()
        self._current: Invocation | None = None
        self._for_runtime: Invocation | None = None
        self.init_error: bytes | None = None
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def environment(self, function_name: str, memory_mb: int = 2048) -> dict[str, str]:
        """The variables Lambda sets for a function's runtime process."""
        return {
            "AWS_LAMBDA_RUNTIME_API": self.address,
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        }

    def __enter__(self) -> RuntimeApi:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def extensions(self) -> int:
        with self._lock:
            return len(self._extensions)

    def invoke(self, event: Any, timeout: float | None = None) -> Invocation:
        """Send ``event`` (JSON-serialisable) and wait for its response (not for its end)."""
        invocation = self.submit(event)
        if not invocation.answered.wait(timeout):
            raise TimeoutError(f"no response to invocation {invocation.request_id}")
        return invocation

    def submit(self, event: Any) -> Invocation:
        """Queue ``event``; it runs when the sandbox is free."""
        invocation = Invocation(json.dumps(event).encode())
        with self._lock:
            if self.init_error is not None:
                _fail(invocation, self.init_error)
                return invocation
            self._queue.append(invocation)
            self._dispatch()
        return invocation

    # -- the endpoints (called from the server's threads) ------------------------------------

    def _register(self, name: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        events = json.loads(body or b"{}").get("events", [])
        with self._lock:
            if self._initialised:
                return 403, {}, _error("Extension.InvalidRegistration", "init phase is over")
            if not name or set(events) - {"INVOKE"}:
                return 400, {}, _error("InvalidRequest", f"{name!r} for {events}: INVOKE only")
            extension_id = str(uuid.uuid4())
            self._extensions[extension_id] = deque()
        headers = {"Lambda-Extension-Identifier": extension_id}
        return 200, headers, {"functionName": "", "functionVersion": "$LATEST", "handler": ""}

    def _extension_next(self, extension_id: str) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            if extension_id not in self._extensions:
                return 403, {}, _error("Extension.UnknownExtensionIdentifier", extension_id)
            self._waiting.add(extension_id)
            self._end_if_done()
            self._dispatch()
            events = self._extensions[extension_id]
            self._lock.wait_for(lambda: bool(events))
            self._waiting.discard(extension_id)
            return 200, {"Lambda-Extension-Event-Identifier": str(uuid.uuid4())}, events.popleft()

    def _runtime_next(self) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self._runtime_waiting = True
            self._initialised = True  # the runtime's first next ends the init phase
            self._dispatch()
            self._lock.wait_for(lambda: self._for_runtime is not None)
            invocation, self._for_runtime = self._for_runtime, None
            assert invocation is not None
            invocation.started = time.monotonic()
            headers = {
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
                "Content-Type": "application/json",
            }
            return 200, headers, invocation.event

    def _runtime_result(self, request_id: str, body: bytes, failed: bool) -> int:
        with self._lock:
            invocation = self._current
            if invocation is None or invocation.request_id != request_id:
                return 400
            invocation.responded = time.monotonic()
            if failed:
                invocation.error = body
            else:
                invocation.response = body
            invocation.answered.set()
            self._end_if_done()
            self._dispatch()
        return 202

    def _init_error(self, body: bytes) -> int:
        # The runtime exits after its init fails: what waits, and what comes after, fails
        # with that error at once instead of at its caller's timeout.
        with self._lock:
            self.init_error = body
            while self._queue:
                _fail(self._queue.popleft(), body)
        return 202

    # -- the sandbox's lifecycle (under the lock) -------------------------------------------

    def _end_if_done(self) -> None:
        invocation = self._current
        if invocation is None or invocation.responded is None:
            return
        if self._waiting >= set(self._extensions):
            invocation.ended = time.monotonic()
            invocation.finished.set()
            self._current = None

    def _dispatch(self) -> None:
        ready = self._runtime_waiting and self._waiting >= set(self._extensions)
        if self._current is not None or not self._queue or not ready:
            return
        invocation = self._current = self._queue.popleft()
        invocation.deadline_ms = int((time.time() + self.timeout_seconds) * 1000)
        self._runtime_waiting = False
        self._for_runtime = invocation
        for events in self._extensions.values():
            events.append(
                {
                    "eventType": "INVOKE",
                    "deadlineMs": invocation.deadline_ms,
                    "requestId": invocation.request_id,
                    "invokedFunctionArn": FUNCTION_ARN,
                    "tracing": {"type": "X-Amzn-Trace-Id", "value": ""},
                }
            )
        self._lock.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet when a runtime that was stopped drops its connection; loud otherwise."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _error(kind: str, message: str) -> dict[str, str]:
    return {"errorType": kind, "errorMessage": message}


def _fail(invocation: Invocation, error: bytes) -> None:
    """End ``invocation`` unanswered with ``error`` (the runtime never ran it)."""
    invocation.error = error
    invocation.responded = invocation.ended = time.monotonic()
    invocation.answered.set()
    invocation.finished.set()


def _handler_for(api: RuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else a reply's headers and body wait on delayed ACKs

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: a sandbox's API does not log each request."""

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _reply(self, status: int, headers: dict[str, str], body: Any = b"") -> None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            if self.path == f"{RUNTIME}/invocation/next":
                self._reply(*api._runtime_next())
            elif self.path == f"{EXTENSION}/event/next":
                identifier = self.headers.get("Lambda-Extension-Identifier", "")
                self._reply(*api._extension_next(identifier))
            else:
                self._reply(HTTPStatus.NOT_FOUND, {})

        def do_POST(self) -> None:
            body = self._body()
            parts = self.path.removeprefix(f"{RUNTIME}/invocation/").split("/")
            if self.path == f"{EXTENSION}/register":
                name = self.headers.get("Lambda-Extension-Name", "")
                self._reply(*api._register(name, body))
            elif self.path == f"{RUNTIME}/init/error":
                self._reply(api._init_error(body), {})
            elif len(parts) == 2 and parts[1] in ("response", "error"):
                self._reply(api._runtime_result(parts[0], body, parts[1] == "error"), {})
            else:
                self._reply(HTTPStatus.NOT_FOUND, {})

    return Handler
