"""Shared fixtures: fake AWS credentials (moto only), handlers importable as in the image.

Handlers are configured by ``build(Settings.from_env(mapping), clients)``, never through the
environment; the variables set here only keep boto3 away from a real AWS account.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Loads onnxruntime before any test module imports usearch (see imgsearch/__init__.py).
import imgsearch  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
DEMO_BUNDLE = ROOT / "models" / "demo-clip"

# The container image puts the contents of functions/ on the task root: handlers import as
# `embed.app`, `query.app`, ... Tests import them the same way.
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

# Never let a test reach a real AWS account, whatever the developer's environment holds.
for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(name, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
)


@pytest.fixture(scope="session")
def demo_bundle() -> Path:
    assert (DEMO_BUNDLE / "model.json").is_file(), "the committed demo bundle is missing"
    return DEMO_BUNDLE
