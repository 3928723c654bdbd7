"""The query function run as Lambda runs it: the image's runtime (awslambdaric) polling the
devkit's Runtime and Extensions APIs, AWS a moto server. A new version is swapped in after a
response, in the function's internal extension, never beside a request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import boto3
import pytest
from imgsearch_devkit.local.runtime_api import Invocation, RuntimeApi
from moto.server import ThreadedMotoServer
from query_support import (
    REGION,
    Image,
    demo_model,
    http_event,
    make_images,
    publish_index,
    query_environment,
    seed,
)

from imgsearch.core.config import Settings

pytestmark = pytest.mark.slow

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="module")
def model():
    return demo_model()


@pytest.fixture(scope="module")
def images(model) -> list[Image]:
    return make_images(model, 8, seed=29)


@dataclass
class Sandbox:
    api: RuntimeApi
    s3: Any
    settings: Settings
    images: list[Image]
    model_id: str

    def search(self) -> tuple[Invocation, dict[str, Any]]:
        invocation = self.api.invoke(http_event("GET", "/search", {"q": "red circle"}), 120)
        reply = invocation.json()
        assert reply["statusCode"] == 200, reply
        return invocation, json.loads(reply["body"])

    def publish(self) -> str:
        return publish_index(self.s3, self.settings, self.model_id, self.images).version


@contextmanager
def sandbox(tmp_path: Path, model, images: list[Image], refresh_in: str) -> Iterator[Sandbox]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's state is the process's: start from none, whatever ran before in this worker.
    urlopen(Request(f"{endpoint}/moto-api/reset", method="POST")).close()
    env = {
        **query_environment(tmp_path, model),
        "IMGSEARCH_INDEX_REFRESH_IN": refresh_in,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        **CREDENTIALS,
    }
    settings = Settings.from_env(env)
    session = boto3.session.Session(
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3 = session.client("s3", endpoint_url=endpoint)
    seed(s3, session.client("dynamodb", endpoint_url=endpoint), model, images)
    box = Sandbox(RuntimeApi(timeout_seconds=29), s3, settings, images, model.model_id)
    box.publish()
    process = None
    try:
        with box.api:
            process = subprocess.Popen(
                [sys.executable, "-m", "awslambdaric", "query.app.handler"],
                cwd=FUNCTIONS,
                env={
                    **os.environ,
                    **env,
                    **box.api.environment("imgsearch-query"),
                    "PYTHONPATH": str(FUNCTIONS),
                },
                stdout=subprocess.DEVNULL,
            )
            yield box
    finally:
        if process is not None:
            process.kill()
            process.wait()
        server.stop()


def test_a_new_version_is_swapped_in_after_a_response_not_beside_it(tmp_path, model, images):
    with sandbox(tmp_path, model, images, "after-response") as box:
        first, answer = box.search()
        assert box.api.extensions() == 1
        serving = answer["index_version"]
        second = box.publish()
        time.sleep(1.1)  # IMGSEARCH_INDEX_REFRESH_SECONDS
        due, answer = box.search()
        # The request that found the check due answered from the version it started with; the
        # swap ran after its response, and the sandbox took no request until it was done.
        assert answer["index_version"] == serving
        assert due.finished.wait(60)
        after, answer = box.search()
        assert answer["index_version"] == second
        assert after.started is not None and due.ended is not None
        assert after.started >= due.ended
        assert due.busy_after_seconds > first.busy_after_seconds


def test_with_background_refresh_the_function_registers_no_extension(tmp_path, model, images):
    with sandbox(tmp_path, model, images, "background") as box:
        box.search()
        assert box.api.extensions() == 0
        second = box.publish()
        deadline = time.monotonic() + 60
        while box.search()[1]["index_version"] != second:
            assert time.monotonic() < deadline, "the background refresh never swapped"
            time.sleep(0.2)
