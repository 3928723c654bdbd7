"""``indexes/current.json``: the pointer that names the serving version.

It only changes through a conditional write (``If-Match`` on its ETag, or ``If-None-Match: *``
for the first one), so two publishers never both win and a reader never sees a half-published
index::

    pointer = read_current(s3, bucket)                     # None before the first publish
    write_current(s3, bucket, CurrentIndex(version=v, ...), expected_etag=pointer and pointer.etag)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from imgsearch.catalog.contract import Contract, Figure, put_if, read_with_etag
from imgsearch.catalog.errors import PublishConflict, WriteConflict
from imgsearch.catalog.layout import CURRENT_FILE

__all__ = ["CurrentIndex", "PublishConflict", "read_current", "write_current"]


class CurrentIndex(Contract):
    """The contents of ``current.json`` (plus the ETag it was read with).

    Also the rollback function's output: the ``current.json`` it wrote.
    """

    LABEL = "current.json"

    version: str
    model: str
    count: int
    built_at: str
    scanned_from: str = ""
    """When its snapshot's scan began: images embedded since may be missing from the index,
    and the query function searches them beside it (empty: not recorded)."""
    published_at: str = ""
    snapshot_hash: str = ""
    dim: int = 0
    engine: Literal["faiss", "usearch"] = "usearch"
    """What opens ``index_file(engine)`` (``imgsearch.ann``): usearch for a version published
    before faiss was an engine."""
    dtype: str = ""
    previous: str = ""
    expansion_search: int = 0
    """The search effort Validate chose for this version (0: not recorded, use the setting)."""
    headline: dict[str, Figure] = Field(default_factory=dict)
    """Key figures of the report (recall_at_10, p99_ms, precision_at_10 ...)."""
    etag: str = Field(default="", exclude=True, repr=False)
    """The ETag it was read with: not part of the file."""


def read_current(s3: Any, bucket: str, prefix: str = "indexes/") -> CurrentIndex | None:
    return read_with_etag(s3, bucket, prefix + CURRENT_FILE, CurrentIndex)


def write_current(
    s3: Any, bucket: str, current: CurrentIndex, expected_etag: str | None, prefix: str = "indexes/"
) -> str:
    """Replace ``current.json`` only if it is still the one read (``expected_etag``; ``None``
    means "there must be none yet"). Returns the new ETag; raises ``PublishConflict``."""
    try:
        return put_if(s3, bucket, prefix + CURRENT_FILE, current, expected_etag)
    except WriteConflict as exc:
        raise PublishConflict(
            f"{prefix}{CURRENT_FILE} changed since it was read (another run published)"
        ) from exc
