"""Typed errors of the model runtime.

``ImageError.reason`` is a short, stable code: ingest stores it as the quarantine reason and the
API maps it to an HTTP status, so the codes are part of the contract.
"""

from __future__ import annotations


class BundleError(RuntimeError):
    """A model bundle cannot be used: missing/corrupt file, hash mismatch, wrong shapes.

    The message always names the offending file.
    """

    def __init__(self, file: str, problem: str) -> None:
        super().__init__(f"model bundle file {file}: {problem}")
        self.file = file
        self.problem = problem


class ImageError(ValueError):
    """An input that is not a usable image. Never worth retrying."""

    reason = "invalid_image"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)
        self.detail = detail


class EmptyImage(ImageError):
    reason = "empty"


class NotAnImage(ImageError):
    reason = "not_an_image"


class CorruptImage(ImageError):
    reason = "corrupt"


class TruncatedImage(ImageError):
    reason = "truncated"


class TooManyBytes(ImageError):
    reason = "too_large_bytes"


class TooManyPixels(ImageError):
    reason = "too_large_pixels"


class TooSlowToDecode(ImageError):
    """Decoding ran over ``ImageLimits.decode_seconds`` (the query function's budget only)."""

    reason = "too_slow_to_decode"


IMAGE_ERROR_REASONS = tuple(
    cls.reason
    for cls in (
        EmptyImage,
        NotAnImage,
        CorruptImage,
        TruncatedImage,
        TooManyBytes,
        TooManyPixels,
        TooSlowToDecode,
    )
)
