"""The devkit's emulated sandbox when the function's init fails under the real runtime client
(awslambdaric): callers get the init error at once, not at their timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from imgsearch_devkit.local.runtime_api import RuntimeApi


def test_an_init_error_fails_waiting_and_later_invocations_at_once(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text('raise RuntimeError("no model bundle")\n', "utf-8")
    with RuntimeApi(timeout_seconds=30) as api:
        waiting = api.submit({"n": 1})  # queued before the runtime starts
        env = {**os.environ, **api.environment("broken")}
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
        process = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", "broken.handler"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert waiting.answered.wait(60) and waiting.finished.is_set()
            assert waiting.response is None and waiting.started is None
            assert "no model bundle" in json.loads(waiting.error or b"{}")["errorMessage"]
            assert api.init_error == waiting.error
            later = api.submit({"n": 2})
            assert later.answered.is_set() and later.error == api.init_error
        finally:
            process.kill()
            process.wait()
