"""Builds that cost what changed: the second run of the pipeline starts from the serving index,
adds what is new, removes what was deleted, replaces what was embedded again, and Validate judges
the result as it judges a full build. A change of settings, too many tombstones or too large a
change builds from scratch, and the report says why. The real ASL, the real handlers, moto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from imgsearch_devkit.local.lambda_dispatch import install_lambda_dispatch
from pipeline_support import BUCKET, Stack, pipeline_environment, running_stack
from tiny_bundle import make_tiny_bundle

from imgsearch.ann import AnnIndex, open_index
from imgsearch.catalog.layout import index_file
from imgsearch.core.clock import now_iso
from imgsearch.core.keys import image_id
from imgsearch.store import EmbeddingRecord

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny", dim=32)


@pytest.fixture
def stack(bundle: Path, tmp_path: Path) -> Iterator[tuple[Stack, Any]]:
    with running_stack(pipeline_environment(bundle, tmp_path), bundle) as running:
        yield running


def published(stack: Stack, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    result = stack.run(payload or {"force": True})
    assert result["status"] == "SUCCEEDED", result
    return stack.report(stack.current_version() or "")


def put(stack: Stack, key: str, vector: np.ndarray, sequencer: str = "2") -> None:
    stack.store.put(
        EmbeddingRecord(
            key=key,
            model=stack.model.model_id,
            id=image_id(key),
            status="ok",
            sequencer=sequencer,
            updated_at=now_iso(),
            vector=vector / np.linalg.norm(vector),
        )
    )


def delete(stack: Stack, key: str) -> None:
    stamp = now_iso()
    stack.store.put(
        EmbeddingRecord(
            key=key,
            model=stack.model.model_id,
            id=image_id(key),
            status="deleted",
            sequencer="3",
            updated_at=stamp,
            deleted_at=stamp,
        )
    )


def served_index(stack: Stack, version: str, tmp_path: Path, engine: str = "faiss") -> AnnIndex:
    path = tmp_path / f"{version}.index"
    stack.s3.download_file(BUCKET, f"indexes/{version}/{index_file(engine)}", str(path))
    return open_index(engine, path)


def test_the_second_build_changes_only_what_changed(stack, tmp_path: Path) -> None:
    stack, _ = stack
    stack.put_images()
    stack.put_golden()
    first = published(stack)
    assert (first["build"]["mode"], first["build"]["mode_reason"]) == (
        "full",
        "no index is serving",
    )

    rng = np.random.default_rng(3)
    dim = stack.model.dim
    new = {f"images/new/{n:03d}.png": rng.standard_normal(dim) for n in range(12)}
    for key, vector in new.items():
        put(stack, key, vector)
    gone = [f"images/red-circle/{n:03d}.png" for n in range(5)]
    for key in gone:
        delete(stack, key)
    again = {f"images/blue-square/{n:03d}.png": rng.standard_normal(dim) for n in range(7)}
    for key, vector in again.items():
        put(stack, key, vector)

    second = published(stack)
    build = second["build"]
    assert build["mode"] == "incremental", build
    assert build["base_version"] == first["version"]
    assert (build["added"], build["removed"], build["changed"]) == (12, 5, 7)
    assert build["removed_since_full"] == 5 + 7
    assert build["count"] == first["build"]["count"] + 12 - 5
    assert all(g["passed"] for g in second["gates"]), second["gates"]

    index = served_index(stack, second["version"], tmp_path)
    held = set(index.ids().tolist())
    assert {image_id(k) for k in new} <= held
    assert not {image_id(k) for k in gone} & held
    for key, vector in again.items():  # the new embedding, not the old one
        stored = index.vector(image_id(key))
        assert stored is not None
        assert np.allclose(stored, vector / np.linalg.norm(vector), atol=2e-3)
    found = index.search(np.stack([v for v in again.values()]), 1).ids[:, 0]
    assert found.tolist() == [image_id(k) for k in again]  # and it is what a search finds

    third = published(stack)  # nothing changed: incremental, nothing to do
    assert third["build"]["mode"] == "incremental"
    assert (third["build"]["added"], third["build"]["removed"], third["build"]["changed"]) == (
        0,
        0,
        0,
    )
    assert third["build"]["removed_since_full"] == 12


def test_settings_tombstones_or_a_large_change_build_from_scratch(stack, tmp_path) -> None:
    stack, _ = stack
    stack.put_images()
    with install_lambda_dispatch(stack.routes(IMGSEARCH_INDEX_ENGINE="usearch")):
        old = published(stack)
        assert old["build"]["engine"] == "usearch"
        delete(stack, "images/red-square/010.png")
        again = published(stack)  # a usearch version changes incrementally too
        assert (again["build"]["mode"], again["build"]["removed"]) == ("incremental", 1)
    assert (
        len(served_index(stack, again["version"], tmp_path, "usearch")) == old["build"]["count"] - 1
    )
    switched = published(stack)
    assert (switched["build"]["mode"], switched["build"]["engine"]) == ("full", "faiss")
    assert "index settings changed (engine" in switched["build"]["mode_reason"]
    with install_lambda_dispatch(stack.routes(IMGSEARCH_INDEX_CONNECTIVITY="16")):
        changed = published(stack)
    assert changed["build"]["mode"] == "full"
    assert "index settings changed" in changed["build"]["mode_reason"]
    assert changed["build"]["connectivity"] == 16

    with install_lambda_dispatch(stack.routes(IMGSEARCH_INDEX_CONNECTIVITY="16")):
        for n in range(10):
            delete(stack, f"images/red-square/{n:03d}.png")
        pruned = published(stack)
        assert pruned["build"]["mode"] == "incremental"
        assert pruned["build"]["removed_since_full"] == 10
    with install_lambda_dispatch(
        stack.routes(
            IMGSEARCH_INDEX_CONNECTIVITY="16", IMGSEARCH_INDEX_INCREMENTAL_MAX_REMOVED="0.05"
        )
    ):
        full = published(stack)
        assert full["build"]["mode"] == "full"
        assert "tombstones" in full["build"]["mode_reason"], full["build"]
        assert full["build"]["removed_since_full"] == 0

        rng = np.random.default_rng(9)
        for n in range(200):
            put(stack, f"images/more/{n:03d}.png", rng.standard_normal(stack.model.dim))
        large = published(stack)
        assert large["build"]["mode"] == "full"
        assert "more than half" in large["build"]["mode_reason"]
