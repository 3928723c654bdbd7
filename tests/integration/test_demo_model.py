"""The committed demo bundle: loads, pads exactly, and really retrieves held-out scenes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from imgsearch_devkit.cli import main as cli_main
from imgsearch_devkit.demo.model_eval import EVAL_SEED, evaluate_model
from imgsearch_devkit.demo.scenes import generate

from imgsearch.model import ClipModel, embed_images

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "demo-clip"


@pytest.fixture(scope="module")
def model() -> ClipModel:
    return ClipModel.load(BUNDLE, threads=2)


def test_manifest_matches_the_towers(model: ClipModel) -> None:
    assert model.model_id == "demo-clip@1"
    assert model.manifest.pad_token_id == model.tokenizer._tokenizer.token_to_id("<|endoftext|>")
    assert model.manifest.license.startswith("Apache-2.0")
    size = sum((BUNDLE / name).stat().st_size for name in model.manifest.files)
    assert size < 25 * 1024 * 1024


def test_padding_leaves_text_embeddings_unchanged(model: ClipModel) -> None:
    texts = [
        "red circle",
        "a photo of three small green stars on a striped beige background",
        "two blue squares",
        "an orange cross at the top",
    ]
    batch = model.encode_text(texts)
    ids = model.tokenizer(texts)
    assert len({int((row != model.manifest.pad_token_id).sum()) for row in ids}) > 1  # padded
    for text, row in zip(texts, batch, strict=True):
        alone = model.encode_text([text])[0]
        assert float(alone @ row) > 0.9999, text


def test_unknown_words_and_overlong_text_still_embed(model: ClipModel) -> None:
    vectors = model.encode_text(["zebra", "red circle " * 100])
    assert vectors.shape == (2, model.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_text_finds_the_right_image(model: ClipModel) -> None:
    pairs = generate(40, seed=EVAL_SEED + 1)
    blobs = []
    for image, _ in pairs:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)  # JPEG: the lossy upload path works too
        blobs.append(buffer.getvalue())
    images = np.stack(embed_images(model, blobs))
    texts = [f"{s.colour} {s.shape}" for _, s in pairs]
    best = (model.encode_text(texts) @ images.T).argmax(axis=1)
    hits = sum(pairs[i][1].kind == pairs[j][1].kind for i, j in enumerate(best))
    assert hits >= 36, f"{hits}/40 queries found an image of their kind first"


def test_small_held_out_eval(model: ClipModel) -> None:
    # 240 balanced images = 6 per kind, so precision@5 can reach 1.
    report = evaluate_model(model, images=240, k=5)
    assert report["min_relevant_per_query"] >= 5
    assert report["precision_at_5"] >= 0.95, report
    assert report["mrr"] >= 0.95, report


def test_cli_eval_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["model", "eval", str(BUNDLE), "--images", "80", "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert '"precision_at_2"' in out and '"mrr"' in out
    assert cli_main(["model", "eval", str(BUNDLE), "--images", "10"]) == 2
