"""The usearch engine: ``usearch.index.Index`` (f16, f32 or i8), restored with ``view`` to serve.

The vectors enter through :func:`imgsearch.core.vectors.prepare` (unit rows with the
inner-product metric, or i8 rows scaled per row with cosine), so the stored form is the same
whether Build, Validate or the query function made it::

    index = UsearchIndex.new(512, settings.index)
    index.add(ids, vectors, threads=2)
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

import numpy as np
from usearch.index import Index

from imgsearch.ann.base import FLOAT_TOLERANCE, Neighbours
from imgsearch.core.config import IndexSettings
from imgsearch.core.vectors import metric_for, prepare, scalar_name

I8_TOLERANCE = 1
"""``FLOAT_TOLERANCE`` for i8 rows: one quantisation step."""


class UsearchIndex:
    engine: ClassVar[str] = "usearch"

    def __init__(self, index: Index) -> None:
        self._index = index

    @classmethod
    def new(cls, dim: int, settings: IndexSettings) -> Self:
        return cls(
            Index(
                ndim=dim,
                metric=metric_for(settings.dtype),
                dtype=settings.dtype,
                connectivity=settings.connectivity,
                expansion_add=settings.expansion_add,
                expansion_search=settings.expansion_search,
            )
        )

    @classmethod
    def open(cls, path: Path, view: bool) -> Self:
        index = Index.restore(str(path), view=view)
        if index is None:
            raise ValueError(f"{path.name} is not a usearch index")
        return cls(index)

    @property
    def ndim(self) -> int:
        return int(self._index.ndim)

    @property
    def dtype(self) -> str:
        return scalar_name(self._index.dtype)

    @property
    def expansion_search(self) -> int:
        return int(self._index.expansion_search)

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        self._index.expansion_search = value

    @property
    def memory_usage(self) -> int:
        return int(self._index.memory_usage)

    def __len__(self) -> int:
        return len(self._index)

    def ids(self) -> np.ndarray:
        return np.asarray(self._index.keys, dtype=np.uint64).astype(np.int64)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(self._index.contains(ids.astype(np.uint64)), dtype=bool).reshape(-1)

    def add(self, ids: np.ndarray, vectors: np.ndarray, threads: int) -> None:
        self._index.add(ids.astype(np.uint64), prepare(vectors, self.dtype), threads=threads)

    def remove(self, ids: np.ndarray) -> None:
        self._index.remove(ids.astype(np.uint64))

    def vector(self, image_id: int) -> np.ndarray | None:
        found = self._index.get(np.uint64(image_id), dtype=np.float32)
        return None if found is None else np.asarray(found, dtype=np.float32).reshape(-1)

    def changed(self, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        i8 = self.dtype == "i8"
        held = np.stack(self._index.get(ids.astype(np.uint64), dtype=np.int8 if i8 else np.float32))
        fresh = prepare(vectors, self.dtype)
        gap = np.abs(held.astype(np.float32) - fresh.astype(np.float32)).max(axis=1)
        return gap > (I8_TOLERANCE if i8 else FLOAT_TOLERANCE)

    def search(self, queries: np.ndarray, k: int, threads: int = 1) -> Neighbours:
        rows = prepare(np.atleast_2d(queries), self.dtype)
        found = self._index.search(rows, k, threads=threads)
        keys = np.asarray(found.keys, dtype=np.uint64).astype(np.int64).reshape(len(rows), -1)
        distances = np.asarray(found.distances, dtype=np.float32).reshape(len(rows), -1)
        # One query comes back as Matches (trimmed to what was found), many as BatchMatches.
        counts = np.asarray(getattr(found, "counts", [keys.shape[1]]), dtype=np.int64)
        padding = np.arange(keys.shape[1]) >= counts.reshape(-1, 1)  # usearch pads with key 0
        scores = 1.0 - np.where(padding, 2.0, distances)
        return Neighbours(np.where(padding, -1, keys), scores, counts.reshape(-1))

    def save(self, path: Path) -> None:
        self._index.save(str(path))
