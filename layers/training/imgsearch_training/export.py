"""The demo CLIP to ONNX, and the parity check of the exported bundle against torch.

Both towers are exported with the dynamo exporter (opset 18, dynamic batch axis, dynamic token
axis for text); the check then loads the bundle through the real runtime and compares it with
torch on random pixels and on texts of many lengths, each alone in torch but padded together
(and truncated) by the runtime::

    from imgsearch.model import ClipModel
    from imgsearch_training.export import check_parity, export, tokenize

    export(model, staging, manifest, tokenize(text_tokenizer, ["a red circle", "two stars"]))
    write_manifest(staging, fields)
    figures = check_parity(model, ClipModel.load(staging, threads=2), tokenizer)
    # {"visual": {"min_cosine": 1.0, ...}, "textual_padded_batch": {...}}; ParityError if low
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from imgsearch.model import ClipModel
from imgsearch.model.bundle import TEXTUAL, VISUAL, ModelManifest
from imgsearch.model.tokenizer import TextTokenizer
from imgsearch_training.bundle import cosine_figures, random_pixels, random_texts, require_parity
from imgsearch_training.demo_clip import Clip

MIN_COSINE = 0.9999
"""The demo model's parity floor: fp32 torch against fp32 onnxruntime, no quantisation."""


def tokenize(tokenizer: TextTokenizer, texts: list[str]) -> torch.Tensor:
    """Token ids as the runtime makes them (padded to the longest, truncated keeping EOT)."""
    return torch.from_numpy(tokenizer(texts))


def export(
    model: Clip,
    out: Path,
    manifest: ModelManifest,
    example_tokens: torch.Tensor,
) -> None:
    """Write both towers to ONNX: dynamic batch axis, and a dynamic token axis for text."""
    model.eval()
    size = manifest.image_size
    batch = torch.export.Dim("batch", min=1, max=4096)
    tokens = torch.export.Dim("tokens", min=2, max=manifest.context_length)
    specs = [
        (
            model.visual,
            torch.randn(2, 3, size, size),
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
    model: Clip, runtime: ClipModel, tokenizer: Any, min_cosine: float = MIN_COSINE
) -> dict[str, Any]:
    """The bundle through the real runtime vs torch: random images, and texts of many lengths
    embedded one by one in torch but padded together (and truncated) by the runtime.

    ``tokenizer`` is the bundle's ``tokenizers.Tokenizer`` (its vocabulary makes the texts).
    Raises ``ParityError`` when any row's cosine is below ``min_cosine``."""
    model.eval()
    pixels = random_pixels(8, runtime.manifest.image_size)
    texts = random_texts(tokenizer, 16, runtime.manifest.context_length)
    alone = torch.cat([model.textual(tokenize(runtime.tokenizer, [text])) for text in texts])
    figures = {
        "visual": cosine_figures(
            model.visual(torch.from_numpy(pixels)).numpy(), runtime.encode_images(pixels)
        ),
        "textual_padded_batch": cosine_figures(alone.numpy(), runtime.encode_text(texts)),
    }
    require_parity(figures, min_cosine=min_cosine)
    return figures
