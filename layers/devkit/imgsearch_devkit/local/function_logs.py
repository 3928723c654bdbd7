"""Send what the functions print (Powertools JSON logs, EMF metrics) to a file, as CloudWatch
Logs would hold them, and keep the console for the command's own output.

The handlers run on the stack's threads (SQS poller, HTTP API, Step Functions tasks) and print to
``sys.stdout``; Powertools' ``Logger`` keeps the ``sys.stdout`` it saw at import. So the stack
installs the router before it imports the handlers: writes from the main thread reach the
console, writes from any other thread the log file::

    with routed_function_output(Path(".imgsearch/functions.log")):
        ...   # import and run handlers
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


class ThreadRoutedStream:
    """A text stream that writes to ``console`` on the main thread and to ``log`` elsewhere."""

    def __init__(self, console: IO[str], log: IO[str]) -> None:
        self.console = console
        self.log = log
        self._lock = threading.Lock()

    def _target(self) -> IO[str]:
        return self.console if threading.current_thread() is threading.main_thread() else self.log

    def write(self, text: str) -> int:
        target = self._target()
        if target is self.log:
            with self._lock:
                written = target.write(text)
                target.flush()
                return written
        return target.write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


KEEP_BYTES = 20 * 1024 * 1024
"""A log past this size is moved to ``<name>.1`` (replacing the older one) when a stack starts:
two runs' worth at most, instead of every run since the first."""


def rotate(path: Path, keep_bytes: int = KEEP_BYTES) -> None:
    if path.is_file() and path.stat().st_size > keep_bytes:
        path.replace(path.with_name(path.name + ".1"))


@contextmanager
def routed_function_output(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    rotate(path)
    with path.open("a", encoding="utf-8") as log:
        console = sys.stdout
        sys.stdout = ThreadRoutedStream(console, log)  # type: ignore[assignment]
        # moto logs a failed execution's state at ERROR; the execution's status says it too.
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        moto = logging.getLogger("moto")
        moto.addHandler(handler)
        saved_propagate = moto.propagate
        moto.propagate = False
        try:
            yield
        finally:
            moto.propagate = saved_propagate
            moto.removeHandler(handler)
            sys.stdout = console
