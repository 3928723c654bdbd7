"""Configuration parsing and object keys."""

from __future__ import annotations

import pytest

from imgsearch.core.config import ConfigError, Settings, lambda_threads
from imgsearch.core.keys import decode_event_key, image_id, is_image_key


def test_defaults_and_overrides() -> None:
    settings = Settings.from_env(
        {
            "IMGSEARCH_BUCKET": "b",
            "IMGSEARCH_IMAGE_PREFIX": "photos",
            "IMGSEARCH_INDEX_DTYPE": "F16",
            "IMGSEARCH_GATE_MIN_RECALL": "0.9",
        }
    )
    assert settings.bucket == "b" and settings.image_prefix == "photos/"
    assert settings.index.dtype == "f16" and settings.gate.min_recall == 0.9
    assert settings.model.uri.endswith("demo-clip")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMGSEARCH_INDEX_DTYPE": "f64"}, "IMGSEARCH_INDEX_DTYPE must be one of"),
        ({"IMGSEARCH_MAX_K": "lots"}, "IMGSEARCH_MAX_K must be an integer"),
        ({"IMGSEARCH_MAX_K": "-3"}, "IMGSEARCH_MAX_K must be positive"),
        ({"IMGSEARCH_GATE_MIN_RECALL": "high"}, "IMGSEARCH_GATE_MIN_RECALL must be a number"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_require_names_missing_variables() -> None:
    with pytest.raises(ConfigError, match="IMGSEARCH_BUCKET, IMGSEARCH_TABLE"):
        Settings.from_env({}).require("bucket", "table")


@pytest.mark.parametrize(
    ("memory", "threads"), [("128", 1), ("1769", 1), ("3538", 2), ("10240", 6)]
)
def test_threads_follow_lambda_memory(memory: str, threads: int) -> None:
    assert lambda_threads({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": memory}) == threads
    assert (
        lambda_threads({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": memory, "IMGSEARCH_THREADS": "3"}) == 3
    )


def test_event_keys_decode_like_s3_encodes_them() -> None:
    assert decode_event_key("images/my+cat%2B1.jpg") == "images/my cat+1.jpg"
    assert decode_event_key("images/caf%C3%A9+%E5%86%99%E7%9C%9F.png") == "images/café 写真.png"


def test_image_ids_are_stable_63_bit() -> None:
    assert image_id("images/a.jpg") == image_id("images/a.jpg") != image_id("images/b.jpg")
    assert all(0 <= image_id(f"images/{i}.jpg") < 2**63 for i in range(1000))


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("images/a.JPG", True),
        ("images/sub/b.webp", True),
        ("images/notes.txt", False),
        ("other/a.jpg", False),
        ("images/", False),
        ("images/dir.jpg/file", False),
    ],
)
def test_image_key_filter(key: str, expected: bool) -> None:
    assert is_image_key(key, "images/") is expected
