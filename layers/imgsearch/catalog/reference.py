"""``indexes/<version>/reference.npy``: a uniform sample of the vectors a version was built from.

Build writes it (``IMGSEARCH_DRIFT_REFERENCE_SAMPLES`` rows, float16, 2 MB at 2,000 x 512); the
drift monitor compares newly ingested images with the serving version's sample instead of
downloading the index. The rows are drawn with a seed taken from the snapshot's content, so a
rebuild of the same embeddings samples the same rows::

    write_reference(s3, bucket, "indexes/", version, sample_rows(vectors, 2000, rng))
    reference = read_reference(s3, bucket, "indexes/", version)   # None: built before this file
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from imgsearch.catalog.layout import REFERENCE_FILE, version_key
from imgsearch.core.aws import get_object_if_any


def sample_rows(vectors: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` rows of ``vectors`` drawn without replacement, in their stored order
    (reading a memmap in order), as float16."""
    if len(vectors) <= count:
        return np.asarray(vectors, dtype=np.float16)
    rows = np.sort(rng.choice(len(vectors), size=count, replace=False))
    return np.asarray(vectors[rows], dtype=np.float16)


def write_reference(s3: Any, bucket: str, prefix: str, version: str, rows: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(rows, dtype=np.float16), allow_pickle=False)
    key = version_key(prefix, version, REFERENCE_FILE)
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    return key


def read_reference(s3: Any, bucket: str, prefix: str, version: str) -> np.ndarray | None:
    response = get_object_if_any(s3, bucket, version_key(prefix, version, REFERENCE_FILE))
    if response is None:
        return None
    return np.load(io.BytesIO(response["Body"].read()), allow_pickle=False)
