"""A CLIP's towers to ONNX, and the parity check of the exported bundle against torch.

``model`` is anything with ``visual`` and ``textual`` modules: a demo ``Clip``, a
``trainable.Trainable`` (the demo model or a Hugging Face one). The training job and the tools
(``train_demo_clip.py``, ``demo_checkpoint.py``, ``export_clip.py``) all export and check here.

Both towers are exported with the dynamo exporter (opset 18, dynamic batch axis, dynamic token
axis for text); the check then loads the bundle through the real runtime and compares it with
torch on random pixels and on texts of many lengths, each alone in torch but padded together
(and truncated) by the runtime::

    from imgsearch.model import ClipModel
    from imgsearch_training.export import check_parity, export, tokenize

    export(model, staging, 64, 32, tokenize(text_tokenizer, ["a red circle", "two stars"]))
    write_manifest(staging, fields)
    figures = check_parity(model, ClipModel.load(staging, threads=2), tokenizer)
    # {"visual": {"min_cosine": 1.0, ...}, "textual_padded_batch": {...}}; ParityError if low
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from imgsearch.model import ClipModel
from imgsearch.model.bundle import TEXTUAL, VISUAL
from imgsearch.model.tokenizer import TextTokenizer
from imgsearch_training.bundle import cosine_figures, random_pixels, random_texts, require_parity

MIN_COSINE = 0.9999
"""The demo model's parity floor: fp32 torch against fp32 onnxruntime, no quantisation."""


class Towers(Protocol):
    visual: nn.Module
    """Pixels to image embeddings."""
    textual: nn.Module
    """Token ids to text embeddings."""


def tokenize(tokenizer: TextTokenizer, texts: list[str]) -> torch.Tensor:
    """Token ids as the runtime makes them (padded to the longest, truncated keeping EOT)."""
    return torch.from_numpy(tokenizer(texts))


def export(
    model: Towers,
    out: Path,
    image_size: int,
    context_length: int,
    example_tokens: torch.Tensor,
) -> None:
    """Write both towers to ONNX in ``out``: a dynamic batch axis, and a dynamic token axis for
    text; the weights inside each file."""
    model.visual.eval()
    model.textual.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    tokens = torch.export.Dim("tokens", min=2, max=context_length)
    specs = [
        (
            model.visual,
            torch.randn(2, 3, image_size, image_size),
            VISUAL,
            "pixel_values",
            "image_embeds",
            {0: batch},
        ),
        (model.textual, example_tokens, TEXTUAL, "input_ids", "text_embeds", {0: batch, 1: tokens}),
    ]
    for tower, example, name, input_name, output_name, dims in specs:
        torch.onnx.export(
            tower,
            (example,),
            str(out / name),
            dynamo=True,
            external_data=False,
            opset_version=18,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_shapes={input_name: dims},
        )


@torch.no_grad()
def check_parity(
    model: Towers,
    runtime: ClipModel,
    tokenizer: Any,
    min_cosine: float = MIN_COSINE,
    samples: int = 8,
) -> dict[str, Any]:
    """The bundle through the real runtime vs torch: ``samples`` random images, and twice as
    many texts of many lengths, embedded one by one in torch but padded together (and
    truncated) by the runtime.

    ``tokenizer`` is the bundle's ``tokenizers.Tokenizer`` (its vocabulary makes the texts).
    Raises ``ParityError`` when any row's cosine is below ``min_cosine``."""
    model.visual.eval()
    model.textual.eval()
    pixels = random_pixels(samples, runtime.manifest.image_size)
    texts = random_texts(tokenizer, 2 * samples, runtime.manifest.context_length)
    alone = torch.cat([model.textual(tokenize(runtime.tokenizer, [text])) for text in texts])
    figures = {
        "visual": cosine_figures(
            model.visual(torch.from_numpy(pixels)).numpy(), runtime.encode_images(pixels)
        ),
        "textual_padded_batch": cosine_figures(alone.numpy(), runtime.encode_text(texts)),
    }
    require_parity(figures, min_cosine=min_cosine)
    return figures
