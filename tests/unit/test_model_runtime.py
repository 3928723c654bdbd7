"""The model runtime: bundle loading and its errors, tokenisation, encoders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws
from tiny_bundle import make_tiny_bundle

from imgsearch.model import BundleError, ClipModel, open_bundle
from imgsearch.model.bundle import sha256_file


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    return make_tiny_bundle(tmp_path / "tiny")


def _rewrite_manifest(root: Path, **changes: object) -> None:
    data = json.loads((root / "model.json").read_text())
    data.update(changes)
    (root / "model.json").write_text(json.dumps(data))


def test_loads_and_encodes_unit_vectors(bundle: Path) -> None:
    model = ClipModel.load(bundle, threads=1)
    assert model.model_id == "tiny@1"
    text = model.encode_text(["a red circle", "blue square", "a"])
    images = model.encode_images(np.random.default_rng(0).random((3, 3, 16, 16), np.float32))
    for vectors in (text, images):
        assert vectors.dtype == np.float32 and vectors.shape == (3, 8)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert model.encode_text([]).shape == (0, 8)


def test_tokenizer_truncates_keeping_end_of_text_and_pads_to_longest(bundle: Path) -> None:
    model = ClipModel.load(bundle)
    ids = model.tokenizer(["a red circle circle circle circle circle", "blue"])
    assert ids.dtype == np.int64 and ids.shape == (2, 6)  # context_length 6, not padded past it
    assert ids[0, 0] == 1 and ids[0, -1] == 2  # start and end-of-text survive truncation
    assert list(ids[1]) == [1, 5, 2, 2, 2, 2]  # padded with pad_token_id to the longest
    assert model.tokenizer(["a"]).shape == (1, 3)  # a batch of short texts stays short


def test_missing_file_names_it(bundle: Path) -> None:
    (bundle / "textual.onnx").unlink()
    with pytest.raises(BundleError, match=r"textual\.onnx: not found"):
        open_bundle(bundle)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"model\.json: not found"):
        open_bundle(tmp_path)


def test_manifest_not_json_or_incomplete(bundle: Path) -> None:
    (bundle / "model.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(bundle)
    (bundle / "model.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(BundleError, match="missing fields: version"):
        open_bundle(bundle)


def test_hash_mismatch_names_the_file(bundle: Path) -> None:
    with (bundle / "visual.onnx").open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(BundleError, match=r"visual\.onnx: sha256 mismatch"):
        open_bundle(bundle)


def test_corrupt_onnx_with_matching_hash_is_a_bundle_error(bundle: Path) -> None:
    (bundle / "visual.onnx").write_bytes(b"\x08\x07garbage that is not a protobuf graph")
    files = json.loads((bundle / "model.json").read_text())["files"]
    files["visual.onnx"] = sha256_file(bundle / "visual.onnx")
    _rewrite_manifest(bundle, files=files)
    with pytest.raises(BundleError, match=r"visual\.onnx: onnxruntime cannot load it"):
        ClipModel.load(bundle)


def test_corrupt_tokenizer_is_a_bundle_error(bundle: Path) -> None:
    (bundle / "tokenizer.json").write_text("{}")
    files = json.loads((bundle / "model.json").read_text())["files"]
    files["tokenizer.json"] = sha256_file(bundle / "tokenizer.json")
    _rewrite_manifest(bundle, files=files)
    with pytest.raises(BundleError, match=r"tokenizer\.json: not a valid tokenizers file"):
        ClipModel.load(bundle)


@pytest.mark.parametrize(
    ("change", "file", "message"),
    [
        ({"image_size": 32}, "visual.onnx", "does not match model.json image_size 32"),
        ({"embedding_dim": 16}, "visual.onnx", "does not match model.json embedding_dim 16"),
    ],
)
def test_manifest_that_does_not_describe_the_graphs(
    bundle: Path, change: dict, file: str, message: str
) -> None:
    _rewrite_manifest(bundle, **change)
    with pytest.raises(BundleError, match=rf"{file}: .*{message}"):
        ClipModel.load(bundle)


def test_swapped_towers_are_caught(bundle: Path) -> None:
    shutil.copy(bundle / "visual.onnx", bundle / "swap")
    shutil.copy(bundle / "textual.onnx", bundle / "visual.onnx")
    shutil.copy(bundle / "swap", bundle / "textual.onnx")
    files = json.loads((bundle / "model.json").read_text())["files"]
    files["visual.onnx"], files["textual.onnx"] = files["textual.onnx"], files["visual.onnx"]
    _rewrite_manifest(bundle, files=files)
    with pytest.raises(BundleError, match=r"visual\.onnx: input shape"):
        ClipModel.load(bundle)


def _uploaded(bundle: Path) -> Any:
    """A moto S3 client whose bucket ``models`` holds ``bundle`` at ``bundles/tiny/``."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    for file in bundle.iterdir():
        s3.upload_file(str(file), "models", f"bundles/tiny/{file.name}")
    return s3


