"""Real photographs that no one here drew: the ones scikit-image ships inside its wheel (no
download), as the data the demo model was not trained on. The drift tests and
``benchmarks/drift.py`` upload them into the synthetic corpus::

    sources = photographs()                      # 15 PIL images
    blobs = photo_jpegs(sources, 60, seed=3)     # random crops, flips and sizes, as JPEG
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

PHOTOGRAPHS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
    "camera",
    "coins",
    "moon",
    "clock",
    "brick",
    "grass",
    "gravel",
)
"""The photographs in scikit-image's wheel (the last seven are greyscale, made RGB);
``stereo_motorcycle`` is its left image. ``cat`` is ``chelsea`` again, ``horse`` a silhouette."""
COLOUR_PHOTOGRAPHS = PHOTOGRAPHS[:7]
"""The colour ones of a single image each (what ``benchmarks/backfill.py`` crops)."""


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def photographs(names: Sequence[str] = PHOTOGRAPHS) -> list[Image.Image]:
    from skimage import data  # a development dependency: imported when photographs are asked for

    images = []
    for name in names:
        pixels = getattr(data, name)()
        if isinstance(pixels, tuple):  # stereo_motorcycle: (left, right, disparity)
            pixels = pixels[0]
        images.append(Image.fromarray(pixels).convert("RGB"))
    return images


def photo_jpegs(sources: Sequence[Image.Image], count: int, seed: int) -> list[bytes]:
    """``count`` random crops of random photographs: flipped or not, resized, re-encoded."""
    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(count):
        photo = sources[int(rng.integers(len(sources)))]
        w, h = photo.size
        side = min(w, h) * rng.uniform(0.4, 1.0)
        aspect = rng.uniform(0.75, 4 / 3)
        crop_w, crop_h = min(w, side * math.sqrt(aspect)), min(h, side / math.sqrt(aspect))
        x, y = rng.uniform(0, w - crop_w), rng.uniform(0, h - crop_h)
        long_side = rng.uniform(160, 480)
        scale = long_side / max(crop_w, crop_h)
        size = (max(1, round(crop_w * scale)), max(1, round(crop_h * scale)))
        image = photo.resize(size, Image.Resampling.BICUBIC, box=(x, y, x + crop_w, y + crop_h))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        blobs.append(jpeg(image, quality=int(rng.integers(70, 96))))
    return blobs
