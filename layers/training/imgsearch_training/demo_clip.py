"""The demo CLIP's torch architecture: a CNN image tower and a causal-transformer text tower.

``tools/train_demo_clip.py`` trains it from scratch, ``tools/demo_checkpoint.py`` rebuilds it
from the committed ONNX bundle, and the training job fine-tunes it from a bundle's
``checkpoint.pt``; all three build it from one ``DemoArchitecture``, the dict that
``model.json``'s ``checkpoint.architecture`` records::

    from imgsearch.model.bundle import read_manifest
    from imgsearch_training.demo_clip import DemoArchitecture, build_clip

    manifest = read_manifest(Path("models/demo-clip"))
    architecture = DemoArchitecture.from_dict(manifest.extra["checkpoint"]["architecture"])
    model = build_clip(architecture, manifest)      # untrained weights, the right shapes
    model.visual(pixels), model.textual(input_ids)  # unnormalised (batch, dim) embeddings
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from imgsearch.model.bundle import ModelManifest

IMAGE_WIDTHS = (32, 48, 96, 192)


@dataclass(frozen=True)
class DemoArchitecture:
    """The sizes a demo CLIP is built with (``model.json``'s ``checkpoint.architecture``)."""

    dim: int
    """Embedding dimension."""
    width: int
    """Text transformer width."""
    layers: int
    heads: int
    vocab: int
    context_length: int
    eot_id: int
    """The end-of-text token the text tower pools at (the manifest's ``pad_token_id``)."""
    image_widths: tuple[int, ...] = IMAGE_WIDTHS
    """Channels of each stride-2 stage of the image tower."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Unknown keys, kept so that a newer writer's fields survive a round trip."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DemoArchitecture:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        values = {k: v for k, v in data.items() if k in known}
        if "image_widths" in values:
            values["image_widths"] = tuple(int(w) for w in values["image_widths"])
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data["image_widths"] = list(self.image_widths)
        return {**data, **extra}


class ImageTower(nn.Module):
    """Stride-2 conv stages (each but the first followed by a stride-1 conv), global max pooling.

    Two choices make shapes learnable in a few hundred CPU steps: a fourth input channel with
    each pixel's saturation (max - min of R, G, B, recomputed from the normalised pixels), which
    separates the coloured shapes from the neutral, often textured backgrounds; and max pooling,
    which keeps the strongest local evidence of a corner or a curve instead of averaging it away.
    """

    def __init__(
        self, dim: int, manifest: ModelManifest, widths: tuple[int, ...] = IMAGE_WIDTHS
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(manifest.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(manifest.std).view(1, 3, 1, 1))
        layers: list[nn.Module] = []
        channels = 4
        for stage, width in enumerate(widths):
            convs = [(channels, width, 2)] + ([(width, width, 1)] if stage else [])
            for cin, cout, stride in convs:
                layers += [
                    nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(channels, dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(self.inputs(pixel_values)))

    def inputs(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The four input channels: the normalised pixels and their saturation."""
        rgb = pixel_values * self.std + self.mean
        saturation = rgb.amax(dim=1, keepdim=True) - rgb.amin(dim=1, keepdim=True)
        x = torch.cat([pixel_values, (saturation - 0.3) / 0.3], dim=1)
        # channels_last: oneDNN's fast convolution layout on CPU (same results, ~1.5x faster)
        return x.contiguous(memory_format=torch.channels_last)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """Global max pooling of the last stage, then the projection to the embedding."""
        return self.proj(features.amax(dim=(2, 3)))

    def stage_start(self, stage: int) -> int:
        """Index in ``features`` of stage ``stage``'s first layer (each conv: conv, BN, ReLU;
        stage 0 has one conv, every later stage two)."""
        return 0 if stage == 0 else 3 + 6 * (stage - 1)


class Block(nn.Module):
    """Pre-norm transformer block with explicit causal attention (exports to plain ONNX ops)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        head = width // self.heads
        q, k, v = (
            self.qkv(self.ln1(x)).view(batch, length, 3, self.heads, head).permute(2, 0, 3, 1, 4)
        )
        attention = (q @ k.transpose(-1, -2)) / math.sqrt(head) + mask
        mixed = (attention.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, length, width)
        x = x + self.out(mixed)
        return x + self.mlp(self.ln2(x))


class TextTower(nn.Module):
    """Causal transformer pooled at the FIRST end-of-text token, as Hugging Face CLIP does.

    Causal attention means no position before the first EOT sees what follows it, so padding a
    batch with EOT to its longest text leaves every embedding unchanged.
    """

    def __init__(
        self, vocab: int, context: int, width: int, layers: int, heads: int, dim: int, eot_id: int
    ) -> None:
        super().__init__()
        self.eot_id = eot_id
        self.token = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.randn(context, width) * 0.01)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.proj = nn.Linear(width, dim, bias=False)
        self.register_buffer(
            "mask", torch.full((context, context), float("-inf")).triu(1), persistent=False
        )

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        x = self.token(input_ids) + self.position[:length]
        mask = self.mask[:length, :length]
        for block in self.blocks:
            x = block(x, mask)
        x = self.ln(x)
        first_eot = (input_ids == self.eot_id).float().argmax(dim=-1)  # argmax: first maximum
        return self.proj(x[torch.arange(x.shape[0]), first_eot])


class Clip(nn.Module):
    """Both towers and the contrastive loss's learnable temperature (``logit_scale``, a log)."""

    def __init__(self, visual: ImageTower, textual: TextTower) -> None:
        super().__init__()
        self.visual, self.textual = visual, textual
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))


def build_clip(architecture: DemoArchitecture, manifest: ModelManifest) -> Clip:
    """A freshly initialised ``Clip`` of ``architecture`` (seed torch first for fixed weights)."""
    return Clip(
        ImageTower(architecture.dim, manifest, architecture.image_widths).to(
            memory_format=torch.channels_last
        ),
        TextTower(
            architecture.vocab,
            architecture.context_length,
            architecture.width,
            architecture.layers,
            architecture.heads,
            architecture.dim,
            architecture.eot_id,
        ),
    )
