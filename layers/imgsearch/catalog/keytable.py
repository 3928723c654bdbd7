"""The id -> S3 key table of a published index (``indexes/<version>/keys``)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

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
