"""The checkpoint a retrainable bundle carries: the weights a training job starts from.

The ONNX towers are what serves; they cannot be trained further. So a retrainable bundle also
holds the torch weights, declared in ``model.json`` beside (not in) ``files``: the runtime
downloads and verifies only ``files``, and no Lambda function ever needs the checkpoint::

    "checkpoint": {"file": "checkpoint.pt", "format": "demo-clip", "sha256": "<hex>",
                   "architecture": {"dim": 64, "width": 128, "layers": 2, ...}}

For the demo model the file is a torch ``state_dict`` of ``demo_clip.Clip``, loaded with
``weights_only=True`` (no pickled code runs)::

    from imgsearch_training.checkpoint import load_checkpoint, write_checkpoint

    entry = write_checkpoint(model, architecture, staging)    # writes staging/checkpoint.pt
    write_manifest(staging, {**fields, "checkpoint": entry})
    model = load_checkpoint(Path("models/demo-clip"), manifest)  # sha256 checked first

An exported Hugging Face CLIP would carry ``{"format": "hf-clip", ...}`` naming its
``save_pretrained`` folder; the job does not retrain that format yet (``CheckpointError``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from imgsearch.model.bundle import ModelManifest, sha256_file
from imgsearch_training.bundle import ToolError
from imgsearch_training.demo_clip import Clip, DemoArchitecture, build_clip

CHECKPOINT = "checkpoint.pt"
DEMO_FORMAT = "demo-clip"
HF_FORMAT = "hf-clip"


class CheckpointError(ToolError):
    """The bundle cannot be retrained: no checkpoint, a wrong hash, an unknown format."""


def write_checkpoint(model: Clip, architecture: DemoArchitecture, folder: Path) -> dict[str, Any]:
    """Save ``model``'s state_dict as ``folder/checkpoint.pt``; returns the manifest entry."""
    # Plain contiguous tensors, so the file's bytes depend on the weights alone (not on whether
    # the convs were channels_last when saved); the same weights always hash the same.
    state = {
        name: tensor.detach().contiguous().clone() for name, tensor in model.state_dict().items()
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = folder / CHECKPOINT
    path.write_bytes(buffer.getvalue())
    return {
        "file": CHECKPOINT,
        "format": DEMO_FORMAT,
        "sha256": sha256_file(path),
        "architecture": architecture.to_dict(),
    }


def checkpoint_entry(manifest: ModelManifest) -> dict[str, Any]:
    """The manifest's ``checkpoint`` entry, checked for the fields every format has."""
    entry = manifest.extra.get("checkpoint")
    if not isinstance(entry, dict):
        raise CheckpointError(
            f"{manifest.model_id} has no checkpoint in model.json: it cannot be retrained "
            "(tools/train_demo_clip.py and tools/demo_checkpoint.py write one)"
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
    return entry


def load_checkpoint(root: Path, manifest: ModelManifest) -> tuple[Clip, DemoArchitecture]:
    """The model the bundle at ``root`` was exported from, its checkpoint's sha256 verified."""
    entry = checkpoint_entry(manifest)
    if entry["format"] != DEMO_FORMAT:
        raise CheckpointError(
            f"{manifest.model_id}: checkpoint format {entry['format']!r} is not supported by "
            f"this training job (supported: {DEMO_FORMAT!r})"
        )
    path = root / entry["file"]
    if not path.is_file():
        raise CheckpointError(f"{path} not found (model.json declares it)")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise CheckpointError(
            f"{path}: sha256 mismatch: model.json says {entry['sha256']}, file has {actual}"
        )
    try:
        architecture = DemoArchitecture.from_dict(entry["architecture"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{manifest.model_id}: bad checkpoint architecture: {exc}") from exc
    model = build_clip(architecture, manifest)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
        raise CheckpointError(f"{path} does not fit its architecture: {exc}") from exc
    return model, architecture
