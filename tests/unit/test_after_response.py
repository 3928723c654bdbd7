"""The after-response extension under the runtime the image ships (awslambdaric), in a sandbox
emulated by the devkit's Runtime and Extensions APIs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from imgsearch_devkit.local.runtime_api import RuntimeApi

from imgsearch.core.after_response import AfterResponse

WORK_SECONDS = 0.4

FUNCTION = textwrap.dedent(
    """
    import os, time
    from imgsearch.core.after_response import AfterResponse

    after = AfterResponse.register(os.environ["AWS_LAMBDA_RUNTIME_API"], "test-extension")
    log = os.environ["WORK_LOG"]

    def note(name):
        with open(log, "a") as out:
            out.write(f"{{name}} {{time.monotonic()}}\\n")

    def work(name):
        def run():
            note(name + "-started")
            time.sleep({seconds})
            note(name)
            if name == "fails":
                raise RuntimeError("deferred work failed on purpose")
        return run

    def serve(event, context):
        for name in event.get("defer", []):
            after.defer(work(name))
        time.sleep(0.1)  # deferred work that ran beside the handler would start meanwhile
        note(f"returned-{{event['n']}}")
        return {{"echo": event.get("n")}}

    handler = after.wrap(serve)
    """
).format(seconds=WORK_SECONDS)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[RuntimeApi, Path]]:
    (tmp_path / "function.py").write_text(FUNCTION, encoding="utf-8")
    log = tmp_path / "work.log"
    with RuntimeApi(timeout_seconds=30) as api:
        env = {**os.environ, **api.environment("test"), "WORK_LOG": str(log)}
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
        process = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", "function.handler"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            yield api, log
        finally:
            process.kill()
            process.wait()


def done(log: Path) -> dict[str, float]:
    if not log.exists():
        return {}
    lines = log.read_text(encoding="utf-8").split()
    return dict(zip(lines[::2], map(float, lines[1::2]), strict=True))


def test_deferred_work_runs_after_the_response_and_before_the_next_invocation(sandbox) -> None:
    api, log = sandbox
    first = api.invoke({"n": 1, "defer": ["refresh"]}, timeout=60)
    assert first.json() == {"echo": 1}
    assert api.extensions() == 1
    # The caller has its answer while the work is still to do; the sandbox is busy until it is.
    assert "refresh" not in done(log)
    second = api.invoke({"n": 2}, timeout=60)
    assert second.json() == {"echo": 2}
    times = done(log)
    assert times["refresh-started"] >= times["returned-1"]
    assert first.responded is not None and first.ended is not None
    assert first.responded < times["refresh"] <= first.ended
    # It ran as soon as the handler returned, not at the invocation's deadline (30 s).
    assert WORK_SECONDS <= first.busy_after_seconds < WORK_SECONDS + 5
    assert second.started is not None and second.started >= first.ended
    assert first.service_seconds < WORK_SECONDS


def test_deferred_work_that_fails_is_logged_and_the_next_runs(sandbox) -> None:
    api, log = sandbox
    api.invoke({"n": 1, "defer": ["fails", "after"]}, timeout=60)
    third = api.invoke({"n": 2}, timeout=60)
    assert third.json() == {"echo": 2}
    assert {"fails", "after"} <= set(done(log))


def test_an_invocation_without_deferred_work_frees_the_sandbox_at_once(sandbox) -> None:
    api, _ = sandbox
    api.invoke({"n": 1}, timeout=60)
    second = api.invoke({"n": 2}, timeout=60)
    second.finished.wait(10)
    assert second.busy_after_seconds < WORK_SECONDS


def test_off_lambda_nothing_registers() -> None:
    assert AfterResponse.register("", "anything") is None


def test_an_extension_that_registers_after_init_is_refused(sandbox) -> None:
    from imgsearch.core.after_response import ExtensionError

    api, _ = sandbox
    api.invoke({"n": 1}, timeout=60)  # the runtime has asked for an invocation: init is over
    with pytest.raises(ExtensionError, match="refused"):
        AfterResponse.register(api.address, "late")
