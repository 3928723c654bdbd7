"""``imgsearch quarantine list``: the images the embed function refused, and why.

A refused image is a ``quarantined`` item of the embeddings table (``reason``: the model's
``ImageError.reason``, e.g. ``not_an_image``, ``too_large``); one filtered scan finds them::

    for item in quarantined(dynamodb, table, reason="not_an_image", bucket=target.image_bucket):
        item.key, item.reason, item.size, item.updated_at
        item.uri        # s3://<image bucket>/<key>: the object to replace with a good image
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class QuarantinedImage:
    key: str
    model: str
    reason: str
    size: int | None
    """Bytes, as S3's event reported them."""
    updated_at: str
    """When the embed function refused it."""
    uri: str = ""
    """``s3://<image bucket>/<key>`` (empty when the bucket was not given): the images may be in
    a bucket of the user's own, not the stack's."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def quarantined(
    dynamodb: Any,
    table: str,
    reason: str | None = None,
    on_scanned: Callable[[int], None] | None = None,
    bucket: str = "",
) -> Iterator[QuarantinedImage]:
    """Every quarantined item (of ``reason`` only, if given), in table order; ``on_scanned(n)``
    after each page with the items it read (a filtered scan still reads them all). ``bucket``:
    the image bucket, for each item's ``uri``."""
    condition = "#s = :q"
    values: dict[str, Any] = {":q": {"S": "quarantined"}}
    if reason:
        condition += " AND reason = :r"
        values[":r"] = {"S": reason}
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=table,
        ProjectionExpression="#k, #m, reason, #size, updated_at",
        FilterExpression=condition,
        ExpressionAttributeNames={"#k": "key", "#m": "model", "#s": "status", "#size": "size"},
        ExpressionAttributeValues=values,
    )
    for page in pages:
        for item in page.get("Items", []):
            yield QuarantinedImage(
                key=item["key"]["S"],
                model=item["model"]["S"],
                reason=item.get("reason", {}).get("S", "unknown"),
                size=int(item["size"]["N"]) if "size" in item else None,
                updated_at=item.get("updated_at", {}).get("S", ""),
                uri=f"s3://{bucket}/{item['key']['S']}" if bucket else "",
            )
        if on_scanned:
            on_scanned(int(page.get("ScannedCount", 0)))
