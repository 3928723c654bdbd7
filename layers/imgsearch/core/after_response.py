"""Work that runs after a Lambda invocation's response: an internal extension.

Lambda freezes a sandbox between invocations, so a thread started by a request runs only while
requests do, and slows them. An invocation ends when the runtime has posted the response *and*
every registered extension has asked the Extensions API for the next event. An internal
extension (a thread of the runtime process, registered at init) that asks only once the
handler has returned and the deferred work is done gives that work the whole sandbox: the
response is already on its way to the caller, Lambda sends requests that arrive meanwhile to
other sandboxes, and bills the time as the invocation's (it counts against the function's
Timeout). AWS describes the pattern in "Running code after returning a response from an AWS
Lambda function" (AWS Compute Blog)::

    after = AfterResponse.register(settings.runtime_api, "imgsearch-query")  # None off Lambda
    handler = after.wrap(handler)         # marks the end of each invocation's handler
    after.defer(server.refresh)           # from a request: runs once its response is posted

Off Lambda (no ``AWS_LAMBDA_RUNTIME_API``) ``register`` returns None and callers run the work
another way. The protocol: docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from imgsearch.core.errors import ImgsearchError

logger = logging.getLogger(__name__)

EXTENSION_API = "/2020-01-01/extension"
Work = Callable[[], None]
Handler = Callable[[Any, Any], Any]


class ExtensionError(ImgsearchError):
    """The Extensions API refused the registration or an event request."""


class AfterResponse:
    """One internal extension: runs deferred work between an invocation's response and the next.

    ``defer`` is safe from any thread; the work runs in the extension's thread, one piece after
    another, in the order deferred. A piece that raises is logged and the next one runs. Should
    the Extensions API fail, the extension stops and deferred work runs in a thread of its own.
    """

    def __init__(self, address: str, extension_id: str) -> None:
        self._address = address
        self._id = extension_id
        self._work: queue.SimpleQueue[Work] = queue.SimpleQueue()
        self._returned = threading.Event()
        self._stopped = False
        self._connection: http.client.HTTPConnection | None = None
        """Kept open between events: a new connection per invocation would cost each one."""
        self._thread = threading.Thread(target=self._serve, name="after-response", daemon=True)
        self._thread.start()

    @classmethod
    def register(cls, address: str, name: str) -> AfterResponse | None:
        """Register with the Extensions API at ``address`` (``AWS_LAMBDA_RUNTIME_API``); None
        when it is empty (not on Lambda). Call it at init: Lambda refuses extensions that
        register after the runtime first asked for an invocation."""
        if not address:
            return None
        connection = http.client.HTTPConnection(address)
        try:
            status, headers, body = _exchange(
                connection,
                "POST",
                f"{EXTENSION_API}/register",
                {"Lambda-Extension-Name": name},
                json.dumps({"events": ["INVOKE"]}).encode(),
            )
        finally:
            connection.close()
        extension_id = headers.get("Lambda-Extension-Identifier", "")
        if status != 200 or not extension_id:
            raise ExtensionError(f"the Extensions API refused {name!r} ({status}): {body!r}")
        return cls(address, extension_id)

    def defer(self, work: Work) -> None:
        """Run ``work`` once the current invocation's handler has returned."""
        self._work.put(work)
        if self._stopped:  # checked after the put: the extension's last drain or this one runs it
            threading.Thread(target=self._run_all, name="after-response", daemon=True).start()

    def wrap(self, handler: Handler) -> Handler:
        """``handler``, telling the extension when each invocation's handler has returned."""

        def wrapped(event: Any, context: Any) -> Any:
            try:
                return handler(event, context)
            finally:
                self._returned.set()

        return wrapped

    def _serve(self) -> None:
        while True:
            try:
                event = self._next()  # also tells Lambda that the last invocation's work is done
            except (ExtensionError, OSError, http.client.HTTPException, ValueError):
                logger.exception("the after-response extension stopped")
                self._stopped = True
                self._run_all()
                return
            # The handler runs meanwhile; no later than the deadline, the work runs anyway
            # (a runtime that failed before calling the handler never marks its end).
            deadline_ms = float(event.get("deadlineMs", 0))
            self._returned.wait(max(0.0, deadline_ms / 1e3 - time.time()))
            self._returned.clear()
            self._run_all()

    def _run_all(self) -> None:
        while True:
            try:
                work = self._work.get_nowait()
            except queue.Empty:
                return
            try:
                work()
            except Exception:  # one failed piece must not stop the extension
                logger.exception("work deferred after a response failed")

    def _next(self) -> dict[str, Any]:
        for attempt in (1, 2):  # a kept connection the API has closed: once more on a new one
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self._address)
            try:
                status, _, body = _exchange(
                    self._connection,
                    "GET",
                    f"{EXTENSION_API}/event/next",
                    {"Lambda-Extension-Identifier": self._id},
                )
                break
            except (OSError, http.client.HTTPException):
                self._connection.close()
                self._connection = None
                if attempt == 2:
                    raise
        if status != 200:
            raise ExtensionError(f"the Extensions API refused the next event ({status}): {body!r}")
        event: dict[str, Any] = json.loads(body)
        return event


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    # No timeout: the next event comes when Lambda has an invocation, maybe hours later.
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()
