"""The checkpoint a retrainable bundle carries: the weights a training job starts from.

The ONNX towers are what serves; they cannot be trained further. So a retrainable bundle also
holds the torch weights, declared in ``model.json`` beside (not in) ``files``: the runtime
downloads and verifies only ``files``, and no Lambda function ever needs the checkpoint::

    "checkpoint": {"file": "checkpoint.pt", "format": "demo-clip", "sha256": "<hex>",
                   "architecture": {"dim": 64, "width": 128, "layers": 2, ...}}

Two formats, each a ``Trainable``: ``demo-clip``, a torch ``state_dict`` of ``demo_clip.Clip``
loaded with ``weights_only=True`` (no pickled code runs), and ``hf-clip``, the safetensors
weights of a Hugging Face ``CLIPModel`` with its config as the architecture
(``tools/export_clip.py`` writes it)::

    from imgsearch_training.checkpoint import load_checkpoint

    trainable = load_checkpoint(Path("models/demo-clip"), manifest)  # sha256 checked first
    entry = trainable.write_checkpoint(staging)                      # after training
    write_manifest(staging, {**fields, "checkpoint": entry})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgsearch.model.bundle import ModelManifest, sha256_file
from imgsearch_training.bundle import ToolError
from imgsearch_training.hf_clip import HfClip
from imgsearch_training.trainable import DemoClip, Trainable

TRAINABLES: dict[str, type[Trainable]] = {kind.format: kind for kind in (DemoClip, HfClip)}
FORMATS = tuple(TRAINABLES)


class CheckpointError(ToolError):
    """The bundle cannot be retrained: no checkpoint, a wrong hash, an unknown format."""


def checkpoint_entry(manifest: ModelManifest) -> dict[str, Any]:
    """The manifest's ``checkpoint`` entry, checked for the fields every format has."""
    entry = manifest.extra.get("checkpoint")
    if not isinstance(entry, dict):
        raise CheckpointError(
            f"{manifest.model_id} has no checkpoint in model.json: it cannot be retrained "
            "(tools/train_demo_clip.py, tools/demo_checkpoint.py and tools/export_clip.py "
            "write one)"
        )
    missing = [k for k in ("file", "format", "sha256") if not isinstance(entry.get(k), str)]
    if missing:
        raise CheckpointError(
            f"{manifest.model_id}: checkpoint entry lacks {', '.join(missing)} (strings)"
        )
    if "/" in entry["file"] or entry["file"].startswith("."):
        raise CheckpointError(
            f"{manifest.model_id}: checkpoint file {entry['file']!r} is not a name"
        )
    if entry["format"] not in FORMATS:
        raise CheckpointError(
            f"{manifest.model_id}: checkpoint format {entry['format']!r} is not supported by "
            f"this training job (supported: {', '.join(map(repr, FORMATS))})"
        )
    if not isinstance(entry.get("architecture"), dict):
        raise CheckpointError(f"{manifest.model_id}: checkpoint entry lacks its architecture")
    return entry


def load_checkpoint(root: Path, manifest: ModelManifest) -> Trainable:
    """The model the bundle at ``root`` was exported from, its checkpoint's sha256 verified."""
    entry = checkpoint_entry(manifest)
    path = root / entry["file"]
    if not path.is_file():
        raise CheckpointError(f"{path} not found (model.json declares it)")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise CheckpointError(
            f"{path}: sha256 mismatch: model.json says {entry['sha256']}, file has {actual}"
        )
    try:
        return TRAINABLES[entry["format"]].load(path, entry["architecture"], manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{manifest.model_id}: bad checkpoint architecture: {exc}") from exc
    except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
        raise CheckpointError(f"{path} does not fit its architecture: {exc}") from exc
