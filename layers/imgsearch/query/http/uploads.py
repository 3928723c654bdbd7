"""Request bodies read by hand: the image of a ``POST /search`` (a raw ``image/*`` body or JSON
``{"image": "<base64>"}``) and the JSON of a ``POST /feedback``.

Sizes are checked before anything is decoded, so a huge body is refused without the work::

    data = read_upload(event.headers.get("content-type") or "", event.body,
                       event.is_base64_encoded, limit=settings.api.max_upload_bytes)
    document = read_json(event.headers.get("content-type") or "", event.body,
                         event.is_base64_encoded, limit=FEEDBACK_BYTES)
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aws_lambda_powertools.event_handler import content_types

from imgsearch.query.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


def read_upload(content_type: str, body: str | None, is_base64: bool, limit: int) -> bytes:
    """The image bytes of a ``POST /search``: a raw ``image/*`` body or JSON with base64."""
    media = content_type.split(";", 1)[0].strip().lower()
    raw = body or ""
    if media.startswith("image/"):
        if is_base64:
            return _decode_base64(raw, limit)
        data = raw.encode("utf-8", "replace")
        _check_size(len(data), limit)
        return data
    if _is_json(media):
        text = _decode_base64(raw, 2 * limit).decode("utf-8", "replace") if is_base64 else raw
        _check_size(len(text) // 4 * 3 - 1024, limit)  # the base64 inside inflates by 4/3
        document = _parse_json(text)
        image = document.get("image") if isinstance(document, dict) else None
        if not isinstance(image, str):
            raise BadRequest('the JSON body must be an object with "image": a base64 string')
        if image.startswith("data:") and "," in image:
            image = image.split(",", 1)[1]
        return _decode_base64(image, limit)
    raise UnsupportedMediaType(
        f"send the image as the body with an image/* Content-Type, or as JSON; got {media!r}",
        content_type=media,
    )


def read_json(content_type: str, body: str | None, is_base64: bool, limit: int) -> Any:
    """The JSON document of a body that must be JSON (``POST /feedback``)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not _is_json(media):
        raise UnsupportedMediaType(
            f"send the body as JSON (application/json); got {media!r}", content_type=media
        )
    raw = body or ""
    if is_base64:
        try:
            raw = _decode_base64(raw, limit, "body").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest("the body is not UTF-8 text") from exc
    else:
        _check_size(len(raw.encode("utf-8", "surrogatepass")), limit)
    return _parse_json(raw)


def _is_json(media: str) -> bool:
    return media == content_types.APPLICATION_JSON or media.endswith("+json")


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON (at character {exc.pos})") from exc
    except RecursionError as exc:
        raise BadRequest("the JSON body is nested too deeply") from exc


def _check_size(size: int, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(f"the upload is {size} bytes; the limit is {limit}", limit=limit)


def _decode_base64(text: str, limit: int, what: str = "image") -> bytes:
    compact = "".join(text.split())
    _check_size(len(compact) // 4 * 3, limit)  # before decoding: never decode a huge body
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"the {what} is not valid base64") from exc
    _check_size(len(data), limit)
    return data
