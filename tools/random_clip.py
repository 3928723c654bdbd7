"""Write a randomly initialised CLIP checkpoint folder, as ``CLIPModel.save_pretrained`` does.

No pretrained weights can be downloaded here, yet the exporter, its tests and the speed benchmark
need a real Hugging Face checkpoint of a real shape (timings do not depend on weight values). The
folder holds ``config.json``, the weights, a small word-level ``tokenizer.json`` with CLIP's
special tokens and post-processor, and ``preprocessor_config.json``::

    python tools/random_clip.py /tmp/clip-b32 --preset vit-b-32
    python tools/export_clip.py /tmp/clip-b32 /tmp/bundle-b32

or from Python: ``write_random_clip(Path("/tmp/clip-b32"), PRESETS["vit-b-32"])``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgsearch.model.bundle import OPENAI_MEAN, OPENAI_STD

START, END, UNKNOWN = "<|startoftext|>", "<|endoftext|>", "<|unk|>"

WORDS = """
a an the of with and on in at by photo picture image drawing painting sketch close up view
red green blue yellow orange purple pink brown black white grey gold silver dark light small
large big tiny huge old new bright shiny wet dry car truck bus bicycle boat plane train
house tree flower dog cat bird horse cow sheep fish person man woman child people face hand
street road river lake sea beach mountain forest city sky cloud sun moon night day snow rain
field garden table chair cup bottle book phone circle square triangle star line dot stripe
pattern two three four many one
"""


@dataclass(frozen=True)
class Shape:
    """The sizes of a CLIP model; ``vit-b-32`` is OpenAI's ViT-B/32."""

    vision_hidden: int
    vision_layers: int
    vision_heads: int
    patch_size: int
    image_size: int
    text_hidden: int
    text_layers: int
    text_heads: int
    context_length: int
    projection_dim: int
    vocab_size: int


PRESETS = {
    "vit-b-32": Shape(768, 12, 12, 32, 224, 512, 12, 8, 77, 512, 49408),
    "tiny": Shape(64, 2, 4, 16, 64, 64, 2, 4, 32, 32, 1000),
}


def build_tokenizer():
    """A word-level tokenizer with CLIP's specials; end-of-text has the highest id, as in CLIP."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab = {word: i for i, word in enumerate(dict.fromkeys(WORDS.split()))}
    for token in (UNKNOWN, START, END):
        vocab[token] = len(vocab)
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNKNOWN))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{START} $A {END}",
        special_tokens=[(START, vocab[START]), (END, vocab[END])],
    )
    tokenizer.add_special_tokens([START, END, UNKNOWN])
    return tokenizer


def clip_config(shape: Shape) -> Any:
    """The ``transformers.CLIPConfig`` of ``shape``, with this tokenizer's special tokens."""
    from transformers import CLIPConfig

    tokenizer = build_tokenizer()
    start, end = tokenizer.token_to_id(START), tokenizer.token_to_id(END)
    if end >= shape.vocab_size:
        raise ValueError(f"vocab_size {shape.vocab_size} is too small for the tokenizer")
    return CLIPConfig(
        text_config={
            "vocab_size": shape.vocab_size,
            "hidden_size": shape.text_hidden,
            "intermediate_size": 4 * shape.text_hidden,
            "num_hidden_layers": shape.text_layers,
            "num_attention_heads": shape.text_heads,
            "max_position_embeddings": shape.context_length,
            "bos_token_id": start,
            "eos_token_id": end,
            "pad_token_id": end,
        },
        vision_config={
            "hidden_size": shape.vision_hidden,
            "intermediate_size": 4 * shape.vision_hidden,
            "num_hidden_layers": shape.vision_layers,
            "num_attention_heads": shape.vision_heads,
            "patch_size": shape.patch_size,
            "image_size": shape.image_size,
        },
        projection_dim=shape.projection_dim,
    )


def write_random_clip(folder: Path, shape: Shape, seed: int = 0) -> Path:
    """Save a random ``CLIPModel`` of ``shape`` with tokenizer and preprocessor files."""
    import torch
    from transformers import CLIPModel

    tokenizer = build_tokenizer()
    config = clip_config(shape)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    preprocessor = {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": shape.image_size},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": shape.image_size, "width": shape.image_size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(OPENAI_MEAN),
        "image_std": list(OPENAI_STD),
        "do_convert_rgb": True,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="checkpoint folder to write")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="vit-b-32")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_random_clip(args.out, PRESETS[args.preset], args.seed)
    print(f"wrote a random {args.preset} CLIP checkpoint to {args.out}")


if __name__ == "__main__":
    main()