@mock_aws
def test_s3_bundle_is_downloaded_once_and_verified(bundle: Path, tmp_path: Path) -> None:
    s3 = _uploaded(bundle)
    cache = tmp_path / "cache"
    first = open_bundle("s3://models/bundles/tiny/", cache, s3)
    assert first.manifest.model_id == "tiny@1" and first.root.parent == cache
    calls: list[str] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda **kw: calls.append("get"))
    again = open_bundle("s3://models/bundles/tiny", cache, s3)
    assert again.root == first.root and calls == []  # served from the verified cache
    s3.put_object(
        Bucket="models", Key="bundles/bad/model.json", Body=(bundle / "model.json").read_bytes()
    )
    with pytest.raises(BundleError, match=r"s3://models/bundles/bad/visual\.onnx: cannot download"):
        open_bundle("s3://models/bundles/bad", cache, s3)


def test_lazy_visual_tower_is_built_and_checked_at_first_use(bundle: Path) -> None:
    model = ClipModel.load(bundle, lazy_visual=True)
    assert model.encode_text(["a red circle"]).shape == (1, 8)
    images = model.encode_images(np.zeros((2, 3, 16, 16), np.float32))
    assert images.shape == (2, 8)
    _rewrite_manifest(bundle, image_size=32)
    broken = ClipModel.load(bundle, lazy_visual=True)  # the text tower alone loads fine
    with pytest.raises(BundleError, match=r"visual\.onnx: input shape"):
        broken.encode_images(np.zeros((1, 3, 32, 32), np.float32))


def test_a_lazy_image_tower_file_is_verified_when_first_used(bundle: Path) -> None:
    with (bundle / "visual.onnx").open("ab") as handle:
        handle.write(b"tampered")
    model = ClipModel.load(bundle, lazy_visual=True)  # only the text tower's files are checked
    assert model.encode_text(["a red circle"]).shape == (1, 8)
    with pytest.raises(BundleError, match=r"visual\.onnx: sha256 mismatch"):
        model.encode_images(np.zeros((1, 3, 16, 16), np.float32))


@mock_aws
def test_an_s3_bundle_opened_for_text_fetches_its_image_tower_at_first_use(
    bundle: Path, tmp_path: Path
) -> None:
    s3 = _uploaded(bundle)
    cache = tmp_path / "cache"
    fetched: list[str] = []
    s3.meta.events.register(
        "before-parameter-build.s3.GetObject",
        lambda params, **kw: fetched.append(params["Key"][13:]),
    )
    model = ClipModel.load("s3://models/bundles/tiny/", 1, cache, s3, lazy_visual=True)
    assert sorted(fetched) == ["model.json", "textual.onnx", "tokenizer.json"]
    fetched.clear()
    assert model.encode_images(np.zeros((2, 3, 16, 16), np.float32)).shape == (2, 8)
    assert fetched == ["visual.onnx"]
    fetched.clear()
    again = open_bundle("s3://models/bundles/tiny", cache, s3)
    assert fetched == [] and again.root == model.bundle.root  # every file is cached now


@mock_aws
def test_a_download_that_does_not_match_its_sha256_is_refused_and_not_kept(
    bundle: Path, tmp_path: Path
) -> None:
    s3 = _uploaded(bundle)
    s3.put_object(Bucket="models", Key="bundles/tiny/visual.onnx", Body=b"not the graph")
    cache = tmp_path / "cache"
    with pytest.raises(BundleError, match=r"s3://models/bundles/tiny/visual\.onnx: sha256"):
        open_bundle("s3://models/bundles/tiny/", cache, s3)
    (root,) = cache.iterdir()
    assert [f.name for f in root.iterdir()] == ["model.json"]  # no part file left either
    with pytest.raises(BundleError, match=r"model\.json: lists no weights\.bin"):
        open_bundle("s3://models/bundles/tiny/", cache, s3, files=["weights.bin"])
