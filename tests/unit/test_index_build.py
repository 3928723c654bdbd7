"""Building the usearch index: ids as keys, configured dtype, and a file the query side restores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from usearch.index import Index

from imgsearch.catalog.keytable import KeyTable
from imgsearch.core.config import IndexSettings
from imgsearch.core.vectors import metric_for, prepare
from imgsearch.pipeline.build import BuildError, build_index


def unit_vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)


@pytest.mark.parametrize("dtype", ["i8", "f16", "f32"])
def test_saved_index_restores_as_a_view_with_its_metric_and_dtype(
    dtype: str, tmp_path: Path
) -> None:
    vectors = unit_vectors(500)
    ids = np.random.default_rng(1).integers(0, 2**63 - 1, size=500, dtype=np.int64)
    # One thread: a multithreaded HNSW build inserts in a racing order, and one such order in
    # many hundred runs left a vector's own nearest neighbour unfound (seen under a loaded -n auto).
    index = build_index(vectors, ids, IndexSettings(dtype=dtype), threads=1)
    index.save(str(tmp_path / "index.usearch"))

    restored = Index.restore(str(tmp_path / "index.usearch"), view=True)

    assert restored is not None and len(restored) == 500 and restored.ndim == 32
    assert restored.metric.name.lower() == metric_for(dtype)
    assert restored.dtype.name.lower() == dtype
    found = restored.search(prepare(vectors[:20], restored.dtype), 1)
    assert found.keys[:, 0].astype(np.int64).tolist() == ids[:20].tolist()


def test_ids_resolve_to_keys_through_the_key_table(tmp_path: Path) -> None:
    keys = [f"images/{n}.jpg" for n in range(100)]
    ids = np.arange(100, dtype=np.int64) * 7_919 + 3
    KeyTable.write(tmp_path / "keys", ids, keys)
    table = KeyTable.open(tmp_path / "keys")
    index = build_index(unit_vectors(100), ids, IndexSettings(), threads=1)
    match = index.search(unit_vectors(100)[42].astype(np.float32), 1)
    assert table.key(int(match.keys[0])) == "images/42.jpg"


def test_duplicate_ids_are_refused() -> None:
    ids = np.array([1, 2, 2, 3], dtype=np.int64)
    with pytest.raises(BuildError, match=r"1 duplicate image ids, e\.g\. 2"):
        build_index(unit_vectors(4), ids, IndexSettings(), threads=1)


def test_batches_cover_every_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("imgsearch.pipeline.build.ADD_BATCH", 64)
    index = build_index(unit_vectors(300), np.arange(300, dtype=np.int64), IndexSettings(), 2)
    assert len(index) == 300 and bool(np.all(index.contains(np.arange(300, dtype=np.uint64))))


def clustered(n: int, dim: int = 256, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Unit vectors in tight clusters spread over few directions, as image embeddings are."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    spread = np.random.default_rng(99).standard_normal((16, dim))
    points = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, 16)) @ spread
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("dtype", ["i8", "f16"])
def test_every_scalar_type_keeps_recall_on_clustered_embeddings(dtype: str) -> None:
    """i8 included: the rows are quantized at full scale, not by usearch's fixed x127 cast."""
    from usearch.index import search as exact_search

    data, queries = clustered(4_000), clustered(200, seed=1)
    index = build_index(data, np.arange(4_000, dtype=np.int64), IndexSettings(dtype=dtype), 2)
    found = index.search(prepare(queries, dtype), 10).keys
    truth = exact_search(data, queries, 10, "cos", exact=True).keys
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.98, recall


def test_scores_are_cosine_similarities_for_every_scalar_type() -> None:
    data = clustered(500)
    for dtype in ("i8", "f16", "f32"):
        index = build_index(data, np.arange(500, dtype=np.int64), IndexSettings(dtype=dtype), 1)
        matches = index.search(prepare(data[7], dtype), 5)
        cosine = data[matches.keys.astype(np.int64)] @ data[7]
        assert np.allclose(1.0 - matches.distances, cosine, atol=0.02), dtype
