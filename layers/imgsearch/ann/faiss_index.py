"""The faiss engine: an ``IndexHNSWSQ`` storing float16 (``IndexHNSWFlat`` for f32) inside an
``IndexIDMap``, opened with ``IO_FLAG_MMAP_IFC`` to serve.

faiss's HNSW cannot remove a vector (``remove_ids`` raises), so ``remove`` writes -1 over the
id of its position, as usearch's ``remove`` leaves a tombstone: the node stays in the graph,
routes searches, and is never returned, because searches then skip the id -1
(``IDSelectorNot(IDSelectorRange(-1, 0))``, which ``IndexIDMap`` applies to the ids). Vectors
are unit rows searched by inner product, so the score is the cosine similarity::

    index = FaissIndex.new(512, settings.index)
    index.add(ids, vectors, threads=2)
    index.save(path)
    served = FaissIndex.open(path, view=True)   # memory-mapped, nothing copied but the ids
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import faiss
import numpy as np

from imgsearch.ann.base import FLOAT_TOLERANCE, Neighbours, UnknownEngine
from imgsearch.core.config import IndexSettings
from imgsearch.core.vectors import l2_normalise

_MINUS_ONE = faiss.IDSelectorRange(-1, 0)
TOMBSTONES = faiss.IDSelectorNot(_MINUS_ONE)  # holds a bare pointer to _MINUS_ONE
"""Every id but -1, the id of a removed vector's position."""


def _storage(dim: int, settings: IndexSettings) -> Any:
    if settings.dtype == "f16":
        quantizer = faiss.ScalarQuantizer.QT_fp16
        return faiss.IndexHNSWSQ(dim, quantizer, settings.connectivity, faiss.METRIC_INNER_PRODUCT)
    if settings.dtype == "f32":
        return faiss.IndexHNSWFlat(dim, settings.connectivity, faiss.METRIC_INNER_PRODUCT)
    raise UnknownEngine(
        f"the faiss engine stores f16 or f32, not {settings.dtype!r}: "
        "set IMGSEARCH_INDEX_ENGINE=usearch for i8"
    )


