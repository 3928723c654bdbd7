"""The training job end to end on a tiny dataset: SageMaker's folders in, a bundle out.

Every run trains the committed demo model's recovered checkpoint on about a hundred pairs for an
epoch or two (seconds); the runs that produce a bundle also export it to ONNX and check its
parity through the runtime (about ten seconds more).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from imgsearch_training.job import TRAINING_FILE, run
from training_support import make_job

from imgsearch.model import ClipModel
from imgsearch.model.bundle import read_manifest, sha256_file

TEXTS = ["red circle on a black background", "blue star", "two small green crosses"]


def training(root: Path) -> dict:
    return json.loads((root / "model" / TRAINING_FILE).read_text())


def losses(root: Path) -> list[dict]:
    """Every figure of the history but its wall-clock seconds."""
    return [{k: v for k, v in h.items() if k != "seconds"} for h in training(root)["history"]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same job twice (same inputs, same seed), in two folders."""
    roots = []
    for name in ("first", "second"):
        root = make_job(tmp_path_factory.mktemp(name), hyper={"epochs": "2", "seed": "3"})
        assert run(root) == 0
        roots.append(root)
    return roots[0], roots[1]


@pytest.mark.slow
def test_a_trained_job_writes_a_bundle_with_its_lineage(trained: tuple[Path, Path]) -> None:
    root, _ = trained
    report = training(root)
    assert report["status"] == "trained", report["reason"]
    assert report["epochs_run"] == 2 and 1 <= report["best_epoch"] <= 2
    assert report["stopped"] in {"epochs", "early-stopping"}
    assert [h["epoch"] for h in report["history"]] == [0, 1, 2]
    assert report["pairs"]["train"]["positives"] > 50 and report["pairs"]["heldout"]["queries"]
    assert report["parity"]["visual"]["min_cosine"] >= 0.9999
    manifest = read_manifest(root / "model")
    assert manifest.model_id == "demo-clip@t1" == report["model"]
    assert manifest.extra["parent"] == "demo-clip@1"
    dataset = json.loads((root / "input/data/dataset/manifest.json").read_text())
    assert manifest.extra["dataset"]["sha256"] == dataset["sha256"] == report["dataset_sha256"]
    assert manifest.extra["training"]["history"] == report["history"]
    checkpoint = manifest.extra["checkpoint"]
    assert checkpoint["file"] not in manifest.files  # Lambda never downloads it
    assert sha256_file(root / "model" / checkpoint["file"]) == checkpoint["sha256"]
    assert "eval" not in manifest.extra  # the parent's figures are not the candidate's
    assert not (root / "model" / ".staging").exists()
    model = ClipModel.load(root / "model", threads=1)
    parent = ClipModel.load(root / "input/data/model", threads=1)
    assert not np.allclose(model.encode_text(TEXTS), parent.encode_text(TEXTS))


@pytest.mark.slow
def test_the_same_inputs_and_seed_give_the_same_model(trained: tuple[Path, Path]) -> None:
    first, second = trained
    assert losses(first) == losses(second)
    a, b = read_manifest(first / "model"), read_manifest(second / "model")
    assert a.extra["checkpoint"]["sha256"] == b.extra["checkpoint"]["sha256"]
    pixels = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    one, two = (
        ClipModel.load(first / "model", threads=1),
        ClipModel.load(second / "model", threads=1),
    )
    assert np.array_equal(one.encode_text(TEXTS), two.encode_text(TEXTS))
    assert np.array_equal(one.encode_images(pixels), two.encode_images(pixels))


def test_training_stops_early_and_keeps_the_best_epoch(tmp_path: Path) -> None:
    # The held-out judgments reverse some training ones: the more the model learns, the worse
    # the held-out loss, so the first epoch stays the best.
    hyper = {"epochs": "6", "patience": "2", "min_cosine": "2"}
    root = make_job(tmp_path, hyper=hyper, wrong_heldout=True)
    assert run(root) == 0
    report = training(root)
    heldout = [h["heldout_loss"] for h in report["history"]]
    assert report["stopped"] == "early-stopping", heldout
    assert report["epochs_run"] == report["best_epoch"] + 2 < 6
    assert min(heldout[1:]) == heldout[report["best_epoch"]]
    # min_cosine 2 cannot be met: the exported bundle fails parity and is not written
    assert report["status"] == "parity-failed" and "parity check failed" in report["reason"]
    assert sorted(p.name for p in (root / "model").iterdir()) == [TRAINING_FILE]


def test_an_absurd_learning_rate_diverges_and_leaves_no_bundle(tmp_path: Path) -> None:
    root = make_job(tmp_path, hyper={"epochs": "3", "learning_rate": "50"})
    assert run(root) == 0  # not the job's failure: Evaluate reports it
    report = training(root)
    assert report["status"] == "diverged", report
    assert report["reason"]
    assert sorted(p.name for p in (root / "model").iterdir()) == [TRAINING_FILE]
    assert not (root / "output" / "failure").exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "input/data/dataset/train.jsonl").write_text("{}\n"), "sha256"),
        (lambda root: (root / "input/data/dataset/manifest.json").unlink(), "manifest.json"),
        (lambda root: (root / "input/data/model/checkpoint.pt").write_bytes(b"x"), "sha256"),
        (
            lambda root: (root / "input/config/hyperparameters.json").write_text(
                '{"epochs": "many"}'
            ),
            "epochs",
        ),
        (
            lambda root: (root / "input/config/hyperparameters.json").write_text(
                '{"parent": "demo-clip@7"}'
            ),
            "demo-clip@7",
        ),
    ],
    ids=["dataset-hash", "no-manifest", "checkpoint-hash", "bad-hyperparameter", "wrong-parent"],
)
def test_a_broken_channel_writes_the_failure_file(tmp_path: Path, damage, message: str) -> None:
    root = make_job(tmp_path, images=40)
    damage(root)
    assert run(root) == 1
    failure = (root / "output" / "failure").read_text()
    assert message in failure
    assert not (root / "model" / TRAINING_FILE).exists()
