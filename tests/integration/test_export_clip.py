"""The checkpoint exporter and the int8 quantiser, end to end on randomly initialised CLIPs.

A ViT-B/32-shaped checkpoint is exported once (the shape the product serves); int8, the failure
paths and the legacy-config path use a tiny CLIP so that they stay quick (benchmarks/embed.py
quantises the ViT-B/32 one). Every bundle is loaded with
the real runtime (``ClipModel``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from imgsearch_training.bundle import write_manifest
from PIL import Image

from imgsearch.model import ClipModel
from imgsearch.model.bundle import sha256_file

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import export_clip  # noqa: E402
import quantize_bundle  # noqa: E402
import random_clip  # noqa: E402

pytestmark = pytest.mark.slow

SHORT, LONG = "a red car", "two small dogs on a beach at night with a big yellow moon"


@pytest.fixture(scope="module")
def b32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("b32")
    random_clip.write_random_clip(work / "checkpoint", random_clip.PRESETS["vit-b-32"])
    argv = [
        str(work / "checkpoint"),
        str(work / "bundle"),
        "--name",
        "clip-b32",
        "--version",
        "7",
        "--samples",
        "4",
        "--no-checkpoint",  # 600 MB of weights; test_training_hf_clip.py tests the checkpoint
    ]
    assert export_clip.main(argv) == 0
    return work


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("tiny")
    random_clip.write_random_clip(work / "checkpoint", random_clip.PRESETS["tiny"])
    assert export_clip.main([str(work / "checkpoint"), str(work / "bundle"), "--int8"]) == 0
    return work


def end_token_id() -> int:
    return random_clip.build_tokenizer().token_to_id(random_clip.END)


def assert_padding_invariant(model: ClipModel, min_cosine: float | None = None) -> None:
    """A text embeds alike alone and padded in a batch: equal, or at least ``min_cosine``."""
    ids = model.tokenizer([SHORT, LONG])
    assert ids[0, -1] == model.manifest.pad_token_id  # the short text really is padded
    alone = np.concatenate([model.encode_text([SHORT]), model.encode_text([LONG])])
    together = model.encode_text([SHORT, LONG])
    if min_cosine is None:
        np.testing.assert_allclose(together, alone, atol=2e-5)
    else:
        assert (together * alone).sum(axis=1).min() >= min_cosine


def test_b32_bundle_loads_with_its_manifest_and_parity(b32: Path) -> None:
    model = ClipModel.load(b32 / "bundle", threads=2)
    manifest = model.manifest
    assert model.model_id == "clip-b32@7"
    assert (manifest.embedding_dim, manifest.image_size, manifest.resize) == (512, 224, 224)
    assert manifest.context_length == 77
    assert manifest.pad_token_id == end_token_id()
    assert manifest.interpolation == "bicubic"
    parity = manifest.extra["parity"]
    assert parity["min_cosine_required"] == 0.999
    for check, rows in (("visual", 4), ("textual_padded_batch", 8)):  # --samples 4
        assert parity[check]["rows"] == rows
        assert parity[check]["min_cosine"] >= 0.999, parity

    vectors = model.encode_images(np.zeros((3, 3, 224, 224), dtype=np.float32))
    assert vectors.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_b32_text_embedding_ignores_batch_padding(b32: Path) -> None:
    assert_padding_invariant(ClipModel.load(b32 / "bundle", threads=2))


def test_int8_bundle_loads_with_parity_against_fp32(tiny: Path) -> None:
    fp32 = ClipModel.load(tiny / "bundle").manifest
    model = ClipModel.load(tiny / "bundle-int8", threads=2)
    manifest = model.manifest
    assert model.model_id == f"{fp32.model_id}-int8"
    assert manifest.files["tokenizer.json"] == fp32.files["tokenizer.json"]
    for name in ("visual.onnx", "textual.onnx"):
        assert manifest.files[name] != fp32.files[name]
        int8_size = (tiny / "bundle-int8" / name).stat().st_size
        # a tiny model has proportionally more float parts (patch Conv, norms) than ViT-B/32's
        assert int8_size < 0.7 * (tiny / "bundle" / name).stat().st_size
    assert manifest.extra["quantization"]["source_model_id"] == fp32.model_id
    # the fp32 training checkpoint goes with it, so the int8 bundle stays retrainable
    checkpoint = manifest.extra["checkpoint"]
    assert checkpoint == fp32.extra["checkpoint"]
    assert sha256_file(tiny / "bundle-int8" / checkpoint["file"]) == checkpoint["sha256"]
    parity = manifest.extra["parity"]
    assert parity["reference"] == fp32.model_id
    for check in ("visual", "textual"):
        assert parity[check]["min_cosine"] >= quantize_bundle.DEFAULT_MIN_COSINE, parity
    # dynamic quantisation scales activations per tensor, i.e. over the whole batch: a text's
    # int8 embedding depends a little on its batch companions, so only near-equality holds
    assert_padding_invariant(model, min_cosine=quantize_bundle.DEFAULT_MIN_COSINE)


def test_legacy_eos_config_pools_at_the_end_token(tmp_path: Path) -> None:
    # Configs from before transformers PR #24773 say eos_token_id 2: pooling at argmax(ids).
    checkpoint = random_clip.write_random_clip(tmp_path / "checkpoint", random_clip.PRESETS["tiny"])
    config = json.loads((checkpoint / "config.json").read_text())
    config["text_config"]["eos_token_id"] = 2
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert export_clip.main([str(checkpoint), str(tmp_path / "bundle")]) == 0
    model = ClipModel.load(tmp_path / "bundle")
    assert model.manifest.pad_token_id == end_token_id()
    assert_padding_invariant(model)


def test_impossible_tolerance_fails_and_leaves_nothing(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = subprocess.run(
        [
            sys.executable,
            str(TOOLS / "export_clip.py"),
            str(tiny / "checkpoint"),
            str(out),
            "--min-cosine",
            "1.01",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "export_clip: error: parity check failed, nothing written" in result.stderr
    assert "visual: min cosine" in result.stderr
    assert list(tmp_path.iterdir()) == []  # neither the bundle nor a staging folder


def test_existing_output_is_kept(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (tiny / "bundle" / "model.json").read_bytes()
    assert export_clip.main([str(tiny / "checkpoint"), str(tiny / "bundle")]) == 2
    assert "already exists (pass --force" in capsys.readouterr().err
    assert (tiny / "bundle" / "model.json").read_bytes() == before


def test_checkpoint_without_tokenizer_is_refused(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = shutil.copytree(tiny / "checkpoint", tmp_path / "checkpoint")
    (checkpoint / "tokenizer.json").unlink()
    assert export_clip.main([str(checkpoint), str(tmp_path / "bundle")]) == 2
    assert "tokenizer.json not found" in capsys.readouterr().err
    assert not (tmp_path / "bundle").exists()


def test_quantiser_refuses_a_tampered_bundle(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = shutil.copytree(tiny / "bundle", tmp_path / "bundle")
    with (bundle / "visual.onnx").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00" * 64)
    assert quantize_bundle.main([str(bundle), str(tmp_path / "int8")]) == 2
    err = capsys.readouterr().err
    assert "quantize_bundle: error: source bundle" in err
    assert "sha256 mismatch" in err
    assert not (tmp_path / "int8").exists()


def test_quantiser_refuses_an_onnx_file_that_is_not_a_model(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = shutil.copytree(tiny / "bundle", tmp_path / "bundle")
    (bundle / "textual.onnx").write_bytes(b"not an onnx graph")
    manifest = json.loads((bundle / "model.json").read_text())
    write_manifest(bundle, manifest)  # hashes match: only the content is wrong
    assert quantize_bundle.main([str(bundle), str(tmp_path / "int8")]) == 2
    assert "onnxruntime cannot load it" in capsys.readouterr().err
    assert not (tmp_path / "int8").exists()


def test_quantiser_compares_on_real_images_when_given(tiny: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        gradient = np.linspace(0, 255, 96 * 80 * 3).reshape(80, 96, 3)
        noisy = np.clip(gradient + rng.normal(0, 30, gradient.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(images / f"{i}.jpg")
    out = tmp_path / "int8"
    argv = [str(tiny / "bundle"), str(out), "--images", str(images), "--suffix=-q8"]
    assert quantize_bundle.main(argv) == 0
    manifest = ClipModel.load(out).manifest
    assert manifest.version == "1-q8"
    figures = manifest.extra["parity"]["visual_images"]
    assert figures["rows"] == 3
    assert figures["min_cosine"] >= quantize_bundle.DEFAULT_MIN_COSINE
