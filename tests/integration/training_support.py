"""A tiny training-job folder in SageMaker's layout, from demo scenes with known answers.

Queries are the simulated users' ("red circle on a black background"); positives are the
scenes a query describes, negatives the scenes of the same kind on other backgrounds (what the
champion shows but nobody clicks); every fourth query is held out::

    root = make_job(tmp_path / "job", hyper={"epochs": "2"})
    assert run(root) == 0
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

from imgsearch_devkit.demo.scenes import generate
from imgsearch_devkit.demo.users import background_query
from imgsearch_training.data import files_sha256

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "models" / "demo-clip"


def _lines(examples: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in examples).encode()


def write_dataset(folder: Path, train: list[dict], heldout: list[dict]) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"train.jsonl": _lines(train), "heldout.jsonl": _lines(heldout)}
    for name, body in files.items():
        (folder / name).write_bytes(body)
    manifest = {
        "schema_version": "1.0",
        "sha256": files_sha256(files),
        "created_at": "2025-01-01T00:00:00Z",
        "train_queries": len(train),
        "heldout_queries": len(heldout),
        "train_pairs": sum(len(e["positives"]) for e in train),
        "heldout_pairs": sum(len(e["positives"]) for e in heldout),
        "sources": {"feedback": len(train) + len(heldout)},
        "a_field_from_the_future": True,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def make_job(
    root: Path,
    *,
    images: int = 120,
    seed: int = 77,
    hyper: dict[str, str] | None = None,
    wrong_heldout: bool = False,
    model: Path = DEMO,
) -> Path:
    """The job folder, ``model`` the parent bundle. ``wrong_heldout``: the held-out examples
    are instead some training queries answered by another kind's images, so the better the
    model learns what training teaches, the worse the held-out loss."""
    pairs = generate(images, seed=seed)
    keys = [f"images/tiny/{i:03d} {s.colour} {s.shape}.jpg" for i, (_, s) in enumerate(pairs)]
    by_query: dict[str, dict[str, list[str]]] = {}
    for key, (_, scene) in zip(keys, pairs, strict=True):
        query = background_query(scene.colour, scene.shape, scene.background)
        entry = by_query.setdefault(query, {"positives": [], "negatives": []})
        entry["positives"].append(key)
    for query, entry in by_query.items():
        kind = query.split(" on ")[0]
        same_kind = [
            k for q, e in by_query.items() if q.startswith(kind + " on") for k in e["positives"]
        ]
        entry["negatives"] = sorted(set(same_kind) - set(entry["positives"]))
    train, heldout = [], []
    ordered = sorted(by_query.items())
    for number, (query, entry) in enumerate(ordered):
        example = {"query": query, **entry, "weight": 1.0, "source": "feedback"}
        if number % 4 != 3:
            train.append(example)
        elif not wrong_heldout:
            heldout.append(example)
        else:
            train.append(example)
            # another kind's images as this query's answers: wrong in every way training teaches
            other = next(e for q, e in ordered if q.split(" on ")[0] != query.split(" on ")[0])
            reverse = {"positives": other["positives"], "negatives": entry["positives"]}
            heldout.append(example | reverse)
    data = root / "input" / "data"
    write_dataset(data / "dataset", train, heldout)
    for key, (image, _) in zip(keys, pairs, strict=True):
        path = data / "images" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        path.write_bytes(buffer.getvalue())
    shutil.copytree(model, data / "model")
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    values = {"name": "demo-clip", "version": "t1", "parent": "demo-clip@1", "threads": "1"}
    (config / "hyperparameters.json").write_text(json.dumps(values | (hyper or {})))
    return root
