"""Index artifacts in S3 and the ``current.json`` pointer that names the serving version.

Layout under the index prefix (default ``indexes/``)::

    indexes/<version>/index.usearch   the usearch index (keys = stable image ids)
    indexes/<version>/keys            id -> S3 key table (see ``KeyTable``)
    indexes/<version>/report.json     what was built, with which parameters, every figure
    indexes/current.json              {"version": ..., ...}: the serving version

``current.json`` only changes through a conditional write (``If-Match`` on its ETag, or
``If-None-Match: *`` for the first one), so two publishers never both win and a reader never
sees a half-published index::

    pointer = read_current(s3, bucket)                     # None before the first publish
    write_current(s3, bucket, CurrentIndex(version=v, ...), expected_etag=pointer and pointer.etag)
"""

from __future__ import annotations

import json
import secrets
import struct
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

INDEX_FILE = "index.usearch"
KEYS_FILE = "keys"
REPORT_FILE = "report.json"
CURRENT_FILE = "current.json"


class PublishConflict(RuntimeError):
    """``current.json`` changed since it was read: another run published first."""


def new_version(now: datetime | None = None) -> str:
    """Sortable, unique: UTC time to the second, then random bits against same-second runs."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def version_time(version: str) -> datetime:
    """When a version was built, read back from its name (see ``new_version``)."""
    return datetime.strptime(version.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def version_key(prefix: str, version: str, name: str) -> str:
    return f"{prefix}{version}/{name}"


@dataclass(frozen=True)
class CurrentIndex:
    """The contents of ``current.json`` (plus the ETag it was read with)."""

    version: str
    model: str
    count: int
    built_at: str
    published_at: str = ""
    snapshot_hash: str = ""
    dim: int = 0
    dtype: str = ""
    previous: str = ""
    expansion_search: int = 0
    """The search effort Validate chose for this version (0: not recorded, use the setting)."""
    headline: dict[str, float] = field(default_factory=dict)
    """Key figures of the report (recall_at_10, p99_ms, precision_at_10 ...)."""
    etag: str = field(default="", compare=False)

    def to_json(self) -> bytes:
        data = asdict(self)
        data.pop("etag")
        return json.dumps(data, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, body: bytes, etag: str = "") -> CurrentIndex:
        data = json.loads(body)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "etag"}
        return cls(**known, etag=etag)


def read_current(s3: Any, bucket: str, prefix: str = "indexes/") -> CurrentIndex | None:
    try:
        response = s3.get_object(Bucket=bucket, Key=prefix + CURRENT_FILE)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return CurrentIndex.from_json(response["Body"].read(), response.get("ETag", ""))


def write_current(
    s3: Any, bucket: str, current: CurrentIndex, expected_etag: str | None, prefix: str = "indexes/"
) -> str:
    """Replace ``current.json`` only if it is still the one read (``expected_etag``; ``None``
    means "there must be none yet"). Returns the new ETag; raises ``PublishConflict``."""
    condition = {"IfMatch": expected_etag} if expected_etag else {"IfNoneMatch": "*"}
    try:
        response = s3.put_object(
            Bucket=bucket,
            Key=prefix + CURRENT_FILE,
            Body=current.to_json(),
            ContentType="application/json",
            **condition,
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
            raise PublishConflict(
                f"{prefix}{CURRENT_FILE} changed since it was read (another run published)"
            ) from exc
        raise
    return response.get("ETag", "")


_MAGIC = b"IMGSKEY1"


class KeyTable:
    """A sorted id -> key table that opens without parsing (ids and offsets are numpy views).

    File: ``IMGSKEY1``, count (u64), ids (int64[count], sorted), offsets (u64[count + 1]) into a
    UTF-8 blob of the keys::

        KeyTable.write(path, ids, keys)
        table = KeyTable.open(path)
        table.lookup(np.array([id_a, id_b]))   # ["images/a.jpg", None]
    """

    def __init__(self, buffer: bytes | memoryview | np.memmap) -> None:
        view = memoryview(buffer)
        if bytes(view[:8]) != _MAGIC:
            raise ValueError("not a key table (bad magic)")
        (count,) = struct.unpack_from("<Q", view, 8)
        start = 16
        self.ids = np.frombuffer(view, dtype="<i8", count=count, offset=start)
        start += 8 * count
        self.offsets = np.frombuffer(view, dtype="<u8", count=count + 1, offset=start)
        self._blob = view[start + 8 * (count + 1) :]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def open(cls, path: str | Path) -> KeyTable:
        return cls(np.memmap(path, dtype=np.uint8, mode="r"))

    @staticmethod
    def encode(ids: np.ndarray, keys: list[str]) -> bytes:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) != len(keys):
            raise ValueError(f"{len(ids)} ids but {len(keys)} keys")
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        if len(sorted_ids) > 1 and np.any(sorted_ids[1:] == sorted_ids[:-1]):
            raise ValueError("duplicate ids in key table")
        encoded = [keys[i].encode("utf-8") for i in order]
        offsets = np.zeros(len(encoded) + 1, dtype="<u8")
        offsets[1:] = np.cumsum([len(e) for e in encoded], dtype=np.uint64)
        return b"".join(
            [
                _MAGIC,
                struct.pack("<Q", len(encoded)),
                sorted_ids.astype("<i8").tobytes(),
                offsets.tobytes(),
                *encoded,
            ]
        )

    @classmethod
    def write(cls, path: str | Path, ids: np.ndarray, keys: list[str]) -> None:
        Path(path).write_bytes(cls.encode(ids, keys))

    def key(self, image_id: int) -> str | None:
        position = int(np.searchsorted(self.ids, image_id))
        if position >= len(self) or int(self.ids[position]) != image_id:
            return None
        begin, end = int(self.offsets[position]), int(self.offsets[position + 1])
        return bytes(self._blob[begin:end]).decode("utf-8")

    def lookup(self, ids: np.ndarray) -> list[str | None]:
        return [self.key(int(i)) for i in np.asarray(ids).ravel()]
