"""Image decoding and CLIP preprocessing: every mode, every bad input, the JPEG draft path."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgsearch.model import errors
from imgsearch.model.bundle import ModelManifest
from imgsearch.model.preprocess import ImageLimits, decode_image, resize_and_crop, to_pixels

RNG = np.random.default_rng(7)
PHOTO = Image.fromarray((RNG.random((300, 400, 3)) * 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def manifest(size: int = 224) -> ModelManifest:
    return ModelManifest(
        name="t", version="1", embedding_dim=4, image_size=size, context_length=8, files={}
    )


@pytest.mark.parametrize(
    ("image", "fmt"),
    [
        (PHOTO.convert("P"), "PNG"),
        (PHOTO.convert("L"), "PNG"),
        (PHOTO.convert("LA"), "PNG"),
        (PHOTO.convert("RGBA"), "PNG"),
        (PHOTO.convert("CMYK"), "JPEG"),
        (PHOTO.convert("CMYK"), "TIFF"),
        (PHOTO.convert("1"), "PNG"),
        (Image.fromarray((RNG.random((300, 400)) * 65535).astype(np.uint16)), "PNG"),  # I;16
        (PHOTO, "WEBP"),
        (PHOTO, "BMP"),
    ],
)
def test_every_mode_becomes_rgb(image: Image.Image, fmt: str) -> None:
    decoded = decode_image(encode(image, fmt))
    assert decoded.mode == "RGB" and decoded.size == (400, 300)


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 256 * 4, dtype=np.uint16).reshape(4, 256)
    decoded = np.asarray(decode_image(encode(Image.fromarray(ramp), "PNG")))
    assert decoded.min() == 0 and decoded.max() == 255 and len(np.unique(decoded)) > 200


def test_palette_with_transparency_and_animated_gif_first_frame() -> None:
    frames = [Image.new("P", (32, 32), colour) for colour in (10, 20, 30)]
    for frame in frames:
        frame.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], transparency=0)
    decoded = decode_image(buffer.getvalue())
    assert decoded.mode == "RGB" and decoded.getpixel((5, 5)) == (10, 245, 0)


def test_exif_orientation_is_applied() -> None:
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    assert decode_image(encode(wide, "JPEG", exif=exif)).size == (20, 40)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", errors.EmptyImage),
        (b"plain text, no image here", errors.NotAnImage),
        (encode(PHOTO, "JPEG")[: len(encode(PHOTO, "JPEG")) // 2], errors.TruncatedImage),
        (encode(PHOTO, "PNG")[: len(encode(PHOTO, "PNG")) // 2], errors.TruncatedImage),
    ],
)
def test_bad_inputs_raise_one_typed_error(data: bytes, error: type[errors.ImageError]) -> None:
    with pytest.raises(error) as caught:
        decode_image(data)
    assert caught.value.reason == error.reason


def test_corrupt_png_data() -> None:
    data = bytearray(encode(PHOTO, "PNG"))
    start = data.index(b"IDAT") + 8
    data[start : start + 64] = bytes(64)  # zlib stream destroyed, length intact
    with pytest.raises(errors.CorruptImage):
        decode_image(bytes(data))


def test_byte_and_pixel_limits() -> None:
    data = encode(PHOTO, "PNG")
    with pytest.raises(errors.TooManyBytes):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))
    with pytest.raises(errors.TooManyPixels):
        decode_image(data, ImageLimits(max_pixels=399 * 300))


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = encode(Image.new("L", (12_000, 12_000)), "PNG")  # 144 MP of zeros: a few KB
    assert len(bomb) < 1_000_000
    with pytest.raises(errors.TooManyPixels):
        decode_image(bomb)


def test_pixel_limit_messages_are_in_our_words() -> None:
    between = encode(Image.new("L", (10_000, 10_000)), "PNG")  # over Pillow's warning size
    with pytest.raises(errors.TooManyPixels) as caught:
        decode_image(between)
    assert caught.value.detail == "10000x10000 pixels, limit 64000000"
    beyond = encode(Image.new("1", (14_000, 14_000)), "PNG")  # over twice Pillow's limit
    with pytest.raises(errors.TooManyPixels) as caught:
        decode_image(beyond)
    assert "bomb" not in str(caught.value) and "limit 64000000" in str(caught.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_decode_time_budget_stops_decoding(fmt: str) -> None:
    data = encode(PHOTO, fmt)
    with pytest.raises(errors.TooSlowToDecode) as caught:
        decode_image(data, ImageLimits(decode_seconds=0.0))
    assert caught.value.reason == "too_slow_to_decode"
    assert decode_image(data, ImageLimits(decode_seconds=5.0)).size == PHOTO.size
    assert decode_image(data).size == PHOTO.size  # no budget: ingest's behaviour


def test_jpeg_draft_decodes_a_large_photo_at_reduced_scale() -> None:
    data = encode(Image.new("RGB", (4000, 3000), (200, 30, 30)), "JPEG")
    draft = decode_image(data, min_side=224)
    assert draft.size == (500, 375)  # 1/8 scale still covers the 224 short side
    assert decode_image(data).size == (4000, 3000)


def test_resize_and_crop_follow_torchvision() -> None:
    out = resize_and_crop(Image.new("RGB", (640, 480)), 224, 224)
    assert out.size == (224, 224)
    tall = resize_and_crop(Image.new("RGB", (100, 300)), 32, 32)
    assert tall.size == (32, 32)


def test_to_pixels_normalises_with_the_bundle_statistics() -> None:
    pixels = to_pixels(Image.new("RGB", (300, 200), (255, 255, 255)), manifest(32))
    assert pixels.shape == (3, 32, 32) and pixels.dtype == np.float32
    expected = (1.0 - np.array(manifest().mean)) / np.array(manifest().std)
    np.testing.assert_allclose(pixels[:, 10, 10], expected, rtol=1e-5)
