"""What fine-tuning and export need of a model, whatever its architecture.

The training job fine-tunes two kinds of checkpoint: the demo CLIP (``demo_clip.Clip``, format
``demo-clip``) and a Hugging Face ``CLIPModel`` (format ``hf-clip``, ``hf_clip.HfClip``). Both are
a ``Trainable``: the whole module (its parameters and ``state_dict``), the two towers as the ONNX
export and the parity check see them, the temperature, and the image tower cut in two after its
first ``frozen`` stages, so that the frozen part's outputs are computed once per image::

    trainable = load_checkpoint(bundle.root, bundle.manifest)   # a DemoClip or an HfClip
    split = trainable.split_visual(2)
    cached = split.stem(pixels)                  # the frozen stages, computed once
    embeddings = split.head(cached[rows])        # what trains
    assert torch.allclose(embeddings, trainable.visual(pixels[rows]))
    entry = trainable.write_checkpoint(staging)  # model.json's "checkpoint"
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from imgsearch.model.bundle import ModelManifest, sha256_file
from imgsearch_training.demo_clip import Clip, DemoArchitecture, build_clip
from imgsearch_training.export import MIN_COSINE


@dataclass(frozen=True)
class VisualSplit:
    """The image tower as ``head(stem(pixels))``; ``stem`` runs without gradients."""

    stem: Callable[[torch.Tensor], torch.Tensor]
    head: Callable[[torch.Tensor], torch.Tensor]
    frozen: list[nn.Parameter]
    """The stem's parameters: they never train."""


class Trainable(ABC):
    """A model the training job can fine-tune, export and save again as a checkpoint."""

    format: ClassVar[str]
    """``model.json``'s ``checkpoint.format``."""
    min_cosine: ClassVar[float]
    """The parity floor of its exported bundle (fp32 torch against fp32 onnxruntime)."""

    module: nn.Module
    """Every weight: what trains, is interpolated and is saved."""
    visual: nn.Module
    """Pixels (batch, 3, size, size) to unnormalised image embeddings."""
    textual: nn.Module
    """Token ids (batch, tokens) to unnormalised text embeddings, pooled at the first EOT."""
    logit_scale: nn.Parameter
    text_blocks: nn.Module
    """The text tower's transformer blocks (``Settings.text_blocks`` may freeze them)."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path, architecture: dict[str, Any], manifest: ModelManifest) -> Trainable:
        """The model saved at ``path`` (its sha256 already checked), built from ``architecture``
        (``model.json``'s ``checkpoint.architecture``). Raises ``KeyError``, ``TypeError`` or
        ``ValueError`` for an architecture it cannot build, ``RuntimeError`` for weights that do
        not fit it."""

    @abstractmethod
    def split_visual(self, frozen: int) -> VisualSplit:
        """The image tower with its first ``frozen`` stages as the stem (0: nothing frozen)."""

    @abstractmethod
    def write_checkpoint(self, folder: Path) -> dict[str, Any]:
        """Save the weights into ``folder``; returns ``model.json``'s ``checkpoint`` entry."""


def plain_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The ``state_dict`` as plain contiguous copies, so that a file's bytes depend on the
    weights alone (not on a conv's memory format): the same weights always hash the same."""
    return {name: t.detach().contiguous().clone() for name, t in module.state_dict().items()}


def checkpoint_entry(path: Path, format: str, architecture: dict[str, Any]) -> dict[str, Any]:
    """``model.json``'s ``checkpoint`` entry for the file at ``path``."""
    return {
        "file": path.name,
        "format": format,
        "sha256": sha256_file(path),
        "architecture": architecture,
    }


def check_frozen(frozen: int, stages: int) -> None:
    if not 0 <= frozen <= stages:
        raise ValueError(f"frozen_stages must be in [0, {stages}] for this model, got {frozen}")


class DemoClip(Trainable):
    """The demo CLIP; its stages are the CNN's stride-2 stages."""

    format = "demo-clip"
    min_cosine = MIN_COSINE

    def __init__(self, model: Clip, architecture: DemoArchitecture) -> None:
        self.module, self.architecture = model, architecture
        self.visual, self.textual = model.visual, model.textual
        self.logit_scale = model.logit_scale
        self.text_blocks = model.textual.blocks

    @classmethod
    def load(cls, path: Path, architecture: dict[str, Any], manifest: ModelManifest) -> DemoClip:
        """``weights_only``: no pickled code runs; the manifest gives the pixel statistics."""
        demo = DemoArchitecture.from_dict(architecture)
        model = build_clip(demo, manifest)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return cls(model, demo)

    def split_visual(self, frozen: int) -> VisualSplit:
        tower = self.module.visual
        check_frozen(frozen, len(self.architecture.image_widths))
        split = tower.stage_start(frozen)
        stem, head = tower.features[:split], tower.features[split:]
        return VisualSplit(
            stem=lambda pixels: stem(tower.inputs(pixels)),
            head=lambda features: tower.pool(head(features)),
            frozen=list(stem.parameters()),
        )

    def write_checkpoint(self, folder: Path) -> dict[str, Any]:
        """``folder/checkpoint.pt``: the ``state_dict``, loaded back with ``weights_only``."""
        path = folder / "checkpoint.pt"
        buffer = io.BytesIO()
        torch.save(plain_state(self.module), buffer)
        path.write_bytes(buffer.getvalue())
        return checkpoint_entry(path, self.format, self.architecture.to_dict())
