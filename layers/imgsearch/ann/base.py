"""What every index engine offers: the interface the pipeline and the query function use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, Self

import numpy as np

from imgsearch.core.config import ENGINES, IndexSettings
from imgsearch.core.errors import ImgsearchError

__all__ = ["ENGINES", "FLOAT_TOLERANCE", "AnnIndex", "Neighbours", "UnknownEngine"]

FLOAT_TOLERANCE = 2e-3
"""A stored float vector differs from a new one past this (per component): float16 rounding is
below 1e-3 on unit vectors, a new embedding of an image far above."""


class UnknownEngine(ImgsearchError, ValueError):
    """An engine name that is not one of ``ENGINES``, or a setting the engine cannot build."""


@dataclass(frozen=True)
class Neighbours:
    """A batch of searches: row ``i`` holds query ``i``'s ``counts[i]`` best matches first."""

    ids: np.ndarray
    """(queries, k) int64 image ids; the tail past ``counts`` is padding (-1)."""
    scores: np.ndarray
    """(queries, k) float32 cosine similarity, best first (padding: -1 or less)."""
    counts: np.ndarray
    """(queries,) matches found per query (fewer than k when the index holds fewer)."""

    def row(self, query: int) -> tuple[np.ndarray, np.ndarray]:
        """Query ``query``'s ids and scores, without the padding."""
        found = int(self.counts[query])
        return self.ids[query, :found], self.scores[query, :found]


class AnnIndex(Protocol):
    """An HNSW index over unit vectors under int64 image ids (cosine similarity)."""

    engine: ClassVar[str]

    @classmethod
    def new(cls, dim: int, settings: IndexSettings) -> Self: ...

    @classmethod
    def open(cls, path: Path, view: bool) -> Self: ...

    @property
    def ndim(self) -> int: ...

    @property
    def dtype(self) -> str:
        """``f32``, ``f16`` or ``i8``: how the vectors are stored."""
        ...

    @property
    def expansion_search(self) -> int: ...

    @expansion_search.setter
    def expansion_search(self, value: int) -> None: ...

    @property
    def memory_usage(self) -> int:
        """Bytes the index takes in memory once loaded (graph and vectors)."""
        ...

    def __len__(self) -> int:
        """Vectors searchable (removed ones excluded)."""
        ...

    def ids(self) -> np.ndarray:
        """The int64 ids of the searchable vectors."""
        ...

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """A bool per id: searchable here."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray, threads: int) -> None:
        """Add ``vectors`` (rows of any float type, any length) under ``ids`` (new ones)."""
        ...

    def remove(self, ids: np.ndarray) -> None:
        """Stop returning ``ids`` (both engines keep their graph nodes: tombstones)."""
        ...

    def vector(self, image_id: int) -> np.ndarray | None:
        """The stored vector of ``image_id`` as float32 (None when not here)."""
        ...

    def changed(self, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """A bool per id: its stored vector differs from ``vectors``' row by more than the
        storage's rounding (a new embedding of the image, not a re-read of the same one)."""
        ...

    def search(self, queries: np.ndarray, k: int, threads: int = 1) -> Neighbours:
        """The ``k`` nearest of each query row (one row or many, any float type)."""
        ...

    def save(self, path: Path) -> None: ...
