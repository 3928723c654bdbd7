"""Image decoding and CLIP preprocessing with Pillow and numpy.

Equals OpenAI CLIP's transform: EXIF transpose, convert to RGB, bicubic resize of the short side,
centre crop, scale to [0, 1], normalise with the bundle's mean and std::

    from imgsearch.model.preprocess import ImageLimits, decode_image, to_pixels

    image = decode_image(data, ImageLimits(max_bytes=20_000_000, max_pixels=64_000_000),
                         min_side=224)
    pixels = to_pixels(image, manifest)   # float32 (3, 224, 224)

Every bad input raises one ``ImageError`` subclass whose ``reason`` becomes the quarantine reason.
The pixel limit is checked from the header, before anything is decoded; the query function also
gives decoding a time budget (``ImageLimits.decode_seconds``)::

    decode_image(data, ImageLimits(max_pixels=16_777_216, decode_seconds=0.5))
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgsearch.core.config import ModelSettings
from imgsearch.model.errors import (
    CorruptImage,
    EmptyImage,
    ImageError,
    NotAnImage,
    TooManyBytes,
    TooManyPixels,
    TooSlowToDecode,
    TruncatedImage,
)

if TYPE_CHECKING:
    from imgsearch.model.bundle import ModelManifest


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = ModelSettings.max_image_bytes
    max_pixels: int = ModelSettings.max_image_pixels
    decode_seconds: float | None = None
    """CPU seconds decoding may take (None: as long as it takes, as ingest wants)."""


class _Budgeted(io.BytesIO):
    """Image bytes that refuse to be read once decoding has used ``seconds`` of CPU.

    Pillow decodes in the calling thread and pulls its input a block at a time, so a decode
    that runs over its budget stops at its next read instead of running to the end. CPU time,
    not wall time: what a query costs, whatever else the machine runs."""

    def __init__(self, data: bytes, seconds: float) -> None:
        super().__init__(data)
        self._seconds = seconds
        self._deadline = time.thread_time() + seconds

    def read(self, size: int | None = -1) -> bytes:
        if time.thread_time() > self._deadline:
            raise TooSlowToDecode(f"decoding took more than {self._seconds:g} s of CPU")
        return super().read(size)


def decode_image(
    data: bytes,
    limits: ImageLimits = ImageLimits(),
    min_side: int = 0,
) -> Image.Image:
    """Decode bytes into an upright RGB image.

    ``min_side``: the short side the caller needs; JPEGs are then decoded at the smallest DCT
    scale (1/2, 1/4, 1/8) that still covers it, so a 12-megapixel photo is never decoded whole.
    """
    if not data:
        raise EmptyImage("zero bytes")
    if len(data) > limits.max_bytes:
        raise TooManyBytes(f"{len(data)} bytes, limit {limits.max_bytes}")
    budget = limits.decode_seconds
    source = io.BytesIO(data) if budget is None else _Budgeted(data, budget)
    try:
        with warnings.catch_warnings():
            # The pixel limit below decides, with the size in its message; Pillow's warning
            # would only say the same in its own words.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
    except UnidentifiedImageError as exc:
        raise NotAnImage("not a recognised image format") from exc
    except Image.DecompressionBombError as exc:  # over twice Pillow's limit: refused in open()
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise TooManyPixels(f"more than {limit} pixels, limit {limits.max_pixels}") from exc
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"unreadable header: {exc}") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise CorruptImage(f"invalid size {width}x{height}")
    if width * height > limits.max_pixels:
        raise TooManyPixels(f"{width}x{height} pixels, limit {limits.max_pixels}")
    if min_side and image.format == "JPEG" and image.mode in ("RGB", "L", "CMYK"):
        image.draft(image.mode, (min_side, min_side))
    try:
        image.seek(0)  # animated GIF/WebP/PNG: the first frame
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except ImageError:
        raise
    except OSError as exc:
        message = str(exc)
        if "truncated" in message.lower() or "end of file" in message.lower():
            raise TruncatedImage(message) from exc
        raise CorruptImage(message) from exc
    except (SyntaxError, ValueError, IndexError, EOFError, TypeError) as exc:
        raise CorruptImage(f"{type(exc).__name__}: {exc}") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16/32-bit greyscale: Pillow's convert clips instead of scaling, so scale to 8 bits here.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(array.max()), 1.0)
        scaled = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # avoids Pillow's palette-transparency warning
    return image.convert("RGB")


def resize_and_crop(image: Image.Image, resize: int, crop: int) -> Image.Image:
    """Bicubic resize of the short side to ``resize``, then a centre crop of ``crop``.

    The output size and crop offsets follow torchvision's ``Resize`` and ``CenterCrop``.
    """
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short != resize:
        new_long = int(resize * long / short)
        size = (resize, new_long) if width <= height else (new_long, resize)
        image = image.resize(size, Image.Resampling.BICUBIC)
    width, height = image.size
    if width < crop or height < crop:  # torchvision pads with zeros in this case
        canvas = Image.new("RGB", (max(width, crop), max(height, crop)))
        canvas.paste(image, ((canvas.width - width) // 2, (canvas.height - height) // 2))
        image, (width, height) = canvas, canvas.size
    left = round((width - crop) / 2.0)
    top = round((height - crop) / 2.0)
    return image.crop((left, top, left + crop, top + crop))


def to_pixels(image: Image.Image, manifest: ModelManifest) -> np.ndarray:
    """CHW float32 pixels, normalised as the bundle says."""
    image = resize_and_crop(image, manifest.resize, manifest.image_size)
    array = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.asarray(manifest.mean, dtype=np.float32)
    std = np.asarray(manifest.std, dtype=np.float32)
    return ((array - mean) / std).transpose(2, 0, 1)


def preprocess(
    data: bytes,
    manifest: ModelManifest,
    limits: ImageLimits = ImageLimits(),
) -> np.ndarray:
    """Bytes to model input in one call (decode with the draft path, then ``to_pixels``)."""
    return to_pixels(decode_image(data, limits, min_side=manifest.resize), manifest)