class FaissIndex:
    engine: ClassVar[str] = "faiss"

    def __init__(self, index: Any, expansion_search: int) -> None:
        self._index = index
        self._hnsw = faiss.downcast_index(index.index)
        self._labels = np.asarray(faiss.vector_to_array(index.id_map), dtype=np.int64)
        self._expansion_search = expansion_search
        self._changed()

    @classmethod
    def new(cls, dim: int, settings: IndexSettings) -> Self:
        hnsw = _storage(dim, settings)
        hnsw.hnsw.efConstruction = settings.expansion_add
        return cls(faiss.IndexIDMap(hnsw), settings.expansion_search)

    @classmethod
    def open(cls, path: Path, view: bool) -> Self:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if view else 0)
        hnsw = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else None
        if not isinstance(hnsw, faiss.IndexHNSW):
            raise ValueError(f"{path.name} is not a faiss HNSW index with ids")
        return cls(index, hnsw.hnsw.efSearch)

    @property
    def ndim(self) -> int:
        return int(self._index.d)

    @property
    def dtype(self) -> str:
        return "f16" if isinstance(self._hnsw, faiss.IndexHNSWSQ) else "f32"

    @property
    def expansion_search(self) -> int:
        return self._expansion_search

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        self._expansion_search = value
        self._hnsw.hnsw.efSearch = value  # saved with the index
        self._params = self._search_params()

    @property
    def memory_usage(self) -> int:
        graph = self._hnsw.hnsw
        links = graph.neighbors.size() * 4 + graph.offsets.size() * 8 + graph.levels.size() * 4
        return int(self._hnsw.ntotal * self._hnsw.storage.sa_code_size() + links)

    def __len__(self) -> int:
        return len(self._labels) - self._removed

    def ids(self) -> np.ndarray:
        return self._labels[self._labels >= 0]

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """Each id's position in the graph (-1 when not here)."""
        if self._by_id is None:  # sorted on first use, once per change
            self._by_id = np.argsort(self._labels, kind="stable")
            self._ordered = self._labels[self._by_id]
        by_id, ordered = self._by_id, self._ordered
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        slot = np.minimum(np.searchsorted(ordered, ids), max(len(ordered) - 1, 0))
        if not len(ordered):
            return np.full(len(ids), -1, dtype=np.int64)
        found = (ordered[slot] == ids) & (ids >= 0)
        return np.where(found, by_id[slot], -1)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return self._positions(ids) >= 0

    def add(self, ids: np.ndarray, vectors: np.ndarray, threads: int) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        faiss.omp_set_num_threads(threads)  # OpenMP's count is the calling thread's own
        self._index.add_with_ids(l2_normalise(vectors), ids)
        self._labels = np.concatenate([self._labels, ids])
        self._changed()

    def remove(self, ids: np.ndarray) -> None:
        positions = self._positions(ids)
        self._labels[positions[positions >= 0]] = -1
        faiss.copy_array_to_vector(self._labels, self._index.id_map)
        self._changed()

    def _changed(self) -> None:
        """After the ids changed: what is derived from them, again."""
        self._removed = int(np.count_nonzero(self._labels < 0))
        self._by_id: np.ndarray | None = None
        self._ordered: np.ndarray | None = None
        self._params = self._search_params()

    def _search_params(self, effort: int | None = None) -> Any:
        """At ``effort`` (default: ``expansion_search``), past the tombstones."""
        effort = effort or self._expansion_search
        if not self._removed:
            return faiss.SearchParametersHNSW(efSearch=effort)
        return faiss.SearchParametersHNSW(efSearch=effort, sel=TOMBSTONES)

    def _stored(self) -> np.ndarray:
        """The stored vectors by position, float16 or float32, as a view of faiss's own array
        (``reconstruct_batch`` would copy and convert them)."""
        storage = faiss.downcast_index(self._hnsw.storage)
        dtype = np.float16 if self.dtype == "f16" else np.float32
        if not storage.ntotal:
            return np.empty((0, self.ndim), dtype=dtype)
        size = storage.ntotal * storage.code_size
        codes = faiss.rev_swig_ptr(storage.codes.data(), size)
        return np.frombuffer(codes, dtype=dtype).reshape(storage.ntotal, self.ndim)

    def vector(self, image_id: int) -> np.ndarray | None:
        position = int(self._positions(np.array([image_id]))[0])
        return None if position < 0 else self._stored()[position].astype(np.float32)

    def changed(self, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        held = self._stored()[self._positions(ids)]
        # A snapshot row stored as is (a unit float16 row, the table's form) has the same bits:
        # that test is ~100x cheaper than converting both to float32, which only the rest need.
        fresh = np.asarray(vectors, dtype=held.dtype)
        bits = np.uint16 if held.dtype == np.float16 else np.uint32
        differ = ~np.all(held.view(bits) == fresh.view(bits), axis=1)
        if differ.any():
            gap = np.abs(held[differ].astype(np.float32) - l2_normalise(vectors[differ]))
            differ[differ] = gap.max(axis=1) > FLOAT_TOLERANCE
        return differ

    def search(self, queries: np.ndarray, k: int, threads: int = 1) -> Neighbours:
        rows = l2_normalise(np.atleast_2d(queries))
        k = max(1, min(k, len(self._labels)))
        # faiss keeps efSearch candidates whatever k is: asking for more than that needs more.
        params = self._params if k <= self._expansion_search else self._search_params(k)
        faiss.omp_set_num_threads(threads)
        scores, ids = self._index.search(rows, k, params=params)
        # Padding (-1) sorts last: the found matches come first in every row.
        return Neighbours(ids, scores, (ids >= 0).sum(axis=1))

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))
