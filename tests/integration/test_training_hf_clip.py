"""Retraining an exported Hugging Face CLIP: the exporter's checkpoint in, a new bundle out.

A tiny, randomly initialised ``CLIPModel`` (``tools/random_clip.py``; no pretrained weights can
be downloaded here) is exported with ``tools/export_clip.py``, which also writes its training
checkpoint; the training job then fine-tunes it from that checkpoint exactly as it does the demo
model: the same folders, the same loss, the same exporter and parity check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from imgsearch_training.checkpoint import load_checkpoint
from imgsearch_training.job import TRAINING_FILE, run
from training_support import DEMO, make_job

from imgsearch.model import ClipModel
from imgsearch.model.bundle import read_manifest, sha256_file

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import export_clip  # noqa: E402
import random_clip  # noqa: E402

pytestmark = pytest.mark.slow

TEXTS = ["red circle on a black background", "blue star", "two small green crosses"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("hf")
    random_clip.write_random_clip(work / "source", random_clip.PRESETS["tiny"], seed=5)
    argv = [str(work / "source"), str(work / "bundle"), "--name", "tiny-clip", "--version", "1"]
    assert export_clip.main(argv) == 0
    return work


@pytest.fixture(scope="module")
def retrained(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    hyper = {"name": "tiny-clip", "version": "2", "parent": "tiny-clip@1", "epochs": "3"}
    root = make_job(tmp_path_factory.mktemp("job"), hyper=hyper, model=exported / "bundle")
    assert run(root) == 0, (root / "output" / "failure").read_text()
    return root


def test_the_exporter_writes_the_weights_it_exported(exported: Path) -> None:
    from transformers import CLIPModel

    manifest = read_manifest(exported / "bundle")
    entry = manifest.extra["checkpoint"]
    assert entry["format"] == "hf-clip" and entry["file"] not in manifest.files
    assert entry["sha256"] == sha256_file(exported / "bundle" / entry["file"])
    source = CLIPModel.from_pretrained(exported / "source").state_dict()
    loaded = load_checkpoint(exported / "bundle", manifest).module.state_dict()
    assert loaded.keys() == source.keys()
    assert all(torch.equal(loaded[name], source[name]) for name in source)


def test_the_exporter_can_leave_the_checkpoint_out(exported: Path, tmp_path: Path) -> None:
    argv = [str(exported / "source"), str(tmp_path / "bundle"), "--no-checkpoint"]
    assert export_clip.main(argv) == 0
    assert "checkpoint" not in read_manifest(tmp_path / "bundle").extra
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == [
        "model.json",
        "textual.onnx",
        "tokenizer.json",
        "visual.onnx",
    ]


@pytest.mark.parametrize("bundle", ["hf", "demo"])
def test_the_split_image_tower_computes_what_the_tower_computes(
    exported: Path, bundle: str
) -> None:
    root = exported / "bundle" if bundle == "hf" else DEMO
    manifest = read_manifest(root)
    trainable = load_checkpoint(root, manifest)
    trainable.module.eval()
    pixels = torch.randn(3, 3, manifest.image_size, manifest.image_size)
    stages = 2 if bundle == "hf" else 4
    with torch.no_grad():
        whole = trainable.visual(pixels)
        for frozen in range(stages + 1):
            split = trainable.split_visual(frozen)
            torch.testing.assert_close(split.head(split.stem(pixels)), whole)
            assert bool(split.frozen) == (frozen > 0)
    with pytest.raises(ValueError, match=f"frozen_stages must be in \\[0, {stages}\\]"):
        trainable.split_visual(stages + 1)


def test_a_job_retrains_the_exported_clip_from_its_checkpoint(
    exported: Path, retrained: Path
) -> None:
    report = json.loads((retrained / "model" / TRAINING_FILE).read_text())
    assert report["status"] == "trained", report["reason"]
    history = report["history"]
    assert history[report["best_epoch"]]["train_loss"] < history[0]["train_loss"]
    assert report["parity"]["visual"]["min_cosine"] >= 0.999
    assert report["parity"]["textual_padded_batch"]["min_cosine"] >= 0.999

    manifest = read_manifest(retrained / "model")
    assert manifest.model_id == "tiny-clip@2" and manifest.extra["parent"] == "tiny-clip@1"
    assert manifest.extra["training"]["format"] == "hf-clip"
    assert manifest.extra["checkpoint"]["format"] == "hf-clip"
    parent = ClipModel.load(exported / "bundle", threads=1)
    candidate = ClipModel.load(retrained / "model", threads=1)
    moved = (parent.encode_text(TEXTS) * candidate.encode_text(TEXTS)).sum(axis=1)
    assert moved.max() < 0.9999  # every text embeds differently: the weights trained

    # The candidate is retrainable in turn, from the weights it serves.
    again = load_checkpoint(retrained / "model", manifest)
    pixels = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        reference = again.visual(torch.from_numpy(pixels)).numpy()
    served = candidate.encode_images(pixels)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    assert (reference * served).sum(axis=1).min() >= 0.999


def test_a_parent_with_fewer_layers_than_frozen_fails_the_job(
    exported: Path, tmp_path: Path
) -> None:
    hyper = {"name": "tiny-clip", "parent": "tiny-clip@1", "frozen_stages": "3"}
    root = make_job(tmp_path, hyper=hyper, model=exported / "bundle")
    assert run(root) == 1
    assert "frozen_stages must be in [0, 2]" in (root / "output" / "failure").read_text()
