"""Batched image embedding with per-input errors.

Decoding runs in a small thread pool (Pillow releases the GIL while it decodes and resizes);
the good images then go through the visual tower in one call::

    results = embed_images(model, [data_a, data_b], limits)
    for result in results:
        if isinstance(result, ImageError): quarantine(result.reason)
        else: store(result)        # float32 (dim,), unit length
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from imgsearch.model.errors import ImageError
from imgsearch.model.preprocess import ImageLimits, preprocess
from imgsearch.model.session import ClipModel


def preprocess_many(
    model: ClipModel,
    blobs: Sequence[bytes],
    limits: ImageLimits,
) -> list[np.ndarray | ImageError]:
    def one(data: bytes) -> np.ndarray | ImageError:
        try:
            return preprocess(data, model.manifest, limits)
        except ImageError as exc:
            return exc

    if len(blobs) <= 1 or model.threads <= 1:
        return [one(b) for b in blobs]
    with ThreadPoolExecutor(max_workers=min(model.threads, len(blobs))) as pool:
        return list(pool.map(one, blobs))


def embed_images(
    model: ClipModel,
    blobs: Sequence[bytes],
    limits: ImageLimits = ImageLimits(),
) -> list[np.ndarray | ImageError]:
    """One vector or one ``ImageError`` per input, in input order."""
    prepared = preprocess_many(model, blobs, limits)
    good = [i for i, p in enumerate(prepared) if not isinstance(p, ImageError)]
    results: list[np.ndarray | ImageError] = list(prepared)
    if good:
        vectors = model.encode_images([prepared[i] for i in good])
        for row, index in enumerate(good):
            results[index] = vectors[row]
    return results
