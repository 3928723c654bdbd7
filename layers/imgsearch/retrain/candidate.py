"""The training job's output, unpacked: the candidate bundle and the job's own report.

SageMaker tars ``/opt/ml/model`` into ``<output>/<job>/output/model.tar.gz``; it holds the new
bundle and ``training.json``, the job's figures and status (``trained``, ``diverged``,
``parity-failed``). Unpacked once per container into the model cache::

    output = unpack(s3, "s3://bucket/retrain/run-1/output/job/output/model.tar.gz", cache)
    output.training["status"]     # "trained"
    output.bundle                 # the verified Bundle, None unless trained
    keys, vectors = embed_keys(model, s3, image_bucket, keys)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.core.errors import ImgsearchError
from imgsearch.core.keys import split_s3_uri
from imgsearch.model import ClipModel
from imgsearch.model.batch import embed_images
from imgsearch.model.bundle import Bundle, open_bundle
from imgsearch.model.errors import ImageError

TRAINING_FILE = "training.json"
BATCH = 64


class TrainingOutputError(ImgsearchError):
    """The training job's output is missing or not what the job writes."""


@dataclass(frozen=True)
class TrainingOutput:
    training: dict[str, Any]
    bundle: Bundle | None

    @property
    def status(self) -> str:
        return str(self.training.get("status", ""))


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise TrainingOutputError(f"the model artifacts are not an s3:// URI: {uri!r}")
    return split_s3_uri(uri)


def unpack(s3: Any, uri: str, cache_dir: str | Path) -> TrainingOutput:
    """Download and unpack ``model.tar.gz`` (once: a later call in the same container reuses
    it), then read ``training.json`` and, if the job trained, open the bundle."""
    target = Path(cache_dir) / "retrain" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if not (target / TRAINING_FILE).is_file():
        bucket, key = _split(uri)
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        archive = staging / "model.tar.gz"
        try:
            s3.download_file(bucket, key, str(archive))
        except Exception as exc:  # botocore raises several unrelated types here
            raise TrainingOutputError(f"cannot download {uri}: {exc}") from exc
        with tarfile.open(archive) as tar:
            tar.extractall(staging / "model", filter="data")
        archive.unlink()
        shutil.rmtree(target, ignore_errors=True)
        (staging / "model").rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    report = target / TRAINING_FILE
    if not report.is_file():
        raise TrainingOutputError(f"{uri} holds no {TRAINING_FILE}: not a training job's output")
    training = json.loads(report.read_text(encoding="utf-8"))
    bundle = open_bundle(target) if training.get("status") == "trained" else None
    return TrainingOutput(training, bundle)


def embed_keys(
    model: ClipModel, s3: Any, bucket: str, keys: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """The images at ``keys`` embedded by ``model``: (the keys it could read and decode, their
    unit vectors, row for row). Missing or undecodable images are left out."""

    def fetch(key: str) -> bytes | None:
        try:
            return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception:  # gone since the dataset was written: left out, as a deleted image
            return None

    kept: list[str] = []
    rows: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for start in range(0, len(keys), BATCH):
            chunk = list(keys[start : start + BATCH])
            blobs = list(pool.map(fetch, chunk))
            present = [(k, b) for k, b in zip(chunk, blobs, strict=True) if b is not None]
            results = embed_images(model, [b for _, b in present])
            for (key, _), result in zip(present, results, strict=True):
                if not isinstance(result, ImageError):
                    kept.append(key)
                    rows.append(result)
    vectors = np.stack(rows).astype(np.float32) if rows else np.zeros((0, model.dim), np.float32)
    return kept, vectors
