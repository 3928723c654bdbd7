"""What the bundle-making tools share on the command line: progress lines and exit codes.

Staging, manifests and parity figures live in ``imgsearch_training.bundle`` (the training job
writes bundles too); a tool wraps its body in ``run``, which turns the errors it raises on
purpose into a one-line message and an exit code::

    def main(argv: list[str] | None = None) -> int:
        args = parse(argv)
        return run("export_clip", lambda: export(args.src, args.out))   # 0, 1 or 2
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from imgsearch_training.bundle import ToolError

from imgsearch.model.errors import BundleError

log = logging.getLogger("imgsearch.tools")


def show_progress() -> None:
    """Log the tools' progress lines; the ONNX exporter and quantiser chat a lot at INFO."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    log.setLevel(logging.INFO)


def run(tool: str, main: Callable[[], None]) -> int:
    """Run a tool's body; print a one-line error and return its exit code on failure."""
    show_progress()
    try:
        main()
    except (ToolError, BundleError) as exc:
        print(f"{tool}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    return 0
