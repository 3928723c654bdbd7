"""The training job's input channels: the prepared pairs and the images they name.

``dataset/`` holds ``manifest.json``, ``train.jsonl`` and ``heldout.jsonl`` as
``imgsearch.retrain.dataset`` writes them (one line per distinct query: its positives, its hard
negatives, a weight and a source); ``images/`` holds every image at its S3 key. Images are
decoded and preprocessed exactly as ingest does (``imgsearch.model.preprocess``), so the towers
train on what they will embed::

    from imgsearch_training.data import load_pairs, read_dataset

    dataset = read_dataset(root / "input/data/dataset")      # sha256 checked against the files
    pairs = load_pairs(dataset, root / "input/data/images", manifest)
    pairs.pixels.shape            # (images, 3, size, size), one row per distinct key
    pairs.train[0].positives      # row numbers into pixels
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.model import ImageError, ModelManifest, preprocess
from imgsearch.retrain.dataset import (
    HELDOUT_FILE,
    MANIFEST_FILE,
    TRAIN_FILE,
    Example,
    files_sha256,
)


class DatasetError(Exception):
    """The dataset channel is missing, malformed or does not match its manifest."""


@dataclass(frozen=True)
class Dataset:
    train: list[Example]
    heldout: list[Example]
    sha256: str
    manifest: dict[str, Any]


def _examples(body: bytes, name: str) -> list[Example]:
    examples = []
    for number, line in enumerate(body.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            examples.append(Example.from_line(line))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{name} line {number}: not an example ({exc})") from exc
    return examples


def read_dataset(folder: Path) -> Dataset:
    """The dataset channel, its files checked against the manifest's sha256."""
    manifest_file = folder / MANIFEST_FILE
    if not manifest_file.is_file():
        raise DatasetError(f"{manifest_file} not found (is the dataset channel mounted?)")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{manifest_file} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), str):
        raise DatasetError(f"{manifest_file} must be an object with a sha256 string")
    files = {}
    for name in (TRAIN_FILE, HELDOUT_FILE):
        if not (folder / name).is_file():
            raise DatasetError(f"{folder / name} not found")
        files[name] = (folder / name).read_bytes()
    actual = files_sha256(files)
    if actual != manifest["sha256"]:
        raise DatasetError(
            f"{folder}: the files' sha256 {actual} is not the manifest's {manifest['sha256']}"
        )
    return Dataset(
        train=_examples(files[TRAIN_FILE], TRAIN_FILE),
        heldout=_examples(files[HELDOUT_FILE], HELDOUT_FILE),
        sha256=actual,
        manifest=manifest,
    )


@dataclass(frozen=True)
class Query:
    """An example with its images as row numbers into ``Pairs.pixels``."""

    text: str
    positives: tuple[int, ...]
    negatives: tuple[int, ...]
    weight: float


@dataclass
class Pairs:
    """Everything the fine-tuning loop reads: pixels once per image, queries by row number."""

    pixels: np.ndarray
    keys: list[str]
    train: list[Query]
    heldout: list[Query]
    skipped: dict[str, int] = field(default_factory=dict)
    """What could not be used and why: ``missing_images``, ``bad_images``, ``no_positive``."""

    def counts(self) -> dict[str, Any]:
        """The figures ``training.json`` reports under ``pairs``."""

        def side(queries: list[Query]) -> dict[str, int]:
            return {
                "queries": len(queries),
                "positives": sum(len(q.positives) for q in queries),
                "negatives": sum(len(q.negatives) for q in queries),
            }

        return {
            "train": side(self.train),
            "heldout": side(self.heldout),
            "images": len(self.keys),
            "skipped": dict(sorted(self.skipped.items())),
        }


def load_pairs(dataset: Dataset, images: Path, manifest: ModelManifest) -> Pairs:
    """Decode every image the examples name (once each) and index the examples by row."""
    skipped: Counter[str] = Counter()
    rows: dict[str, int] = {}
    pixels: list[np.ndarray] = []
    wanted = sorted(
        {k for e in (*dataset.train, *dataset.heldout) for k in (*e.positives, *e.negatives)}
    )
    root = images.resolve()
    for key in wanted:
        path = (images / key).resolve()
        if not path.is_relative_to(root) or not path.is_file():  # "../" keys stay outside
            skipped["missing_images"] += 1
            continue
        try:
            pixels.append(preprocess(path.read_bytes(), manifest))
        except ImageError:
            skipped["bad_images"] += 1
            continue
        rows[key] = len(pixels) - 1

    def index(examples: list[Example], withheld: set[str]) -> list[Query]:
        queries = []
        for example in examples:
            positives = tuple(rows[k] for k in example.positives if k in rows and k not in withheld)
            if not positives:
                skipped["no_positive"] += 1
                continue
            negatives = tuple(
                rows[k]
                for k in example.negatives
                if k in rows and k not in withheld and rows[k] not in positives
            )
            queries.append(Query(example.query, positives, negatives, example.weight))
        return queries

    # The held-out queries' answers train nothing either, not even as another query's negative:
    # an image that appears in training only as a negative is pushed away from every text, and
    # the held-out loss would then measure that push rather than what the model learnt.
    # The golden set's answers are not withheld: it is held out to check regressions, and its
    # kinds cover the corpus (every image answers one), so withholding them would train nothing.
    withheld = {k for e in dataset.heldout if e.source != "golden" for k in e.positives}
    skipped["withheld_from_train"] = sum(
        k in withheld for e in dataset.train for k in (*e.positives, *e.negatives)
    )
    train, heldout = index(dataset.train, withheld), index(dataset.heldout, set())
    size = manifest.image_size
    stacked = np.stack(pixels) if pixels else np.zeros((0, 3, size, size), np.float32)
    return Pairs(stacked, list(rows), train, heldout, dict(skipped))
