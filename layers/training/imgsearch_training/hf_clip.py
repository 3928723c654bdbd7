"""A Hugging Face ``transformers`` CLIP as the exporter and the training job see it.

``tools/export_clip.py`` exports ``get_image_features`` and ``get_text_features`` (the two
``nn.Module`` wrappers here) and, unless told not to, writes the weights beside the bundle as
its training checkpoint: ``checkpoint.safetensors`` with the ``CLIPConfig`` as the entry's
``architecture``, so the job can rebuild the same ``CLIPModel`` without the original folder::

    "checkpoint": {"file": "checkpoint.safetensors", "format": "hf-clip", "sha256": "<hex>",
                   "architecture": {"model_type": "clip", "projection_dim": 512, ...}}

    clip = HfClip(CLIPModel.from_pretrained(folder))
    entry = clip.write_checkpoint(staging)
    again = HfClip.load(staging / entry["file"], entry["architecture"], manifest)  # the same

For fine-tuning, the vision transformer's stages are its encoder layers: the stem is the patch
and position embeddings, the pre-norm and the first ``frozen`` layers.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgsearch.model.bundle import ModelManifest
from imgsearch_training.trainable import (
    Trainable,
    VisualSplit,
    check_frozen,
    checkpoint_entry,
    plain_state,
)

CHECKPOINT = "checkpoint.safetensors"


def features(output: Any) -> torch.Tensor:
    """The projected embeddings: transformers 5 returns a model output whose ``pooler_output``
    is projected, 4.x the tensor itself."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ImageTower(nn.Module):
    """``get_image_features`` as a module of its own (what ``visual.onnx`` holds)."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return features(self.clip.get_image_features(pixel_values=pixel_values))


class TextTower(nn.Module):
    """``get_text_features`` as a module of its own (what ``textual.onnx`` holds)."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return features(self.clip.get_text_features(input_ids=input_ids))


@functools.cache
def _encoder_layer_call() -> dict[str, Any]:
    """The keyword arguments an encoder layer needs besides its states and (no) attention mask:
    transformers 4.x also takes a causal mask and returns a tuple, 5.x neither."""
    from transformers.models.clip.modeling_clip import CLIPEncoderLayer

    parameters = inspect.signature(CLIPEncoderLayer.forward).parameters
    return {"causal_attention_mask": None} if "causal_attention_mask" in parameters else {}


def _run_layers(layers: nn.ModuleList | list[nn.Module], states: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        output = layer(states, None, **_encoder_layer_call())
        states = output[0] if isinstance(output, tuple) else output
    return states


class HfClip(Trainable):
    """A ``transformers.CLIPModel``."""

    format = "hf-clip"
    min_cosine = 0.999

    def __init__(self, model: nn.Module) -> None:
        self.module = model
        self.visual, self.textual = ImageTower(model).eval(), TextTower(model).eval()
        self.logit_scale = model.logit_scale
        self.text_blocks = model.text_model.encoder.layers

    @classmethod
    def load(cls, path: Path, architecture: dict[str, Any], manifest: ModelManifest) -> HfClip:
        """The ``CLIPModel`` of ``architecture`` (a ``CLIPConfig`` dict) with ``path``'s weights
        (the config holds everything; ``manifest`` is not needed).

        Raises ``ValueError`` for a config transformers cannot build and ``RuntimeError`` for
        weights that do not fit it."""
        from safetensors.torch import load_file
        from transformers import CLIPConfig, CLIPModel

        if architecture.get("model_type") != "clip":
            raise ValueError(f"model_type {architecture.get('model_type')!r} is not 'clip'")
        model = CLIPModel(CLIPConfig.from_dict(architecture))
        model.load_state_dict(load_file(path), strict=True)
        return cls(model.eval())

    def split_visual(self, frozen: int) -> VisualSplit:
        vision = self.module.vision_model
        layers = vision.encoder.layers
        check_frozen(frozen, len(layers))

        def embed(pixels: torch.Tensor) -> torch.Tensor:
            return vision.pre_layrnorm(vision.embeddings(pixels))

        def stem(pixels: torch.Tensor) -> torch.Tensor:
            return _run_layers(layers[:frozen], embed(pixels)) if frozen else pixels

        def head(states: torch.Tensor) -> torch.Tensor:
            states = _run_layers(layers[frozen:], states if frozen else embed(states))
            return self.module.visual_projection(vision.post_layernorm(states[:, 0]))

        parts = [vision.embeddings, vision.pre_layrnorm, *layers[:frozen]] if frozen else []
        return VisualSplit(stem, head, [p for part in parts for p in part.parameters()])

    def write_checkpoint(self, folder: Path) -> dict[str, Any]:
        """``folder/checkpoint.safetensors``; the entry's ``architecture`` is the config."""
        from safetensors.torch import save_file

        path = folder / CHECKPOINT
        save_file(plain_state(self.module), str(path), metadata={"format": self.format})
        return checkpoint_entry(path, self.format, self.module.config.to_dict())
