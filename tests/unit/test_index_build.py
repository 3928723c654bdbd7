"""Building the index: ids as keys, the configured engine and dtype, and a file the query side
opens memory-mapped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from usearch.index import search as exact_search

from imgsearch.ann import open_index
from imgsearch.catalog.keytable import KeyTable
from imgsearch.core.config import ConfigError, IndexSettings
from imgsearch.pipeline.build import BuildError, build_index

KINDS = [("faiss", "f16"), ("faiss", "f32"), ("usearch", "i8"), ("usearch", "f16")]


def unit_vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)


@pytest.mark.parametrize(("engine", "dtype"), KINDS)
def test_saved_index_opens_as_a_view_with_its_dtype(
    engine: str, dtype: str, tmp_path: Path
) -> None:
    vectors = unit_vectors(500)
    ids = np.random.default_rng(1).integers(0, 2**63 - 1, size=500, dtype=np.int64)
    # One thread: a multithreaded HNSW build inserts in a racing order, and one such order in
    # many hundred runs left a vector's own nearest neighbour unfound (seen under a loaded -n auto).
    settings = IndexSettings(engine=engine, dtype=dtype)
    index = build_index(vectors, ids, settings, threads=1)
    index.save(tmp_path / "index")

    restored = open_index(engine, tmp_path / "index", view=True)

    assert len(restored) == 500 and restored.ndim == 32 and restored.dtype == dtype
    found = restored.search(vectors[:20], 1)
    assert found.ids[:, 0].tolist() == ids[:20].tolist()


@pytest.mark.parametrize("engine", ["faiss", "usearch"])
def test_a_file_of_the_other_engine_is_refused(engine: str, tmp_path: Path) -> None:
    other = "usearch" if engine == "faiss" else "faiss"
    built = build_index(unit_vectors(50), np.arange(50), IndexSettings(engine=other), threads=1)
    built.save(tmp_path / "index")
    with pytest.raises((ValueError, RuntimeError)):
        open_index(engine, tmp_path / "index", view=True)


def test_faiss_cannot_store_i8() -> None:
    with pytest.raises(ConfigError, match="i8 needs IMGSEARCH_INDEX_ENGINE=usearch"):
        IndexSettings(engine="faiss", dtype="i8")


@pytest.mark.parametrize("engine", ["faiss", "usearch"])
def test_ids_resolve_to_keys_through_the_key_table(engine: str, tmp_path: Path) -> None:
    keys = [f"images/{n}.jpg" for n in range(100)]
    ids = np.arange(100, dtype=np.int64) * 7_919 + 3
    KeyTable.write(tmp_path / "keys", ids, keys)
    table = KeyTable.open(tmp_path / "keys")
    index = build_index(unit_vectors(100), ids, IndexSettings(engine=engine), threads=1)
    found, _ = index.search(unit_vectors(100)[42].astype(np.float32), 1).row(0)
    assert table.key(int(found[0])) == "images/42.jpg"


def test_duplicate_ids_are_refused() -> None:
    ids = np.array([1, 2, 2, 3], dtype=np.int64)
    with pytest.raises(BuildError, match=r"1 duplicate image ids, e\.g\. 2"):
        build_index(unit_vectors(4), ids, IndexSettings(), threads=1)


@pytest.mark.parametrize("engine", ["faiss", "usearch"])
def test_batches_cover_every_vector(engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("imgsearch.pipeline.build.ADD_BATCH", 64)
    settings = IndexSettings(engine=engine)
    index = build_index(unit_vectors(300), np.arange(300, dtype=np.int64), settings, 2)
    assert len(index) == 300 and bool(np.all(index.contains(np.arange(300))))
    assert sorted(index.ids().tolist()) == list(range(300))


def clustered(n: int, dim: int = 256, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Unit vectors in tight clusters spread over few directions, as image embeddings are."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    spread = np.random.default_rng(99).standard_normal((16, dim))
    points = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, 16)) @ spread
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(("engine", "dtype"), KINDS)
def test_every_kind_keeps_recall_on_clustered_embeddings(engine: str, dtype: str) -> None:
    """i8 included: the rows are quantized at full scale, not by usearch's fixed x127 cast."""
    data, queries = clustered(4_000), clustered(200, seed=1)
    settings = IndexSettings(engine=engine, dtype=dtype)
    index = build_index(data, np.arange(4_000, dtype=np.int64), settings, 2)
    found = index.search(queries, 10).ids
    truth = exact_search(data, queries, 10, "cos", exact=True).keys
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.98, recall


@pytest.mark.parametrize(("engine", "dtype"), KINDS)
def test_scores_are_cosine_similarities(engine: str, dtype: str) -> None:
    data = clustered(500)
    settings = IndexSettings(engine=engine, dtype=dtype)
    index = build_index(data, np.arange(500, dtype=np.int64), settings, 1)
    found, scores = index.search(data[7], 5).row(0)
    assert np.allclose(scores, data[found] @ data[7], atol=0.02)


@pytest.mark.parametrize("engine", ["faiss", "usearch"])
def test_removed_ids_are_never_returned_and_the_rest_still_are(engine: str) -> None:
    data = clustered(600)
    index = build_index(data, np.arange(600, dtype=np.int64), IndexSettings(engine=engine), 1)
    gone = np.arange(0, 600, 3)
    index.remove(gone)
    found = index.search(data, 600).ids
    assert len(index) == 400 and not np.isin(found, gone).any()
    assert index.contains(np.array([0, 1])).tolist() == [False, True]
    # Tombstones still route: every live vector is still its own nearest neighbour.
    live = np.setdiff1d(np.arange(600), gone)
    assert (index.search(data[live], 1).ids[:, 0] == live).mean() >= 0.99
    assert index.vector(0) is None and index.vector(1) is not None


@pytest.mark.parametrize("engine", ["faiss", "usearch"])
def test_a_search_deeper_than_its_effort_still_finds_that_many(engine: str) -> None:
    """faiss keeps only efSearch candidates; the engine widens it to k, as usearch does."""
    data = clustered(1_000)
    settings = IndexSettings(engine=engine, expansion_search=16)
    index = build_index(data, np.arange(1_000, dtype=np.int64), settings, 1)
    assert index.search(data[0], 900).counts[0] >= 890


@pytest.mark.parametrize(("engine", "dtype"), KINDS)
def test_changed_tells_a_new_embedding_from_the_stored_one(engine: str, dtype: str) -> None:
    data = clustered(200)
    settings = IndexSettings(engine=engine, dtype=dtype)
    index = build_index(data, np.arange(200, dtype=np.int64), settings, 1)
    ids = np.arange(10)
    assert not index.changed(ids, data[:10].astype(np.float16)).any()
    assert index.changed(ids, data[100:110]).all()
