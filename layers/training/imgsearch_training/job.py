"""The training job: what ``docker run <training image> train`` runs on SageMaker.

Paths follow SageMaker's layout under ``root`` (``/opt/ml`` in the container; the local stack
and the tests pass a folder of their own and call ``run`` in-process)::

    input/config/hyperparameters.json   every value a string: name, version, parent, seed, ...
    input/data/dataset/                 manifest.json, train.jsonl, heldout.jsonl
    input/data/images/<key>             every image the examples name, at its S3 key
    input/data/model/                   the parent bundle, its checkpoint included
    model/                              the new bundle (only when trained) and training.json
    output/failure                      why the job failed (unexpected errors only)

``model/training.json`` always says how the run went: ``status`` is ``trained``, ``diverged``
or ``parity-failed`` (the last two leave no bundle, and the job still exits 0: the workflow's
Evaluate step turns them into an explicit failure). An unexpected error (a missing channel, a
bundle without a checkpoint, a dataset that does not match its manifest) writes its message to
``output/failure`` and exits 1, as SageMaker expects::

    from imgsearch_training.job import run

    assert run(Path("/tmp/job")) == 0
    json.loads(Path("/tmp/job/model/training.json").read_text())["status"]   # "trained"
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from imgsearch.model import Bundle, ClipModel, open_bundle
from imgsearch.model.bundle import TOKENIZER, ModelManifest
from imgsearch.model.tokenizer import TextTokenizer
from imgsearch_training.bundle import ParityError, write_manifest
from imgsearch_training.checkpoint import load_checkpoint
from imgsearch_training.data import Pairs, load_pairs, read_dataset
from imgsearch_training.export import check_parity, export, tokenize
from imgsearch_training.finetune import Result, Settings, deterministic, finetune
from imgsearch_training.trainable import Trainable

logger = logging.getLogger("imgsearch_training")

DEFAULT_ROOT = Path("/opt/ml")
TRAINING_FILE = "training.json"
PARENT_ONLY = (
    "training",
    "parity",
    "eval",
    "checkpoint",
    "export",
    "quantization",
    "dataset",
    "parent",
)
"""Manifest fields that describe the parent's own making, not the candidate's (an int8
parent's candidate is fp32: the job trains and exports its checkpoint's weights)."""


@dataclass(frozen=True)
class Hyperparameters:
    """``hyperparameters.json``: SageMaker passes every value as a string."""

    name: str = ""
    """The candidate's model name; empty: the parent's."""
    version: str = ""
    """The candidate's version; empty: ``<parent version>-<dataset sha256[:8]>``."""
    parent: str = ""
    """The parent's model id, checked against the model channel's bundle when given."""
    seed: int = 0
    epochs: int = Settings.epochs
    max_seconds: float = Settings.max_seconds
    patience: int = Settings.patience
    learning_rate: float = Settings.learning_rate
    batch_size: int = Settings.batch_size
    negatives: int = Settings.negatives
    anchor: float = Settings.anchor
    interpolate: float = Settings.interpolate
    frozen_stages: int = Settings.frozen_stages
    warmup_epochs: float = Settings.warmup_epochs
    probes: int = 64
    """Probe texts for the anchor (random phrases of the parent's vocabulary)."""
    threads: int = 0
    """Torch threads; 0: the machine's cores, at most 2 (the demo model gains nothing more)."""
    device: str = "auto"
    """``cpu``, ``cuda``, or ``auto``: the GPU when the instance has one (a full-size CLIP)."""
    divergence_factor: float = Settings.divergence_factor
    min_cosine: float = 0.0
    """The parity check's floor (torch against the exported bundle through the runtime); 0: the
    checkpoint format's own (demo-clip 0.9999, hf-clip 0.999)."""

    @classmethod
    def from_strings(cls, values: dict[str, Any]) -> Hyperparameters:
        known = {f.name: f for f in fields(cls)}
        parsed: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in known:
                logger.info("ignoring hyperparameter %s", name)  # e.g. SageMaker's own
                continue
            text = str(raw)
            if len(text) >= 2 and text[0] == text[-1] == '"':  # the SageMaker SDK's JSON quoting
                text = json.loads(text)
            kind = type(getattr(cls, name))
            try:
                parsed[name] = kind(text) if kind is not int else int(float(text))
            except ValueError as exc:
                raise ValueError(f"hyperparameter {name}={raw!r} is not a {kind.__name__}") from exc
        return cls(**parsed)

    def torch_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"hyperparameter device={self.device!r}: cpu, cuda or auto")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("hyperparameter device=cuda, but torch sees no GPU here")
        return self.device

    def settings(self) -> Settings:
        threads = self.threads or min(2, os.cpu_count() or 1)
        return Settings(
            seed=self.seed,
            epochs=self.epochs,
            max_seconds=self.max_seconds,
            patience=self.patience,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            negatives=self.negatives,
            anchor=self.anchor,
            interpolate=self.interpolate,
            frozen_stages=self.frozen_stages,
            warmup_epochs=self.warmup_epochs,
            threads=threads,
            device=self.torch_device(),
            divergence_factor=self.divergence_factor,
        )


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def hyperparameters(self) -> Path:
        return self.root / "input" / "config" / "hyperparameters.json"

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def failure(self) -> Path:
        return self.root / "output" / "failure"


