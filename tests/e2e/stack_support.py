"""Helpers of the e2e tests: the seeded stack handle, uploads with plain boto3, pipeline runs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from imgsearch_devkit.demo.scenes import Scene, generate
from imgsearch_devkit.local.stack import LocalStack

SEED_PREFIX = "images/seed/"
IMGSEARCH = str(Path(sys.executable).with_name("imgsearch"))
"""The console script of the environment running the tests."""


@dataclass
class Seeded:
    stack: LocalStack
    workdir: Path
    """Holds ``.imgsearch/local.json``: the CLI finds the stack from here."""
    scenes: dict[str, Scene]
    """Key -> the scene it shows (every image uploaded by the fixture and the tests)."""
    version: str

    @property
    def target(self) -> Any:
        return self.stack.require_target()

    def known(self, keys: list[str]) -> list[str]:
        """``keys`` that show a scene, in order. Uploads are searchable at once (the fresh
        segment), so results hold other tests' files too (CLI uploads, refused files): judge
        these."""
        return [key for key in keys if key in self.scenes]

    def client(self, service: str) -> Any:
        """A plain boto3 client at the stack's endpoint, as a user's own tool would make."""
        return boto3.client(
            service,
            endpoint_url=self.target.aws_endpoint,
            region_name=self.target.region,
            aws_access_key_id="any",
            aws_secret_access_key="any",
        )


def jpeg(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def upload_scenes(seeded: Seeded, prefix: str, n: int, seed: int) -> dict[str, Scene]:
    s3 = seeded.client("s3")
    uploaded = {}
    for i, (image, scene) in enumerate(generate(n, seed=seed, balanced=True)):
        key = f"{prefix}{i:02d} {scene.colour} {scene.shape}.jpg"
        s3.put_object(Bucket=seeded.target.bucket, Key=key, Body=jpeg(image))
        uploaded[key] = scene
    seeded.scenes.update(uploaded)
    return uploaded


def run_pipeline(seeded: Seeded) -> dict[str, Any]:
    """Start an execution on the Step Functions endpoint and wait; returns its output."""
    sfn = seeded.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=seeded.target.state_machine_arn, input="{}")[
        "executionArn"
    ]
    deadline = time.monotonic() + 180
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "pipeline still running after 180 s"
        time.sleep(0.3)
    assert described["status"] == "SUCCEEDED", described
    return json.loads(described["output"])


def run_cli(seeded: Seeded, *argv: str) -> tuple[int, str, str]:
    """Run ``imgsearch ARGV`` as an operator would: its own process, in the directory whose
    ``.imgsearch/local.json`` names the stack. Returns (status, stdout, stdout + stderr)."""
    done = subprocess.run(
        [IMGSEARCH, *argv], cwd=seeded.workdir, capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stdout, done.stdout + done.stderr
