"""The demo bundle's checkpoint: the torch weights it was exported from, recovered and verified.

``models/demo-clip/checkpoint.pt`` was rebuilt from the ONNX towers by ``tools/demo_checkpoint.py``
(its provenance in the model card); here torch with those weights must compute what the bundle
computes through the runtime, and the tool must reproduce the committed file byte for byte.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from imgsearch_devkit.demo.scenes import generate
from imgsearch_training.bundle import cosine_figures
from imgsearch_training.checkpoint import CheckpointError, load_checkpoint
from imgsearch_training.export import check_parity
from tokenizers import Tokenizer

from imgsearch.model import ClipModel, preprocess
from imgsearch.model.bundle import read_manifest, sha256_file

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "models" / "demo-clip"
sys.path.insert(0, str(REPO / "tools"))

import demo_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def runtime() -> ClipModel:
    return ClipModel.load(DEMO, threads=2)


def test_the_bundle_declares_its_checkpoint_outside_files(runtime: ClipModel) -> None:
    entry = runtime.manifest.extra["checkpoint"]
    assert runtime.model_id == "demo-clip@1"
    assert set(runtime.manifest.files) == {"visual.onnx", "textual.onnx", "tokenizer.json"}
    assert entry["file"] == "checkpoint.pt" and entry["format"] == "demo-clip"
    assert sha256_file(DEMO / entry["file"]) == entry["sha256"]


def test_the_recovered_weights_compute_what_the_bundle_computes(runtime: ClipModel) -> None:
    model = load_checkpoint(DEMO, runtime.manifest)
    figures = check_parity(model, runtime, Tokenizer.from_file(str(DEMO / "tokenizer.json")))
    assert figures["visual"]["min_cosine"] >= 0.9999
    assert figures["textual_padded_batch"]["min_cosine"] >= 0.9999
    # and on real scenes (JPEG, the runtime's preprocessing), not only on random pixels
    blobs = []
    for image, _ in generate(16, seed=99):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        blobs.append(buffer.getvalue())
    pixels = np.stack([preprocess(b, runtime.manifest) for b in blobs])
    with torch.no_grad():
        torch_images = model.visual(torch.from_numpy(pixels)).numpy()
    assert cosine_figures(torch_images, runtime.encode_images(pixels))["min_cosine"] >= 0.9999


def test_the_tool_reproduces_the_committed_checkpoint(tmp_path: Path) -> None:
    bundle = tmp_path / "demo-clip"
    shutil.copytree(DEMO, bundle)
    committed = json.loads((DEMO / "model.json").read_text())
    fields = {k: v for k, v in committed.items() if k != "checkpoint"}
    (bundle / "model.json").write_text(json.dumps(fields, indent=2) + "\n")
    (bundle / "checkpoint.pt").unlink()
    assert demo_checkpoint.main([str(bundle), "--threads", "2"]) == 0
    assert (bundle / "checkpoint.pt").read_bytes() == (DEMO / "checkpoint.pt").read_bytes()
    assert (bundle / "model.json").read_text() == (DEMO / "model.json").read_text()


def _with_entry(tmp_path: Path, **changes: object) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(DEMO, bundle)
    fields = json.loads((bundle / "model.json").read_text())
    fields["checkpoint"] = {**fields["checkpoint"], **changes}
    if not changes:
        del fields["checkpoint"]
    (bundle / "model.json").write_text(json.dumps(fields))
    return bundle


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "has no checkpoint"),
        ({"sha256": "0" * 64}, "sha256 mismatch"),
        ({"format": "open-clip"}, "not supported"),
        ({"format": "hf-clip"}, "model_type None is not 'clip'"),
        ({"file": "../checkpoint.pt"}, "is not a name"),
        (
            {
                "architecture": {
                    **json.loads((DEMO / "model.json").read_text())["checkpoint"]["architecture"],
                    "width": 64,
                }
            },
            "does not fit",
        ),
    ],
    ids=["none", "hash", "format", "other-format", "path", "architecture"],
)
def test_a_bundle_that_cannot_be_retrained_says_why(
    tmp_path: Path, changes: dict, message: str
) -> None:
    bundle = _with_entry(tmp_path, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(bundle, read_manifest(bundle))
