"""Object keys and the stable 64-bit image ids derived from them.

S3 event notifications URL-encode keys the way HTML forms do (``+`` is a space, ``%2B`` a plus)::

    decode_event_key("images/red+car%2B1.jpg")  # "images/red car+1.jpg"
    image_id("images/red car+1.jpg")            # the same 64-bit id on every rebuild
    split_s3_uri("s3://bucket/models/a@1/")     # ("bucket", "models/a@1/")
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote_plus

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> (``bucket``, ``some/key``); the key is "" for ``s3://bucket``."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def decode_event_key(raw: str) -> str:
    return unquote_plus(raw, encoding="utf-8", errors="strict")


def image_id(key: str) -> int:
    """First 8 bytes of blake2b(key), big-endian, top bit cleared.

    63 bits fit every consumer unchanged: usearch's u64 keys (whose all-ones value is reserved),
    numpy's int64 and DynamoDB numbers.
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def is_image_key(key: str, prefix: str) -> bool:
    """True when the key lies under the image prefix and has an image file extension."""
    if not key.startswith(prefix) or key.endswith("/"):
        return False
    dot = key.rfind(".")
    return dot > key.rfind("/") and key[dot:].lower() in IMAGE_EXTENSIONS