def read_hyperparameters(path: Path) -> Hyperparameters:
    if not path.is_file():
        return Hyperparameters()
    values = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return Hyperparameters.from_strings(values)


def probe_texts(tokenizer: Tokenizer, count: int, seed: int) -> list[str]:
    """``count`` phrases of one to three words of the vocabulary (the anchor's probe texts)."""
    special = set(tokenizer.get_added_tokens_decoder())
    words = sorted(
        {
            word
            for token_id in range(tokenizer.get_vocab_size())
            if token_id not in special and (word := tokenizer.decode([token_id]).strip()).isalpha()
        }
    )
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 4)))) for _ in range(count)]


def candidate_fields(
    parent: ModelManifest, hyper: Hyperparameters, dataset_sha256: str
) -> dict[str, Any]:
    """The candidate's manifest before training figures: the parent's, renamed."""
    data = {k: v for k, v in parent.to_dict().items() if k not in PARENT_ONLY}
    data["name"] = hyper.name or parent.name
    data["version"] = hyper.version or f"{parent.version}-{dataset_sha256[:8]}"
    data["source"] = (
        f"imgsearch-train: fine-tuned from {parent.model_id} on dataset {dataset_sha256}"
    )
    data["parent"] = parent.model_id
    return data


def training_figures(
    result: Result, pairs: Pairs, settings: Settings, model: Trainable
) -> dict[str, Any]:
    trained_pairs = sum(len(q.positives) for q in pairs.train) * max(result.epochs_run, 1)
    return {
        "format": model.format,
        "settings": asdict(settings),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped": result.stopped,
        "history": result.history,
        "seconds": result.seconds,
        "seconds_per_1000_pairs": round(1000 * result.seconds / trained_pairs, 3),
        "torch": torch.__version__,
    }


