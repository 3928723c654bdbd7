"""The approximate nearest-neighbour index a version is built as and served from.

Two engines, one interface (``AnnIndex``): ``faiss`` (``IndexHNSWSQ`` storing float16, or
``IndexHNSWFlat`` for f32; the default) and ``usearch`` (f16, f32 or i8). Both are HNSW graphs
over cosine similarity, keyed by the stable 63-bit image ids, opened memory-mapped by the query
function. A version records its engine (``BuildResult.engine``, ``current.json``), so versions
of either kind serve and roll back side by side::

    index = new_index("faiss", 512, settings.index)
    index.add(ids, vectors, threads=2)
    index.save(path)
    served = open_index("faiss", path, view=True)
    served.expansion_search = 128
    found = served.search(queries, 10, threads=1)   # Neighbours: ids, scores, counts

Why faiss by default: at recall@10 0.95 over 1M 512-d vectors it answers in 0.38x usearch's
p50 and opens in 0.22x the time, from a file of the same size (docs/peers.md).
"""

from __future__ import annotations

from pathlib import Path

from imgsearch.ann.base import ENGINES, AnnIndex, Neighbours, UnknownEngine
from imgsearch.core.config import IndexSettings

__all__ = ["ENGINES", "AnnIndex", "Neighbours", "UnknownEngine", "new_index", "open_index"]


def _engine(engine: str) -> type[AnnIndex]:
    # Imported when first used: a process serving one engine never loads the other's library.
    if engine == "faiss":
        from imgsearch.ann.faiss_index import FaissIndex

        return FaissIndex
    if engine == "usearch":
        from imgsearch.ann.usearch_index import UsearchIndex

        return UsearchIndex
    raise UnknownEngine(f"unknown index engine {engine!r}: one of {', '.join(ENGINES)}")


def new_index(engine: str, dim: int, settings: IndexSettings) -> AnnIndex:
    """An empty index of ``engine`` at ``settings`` (scalar type, connectivity, expansions)."""
    return _engine(engine).new(dim, settings)


def open_index(engine: str, path: str | Path, view: bool = False) -> AnnIndex:
    """A saved index: memory-mapped when ``view`` (read-only), else loaded whole to change.

    Raises ``ValueError``/``RuntimeError``/``OSError`` when the file is not an index of
    ``engine``."""
    return _engine(engine).open(Path(path), view)
