"""The training job's inputs: the dataset channel's contract, hyperparameters, probe texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from imgsearch_training.data import DatasetError, files_sha256, read_dataset
from imgsearch_training.finetune import Settings, interpolate
from imgsearch_training.job import Hyperparameters, probe_texts
from tokenizers import Tokenizer

from imgsearch.retrain.dataset import Dataset as ProducerDataset
from imgsearch.retrain.dataset import Example as ProducerExample

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo-clip"


def producer_dataset() -> ProducerDataset:
    return ProducerDataset(
        train=[
            ProducerExample(
                "red circle on a black background",
                ("images/demo/001 one small red circle.jpg",),
                ("images/demo/002 two large red circles.jpg",),
                3.0,
            )
        ],
        heldout=[ProducerExample("blue star", ("images/x y.png",), (), 1.0, "golden")],
    )


def write(folder: Path, dataset: ProducerDataset, **manifest: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in dataset.files().items():
        (folder / name).write_bytes(body)
    fields = {"schema_version": "1.0", "sha256": dataset.sha256(), "created_at": "x", **manifest}
    (folder / "manifest.json").write_text(json.dumps(fields))
    return folder


def test_the_digest_is_the_producers() -> None:
    dataset = producer_dataset()
    assert files_sha256(dataset.files()) == dataset.sha256()


def test_the_producers_files_read_back_as_written(tmp_path: Path) -> None:
    folder = write(tmp_path, producer_dataset(), train_queries=1, unknown={"ignored": True})
    dataset = read_dataset(folder)
    assert dataset.sha256 == producer_dataset().sha256()
    (example,) = dataset.train
    assert example.query == "red circle on a black background"
    assert example.positives == ("images/demo/001 one small red circle.jpg",)  # spaces kept
    assert example.negatives == ("images/demo/002 two large red circles.jpg",)
    assert example.weight == 3.0 and example.source == "feedback"
    assert dataset.heldout[0].source == "golden" and dataset.heldout[0].negatives == ()


def test_files_that_are_not_the_manifests_are_refused(tmp_path: Path) -> None:
    folder = write(tmp_path, producer_dataset())
    (folder / "heldout.jsonl").write_text("")
    with pytest.raises(DatasetError, match="sha256"):
        read_dataset(folder)


def test_a_malformed_line_names_its_file_and_line(tmp_path: Path) -> None:
    files = {"train.jsonl": b'{"query": "a"}\n', "heldout.jsonl": b""}
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
    (tmp_path / "manifest.json").write_text(json.dumps({"sha256": files_sha256(files)}))
    with pytest.raises(DatasetError, match=r"train\.jsonl line 1"):
        read_dataset(tmp_path)


def test_hyperparameters_arrive_as_strings() -> None:
    hyper = Hyperparameters.from_strings(
        {
            "epochs": "3",
            "learning_rate": "0.0005",
            "name": '"demo-clip"',  # the SageMaker SDK JSON-quotes strings
            "seed": "7.0",
            "sagemaker_program": "train",  # SageMaker's own: ignored
        }
    )
    assert (hyper.epochs, hyper.learning_rate, hyper.name, hyper.seed) == (3, 5e-4, "demo-clip", 7)
    assert Hyperparameters.from_strings({}).settings() == Settings(threads=hyper.settings().threads)
    with pytest.raises(ValueError, match="patience"):
        Hyperparameters.from_strings({"patience": "soon"})


def test_the_device_is_the_gpu_when_there_is_one_and_a_bad_one_is_refused() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert Hyperparameters.from_strings({}).settings().device == expected
    assert Hyperparameters.from_strings({"device": "cpu"}).settings().device == "cpu"
    with pytest.raises(ValueError, match="device='tpu': cpu, cuda or auto"):
        Hyperparameters.from_strings({"device": "tpu"}).settings()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no GPU"):
            Hyperparameters.from_strings({"device": "cuda"}).settings()


def test_probe_texts_are_short_phrases_of_the_vocabulary() -> None:
    tokenizer = Tokenizer.from_file(str(DEMO / "tokenizer.json"))
    probes = probe_texts(tokenizer, 20, seed=1)
    assert probes == probe_texts(tokenizer, 20, seed=1)
    assert all(1 <= len(p.split()) <= 3 for p in probes)
    assert all("[UNK]" not in tokenizer.encode(p).tokens for p in probes)


def test_the_kept_weights_lie_between_the_parent_and_the_best_epoch() -> None:
    parent = {"w": torch.zeros(3), "steps": torch.tensor(7)}
    tuned = {"w": torch.tensor([1.0, -2.0, 5.0]), "steps": torch.tensor(9)}
    kept = interpolate(parent, tuned, 0.4)
    assert torch.allclose(kept["w"], torch.tensor([0.4, -0.8, 2.0]))
    assert int(kept["steps"]) == 9  # integer buffers are the tuned model's, not averaged
    assert interpolate(parent, tuned, 1.0)["w"].equal(tuned["w"])
