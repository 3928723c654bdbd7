"""Export a Hugging Face ``transformers`` CLIP checkpoint to an imgsearch model bundle.

``SRC`` is a folder as ``CLIPModel.save_pretrained`` (plus the processor's ``save_pretrained``)
writes it: ``config.json``, the weights, ``tokenizer.json`` and ``preprocessor_config.json``.
``OUT`` receives ``visual.onnx`` (``get_image_features``), ``textual.onnx``
(``get_text_features``), ``tokenizer.json``, ``model.json`` and, unless ``--no-checkpoint``,
``checkpoint.safetensors``: the weights and config a retraining run fine-tunes
(``imgsearch_training.hf_clip``; the runtime never loads it). Before ``OUT`` is written, the
bundle is loaded with the real runtime (``imgsearch.model.ClipModel``) and compared with PyTorch
on random images and on random texts of many lengths, each text alone in PyTorch and padded in
one batch by the runtime; a row below ``--min-cosine`` fails the export (exit code 1)::

    python tools/export_clip.py ./clip-vit-base-patch32 models/clip-b32 \\
        --name clip-b32 --version 1 --source openai/clip-vit-base-patch32 --license MIT --int8

``--int8`` then also writes ``OUT-int8`` with ``tools/quantize_bundle.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from bundle_writer import run
from imgsearch_training.bundle import ToolError, staged_bundle, write_manifest
from imgsearch_training.export import check_parity, tokenize
from imgsearch_training.export import export as export_towers
from imgsearch_training.hf_clip import HfClip

from imgsearch.model import ClipModel, ModelManifest
from imgsearch.model.bundle import OPENAI_MEAN, OPENAI_STD, TOKENIZER
from imgsearch.model.tokenizer import TextTokenizer

log = logging.getLogger("imgsearch.tools.export")

DEFAULT_MIN_COSINE = HfClip.min_cosine
PIL_BICUBIC = 3
LEGACY_EOS_TOKEN_ID = 2
"""Configs written before transformers PR #24773 say 2; their text tower pools at argmax(ids)."""


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ToolError(f"{path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ToolError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ToolError(f"{path} must hold a JSON object")
    return data


def _edge(value: Any, key: str, file: Path) -> int:
    """A size from preprocessor_config.json: an int, or a dict of one of its common shapes."""
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        if "height" in value and value["height"] == value.get("width"):
            return int(value["height"])
    raise ToolError(f"{file}: unsupported {key} {value!r} (expected a square size)")


def image_settings(src: Path) -> dict[str, Any]:
    """The manifest's preprocessing fields, from the checkpoint's preprocessor_config.json."""
    file = src / "preprocessor_config.json"
    config = _read_json(file)
    if config.get("resample", PIL_BICUBIC) != PIL_BICUBIC:
        raise ToolError(
            f"{file}: resample {config['resample']} is not bicubic (3); the runtime "
            "implements OpenAI CLIP's bicubic resize only"
        )
    if not config.get("do_resize", True) or not config.get("do_center_crop", True):
        raise ToolError(
            f"{file}: the runtime always resizes and centre-crops; "
            "do_resize/do_center_crop false is not supported"
        )
    crop = _edge(config.get("crop_size", 224), "crop_size", file)
    return {
        "image_size": crop,
        "resize_size": _edge(config.get("size", crop), "size", file),
        "interpolation": "bicubic",
        "mean": [float(x) for x in config.get("image_mean", OPENAI_MEAN)],
        "std": [float(x) for x in config.get("image_std", OPENAI_STD)],
    }


def choose_pad_token_id(eos_token_id: int, tokenizer: Any, vocab_size: int) -> int:
    """Pad with the token the tokenizer ends every text with (CLIP's end-of-text).

    The runtime pads a batch to its longest text. The text tower is causal, so tokens after the
    end-of-text token cannot change the states up to it; what matters is where it pools. It pools
    at the first ``eos_token_id`` (or, for legacy configs, at the first largest id): padding with
    that same end token keeps the pooled position at the real end in both cases.
    """
    ids = tokenizer.encode("a").ids
    if not ids:
        raise ToolError("tokenizer.json encodes 'a' to nothing")
    end = ids[-1]
    if eos_token_id != LEGACY_EOS_TOKEN_ID and end != eos_token_id:
        raise ToolError(
            f"the text tower pools at eos_token_id {eos_token_id} but tokenizer.json ends texts "
            f"with id {end}: config.json and tokenizer.json do not belong together"
        )
    if tokenizer.get_vocab_size() > vocab_size:
        raise ToolError(
            f"tokenizer.json has {tokenizer.get_vocab_size()} tokens but the text "
            f"tower embeds only {vocab_size}"
        )
    return end


def export(
    src: Path,
    out: Path,
    *,
    name: str,
    version: str,
    source: str,
    license: str,
    min_cosine: float = DEFAULT_MIN_COSINE,
    samples: int = 8,
    threads: int = 2,
    force: bool = False,
    checkpoint: bool = True,
) -> ModelManifest:
    """Export, check parity with the runtime, then publish ``out``; returns its manifest.
    ``checkpoint``: also write the weights a retraining run starts from."""
    import torch
    import transformers
    from tokenizers import Tokenizer
    from transformers import CLIPModel

    config = _read_json(src / "config.json")
    if config.get("model_type") != "clip":
        raise ToolError(
            f"{src / 'config.json'}: model_type {config.get('model_type')!r} is not "
            "'clip' (open_clip checkpoints: convert them to transformers first, "
            "see docs/models.md)"
        )
    if not (src / TOKENIZER).is_file():
        raise ToolError(
            f"{src / TOKENIZER} not found: save the checkpoint's CLIPTokenizerFast "
            "with save_pretrained to write it"
        )
    images = image_settings(src)
    tokenizer = Tokenizer.from_file(str(src / TOKENIZER))

    log.info("loading %s", src)
    try:
        model = CLIPModel.from_pretrained(src).eval()
    except (OSError, ValueError) as exc:  # missing or mismatched weights
        raise ToolError(f"transformers cannot load {src}: {exc}") from exc
    text, vision = model.config.text_config, model.config.vision_config
    if vision.image_size != images["image_size"]:
        raise ToolError(
            f"preprocessor_config.json crops {images['image_size']} px but the "
            f"vision tower takes {vision.image_size} px"
        )
    pad_token_id = choose_pad_token_id(text.eos_token_id, tokenizer, text.vocab_size)
    context = text.max_position_embeddings
    clip = HfClip(model)

    with staged_bundle(out, force) as staging:
        log.info("exporting both towers to ONNX")
        example = tokenize(
            TextTokenizer.from_file(src / TOKENIZER, context, pad_token_id),
            ["a photo of a red car", "a cat"],
        )
        export_towers(clip, staging, images["image_size"], context, example)
        shutil.copyfile(src / TOKENIZER, staging / TOKENIZER)
        fields = {
            "name": name,
            "version": version,
            "embedding_dim": model.config.projection_dim,
            **images,
            "context_length": context,
            "pad_token_id": pad_token_id,
            "source": source,
            "license": license,
            "description": f"transformers CLIPModel (vision {vision.hidden_size}x"
            f"{vision.num_hidden_layers} patch {vision.patch_size}, text "
            f"{text.hidden_size}x{text.num_hidden_layers}) exported to ONNX",
            "export": {
                "tool": "tools/export_clip.py",
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            },
        }
        if checkpoint:
            log.info("writing the training checkpoint")
            fields["checkpoint"] = clip.write_checkpoint(staging)
        manifest = write_manifest(staging, fields)

        log.info(
            "checking parity: PyTorch vs the runtime on %d images and %d texts",
            samples,
            2 * samples,
        )
        runtime = ClipModel.load(staging, threads=threads)
        figures = check_parity(clip, runtime, tokenizer, min_cosine, samples)
        log.info("parity: %s", figures)
        manifest = write_manifest(
            staging,
            {
                **manifest.to_dict(),
                "parity": {
                    "reference": f"PyTorch {torch.__version__} fp32, unpadded texts",
                    "min_cosine_required": min_cosine,
                    **figures,
                },
            },
        )
    log.info("wrote %s (%s)", out, manifest.model_id)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="transformers CLIPModel checkpoint folder")
    parser.add_argument("out", type=Path, help="bundle folder to write")
    parser.add_argument("--name", help="model name (default: OUT's folder name)")
    parser.add_argument("--version", default="1")
    parser.add_argument("--source", help="where the weights come from (default: SRC)")
    parser.add_argument("--license", default="unspecified", help="the weights' licence")
    parser.add_argument(
        "--min-cosine",
        type=float,
        default=DEFAULT_MIN_COSINE,
        help="fail if any parity row is below this (default %(default)s)",
    )
    parser.add_argument(
        "--samples", type=int, default=8, help="images to compare (and twice as many texts)"
    )
    parser.add_argument(
        "--no-checkpoint",
        dest="checkpoint",
        action="store_false",
        help="leave the training checkpoint out: the bundle serves but cannot be retrained",
    )
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write OUT-int8, dynamically quantised (quantize_bundle.py)",
    )
    args = parser.parse_args(argv)

    def body() -> None:
        export(
            args.src,
            args.out,
            name=args.name or args.out.name,
            version=args.version,
            source=args.source or str(args.src),
            license=args.license,
            min_cosine=args.min_cosine,
            samples=args.samples,
            threads=args.threads,
            force=args.force,
            checkpoint=args.checkpoint,
        )
        if args.int8:
            from quantize_bundle import quantize

            quantize(
                args.out,
                args.out.with_name(args.out.name + "-int8"),
                threads=args.threads,
                samples=args.samples,
                force=args.force,
            )

    return run("export_clip", body)


if __name__ == "__main__":
    sys.exit(main())
