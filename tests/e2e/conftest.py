"""One local stack for the e2e tests: in-process, free ports, seeded and indexed once.

The stack builds the real handlers from settings read out of the template's environment, with
boto3 clients of its moto server; the process environment is left as it was (``stop()`` puts
back moto's own ``MOTO_PORT``), so other test packages are unaffected. Seed: 40 synthetic
scenes (one per colour x shape kind) under ``images/seed/``, embedded by the embed function from
real S3 notifications, then one pipeline run.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator

import pytest
from imgsearch_devkit.demo.scenes import KINDS
from imgsearch_devkit.local.stack import LocalStack, LocalStackConfig
from stack_support import SEED_PREFIX, Seeded, run_pipeline, upload_scenes


@pytest.fixture(scope="session")
def seeded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    workdir = tmp_path_factory.mktemp("local-stack")
    saved_env = dict(os.environ)
    saved_stdout = sys.stdout
    stack = LocalStack(LocalStackConfig.in_folder(workdir))
    stack.start()
    try:
        seeded = Seeded(stack, workdir, {}, "")
        upload_scenes(seeded, SEED_PREFIX, len(KINDS), seed=11)
        stack.wait_for_ingestion(timeout=120)
        seeded.version = run_pipeline(seeded)["publish"]["version"]
        stack.require_target().api().wait_for_version(seeded.version)
        yield seeded
    finally:
        threads_before = {t.name for t in threading.enumerate()}
        stack.stop()
    # Clean shutdown: environment, stdout and state file restored, our threads gone.
    changed = {k for k in set(os.environ) ^ set(saved_env)} | {
        k for k in saved_env if k in os.environ and os.environ[k] != saved_env[k]
    }
    assert changed <= {"PYTEST_CURRENT_TEST"}, changed
    assert sys.stdout is saved_stdout
    assert not (workdir / ".imgsearch" / "local.json").exists()
    leftover = {t.name for t in threading.enumerate()} & threads_before
    assert not {n for n in leftover if n.startswith("imgsearch-")}, leftover