def write_bundle(
    model: Trainable,
    fields_: dict[str, Any],
    parent: Bundle,
    out: Path,
    min_cosine: float,
) -> tuple[ModelManifest, dict[str, Any]]:
    """Export, check parity, and only then move the bundle's files into ``out``.

    The staging folder is inside ``out`` so that the final moves are renames on one file
    system (``/opt/ml/model`` may be a mount of its own)."""
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        shutil.copyfile(parent.path(TOKENIZER), staging / TOKENIZER)
        text_tokenizer = TextTokenizer.from_file(
            staging / TOKENIZER, parent.manifest.context_length, parent.manifest.pad_token_id
        )
        example = tokenize(
            text_tokenizer, ["a red circle", "two small blue stars on a grey background"]
        )
        export(model, staging, parent.manifest.image_size, parent.manifest.context_length, example)
        fields_["checkpoint"] = model.write_checkpoint(staging)
        write_manifest(staging, fields_)
        runtime = ClipModel.load(staging, threads=torch.get_num_threads())
        parity = check_parity(
            model, runtime, Tokenizer.from_file(str(staging / TOKENIZER)), min_cosine
        )
        fields_["parity"] = {"reference": f"PyTorch {torch.__version__} fp32", **parity}
        written = write_manifest(staging, fields_)
        for file in staging.iterdir():
            file.replace(out / file.name)
        return written, parity
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def train(paths: Paths) -> dict[str, Any]:
    """The whole job; returns what it wrote to ``training.json``."""
    started = time.perf_counter()
    hyper = read_hyperparameters(paths.hyperparameters)
    settings = hyper.settings()
    parent = open_bundle(paths.channel("model"))
    if hyper.parent and hyper.parent != parent.manifest.model_id:
        raise ValueError(
            f"the model channel holds {parent.manifest.model_id}, not the parent {hyper.parent}"
        )
    model = load_checkpoint(parent.root, parent.manifest)
    dataset = read_dataset(paths.channel("dataset"))
    pairs = load_pairs(dataset, paths.channel("images"), parent.manifest)
    logger.info(
        "parent %s; dataset %s: %s", parent.manifest.model_id, dataset.sha256[:12], pairs.counts()
    )
    tokenizer = Tokenizer.from_file(str(parent.path(TOKENIZER)))
    text_tokenizer = TextTokenizer.from_file(
        parent.path(TOKENIZER), parent.manifest.context_length, parent.manifest.pad_token_id
    )
    result = finetune(
        model,
        pairs,
        text_tokenizer,
        settings,
        probes=probe_texts(tokenizer, hyper.probes, hyper.seed),
    )
    figures = training_figures(result, pairs, settings, model)
    report: dict[str, Any] = {
        "status": result.status,
        "reason": result.reason,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped": result.stopped,
        "history": result.history,
        "pairs": {**pairs.counts(), "dataset": _dataset_counts(dataset.manifest)},
        "seed": hyper.seed,
        "parity": {},
        "parent": parent.manifest.model_id,
        "dataset_sha256": dataset.sha256,
        "hyperparameters": asdict(hyper),
        "seconds_per_1000_pairs": figures["seconds_per_1000_pairs"],
    }
    paths.model.mkdir(parents=True, exist_ok=True)
    if result.status == "trained":
        fields_ = candidate_fields(parent.manifest, hyper, dataset.sha256)
        fields_["dataset"] = {"sha256": dataset.sha256, **_dataset_counts(dataset.manifest)}
        fields_["training"] = figures
        with deterministic(settings.threads):
            try:
                manifest, parity = write_bundle(
                    model, fields_, parent, paths.model, hyper.min_cosine or model.min_cosine
                )
                report["parity"] = parity
                report["model"] = manifest.model_id
            except ParityError as exc:
                report |= {"status": "parity-failed", "reason": str(exc)}
    report["seconds"] = round(time.perf_counter() - started, 2)
    (paths.model / TRAINING_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    logger.info("%s: %s (%.1f s)", report["status"], report["reason"], report["seconds"])
    return report


def _dataset_counts(manifest: dict[str, Any]) -> dict[str, Any]:
    keys = ("train_queries", "heldout_queries", "train_pairs", "heldout_pairs")
    return {k: manifest[k] for k in keys if k in manifest}


def run(root: Path = DEFAULT_ROOT) -> int:
    """Run the job under ``root``; 0 when ``training.json`` was written, else 1."""
    paths = Paths(Path(root))
    try:
        train(paths)
    except Exception as exc:  # SageMaker's contract: the reason in output/failure, exit 1
        logger.exception("training job failed")
        paths.failure.parent.mkdir(parents=True, exist_ok=True)
        paths.failure.write_text(f"{type(exc).__name__}: {exc}\n", encoding="utf-8")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``imgsearch-train [train] [--root /opt/ml]``: SageMaker runs ``<image> train``."""
    parser = argparse.ArgumentParser(prog="imgsearch-train", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="train", choices=["train"])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="SageMaker's /opt/ml")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stdout,
    )
    return run(args.root)


if __name__ == "__main__":
    sys.exit(main())
