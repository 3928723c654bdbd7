"""Quantise a model bundle to int8 with onnxruntime's dynamic quantisation.

Weights of the ``MatMul``/``Gemm`` nodes (every linear layer of both transformers) and of
``Gather`` (the token embedding table, a third of the text tower) become int8; activations are
quantised on the fly, so no calibration data is needed. ``Conv`` (the patch embedding) stays
float: ``ConvInteger`` is slower than the float ``Conv`` on CPU (see docs/models.md).

The result is a new bundle, version ``<version>-int8``, with fresh sha256s, its parity figures
against the float bundle in ``model.json`` and the float bundle's training checkpoint, if it has
one (retraining starts from the fp32 weights); a row below ``--min-cosine`` fails the run (exit code
1) and nothing is written::

    python tools/quantize_bundle.py models/clip-b32 models/clip-b32-int8 --images ./photos
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from bundle_writer import run
from imgsearch_training.bundle import (
    ToolError,
    cosine_figures,
    random_pixels,
    random_texts,
    require_parity,
    staged_bundle,
    write_manifest,
)

from imgsearch.core.keys import IMAGE_EXTENSIONS
from imgsearch.model import BundleError, ClipModel, ImageError, ModelManifest, preprocess
from imgsearch.model.bundle import TEXTUAL, TOKENIZER, VISUAL

log = logging.getLogger("imgsearch.tools.quantize")

DEFAULT_MIN_COSINE = 0.99
DEFAULT_OP_TYPES = ("MatMul", "Gemm", "Gather")


def _real_images(model: ClipModel, folder: Path, limit: int) -> list:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)[:limit]
    pixels = []
    for file in files:
        try:
            pixels.append(preprocess(file.read_bytes(), model.manifest))
        except ImageError as exc:
            log.warning("skipping %s: %s", file, exc)
    if not pixels:
        raise ToolError(f"no usable images in {folder}")
    return pixels


def quantize(
    src: Path,
    out: Path,
    *,
    suffix: str = "-int8",
    op_types: Sequence[str] = DEFAULT_OP_TYPES,
    per_channel: bool = False,
    reduce_range: bool = False,
    preprocess: bool = False,
    min_cosine: float = DEFAULT_MIN_COSINE,
    samples: int = 16,
    images: Path | None = None,
    threads: int = 2,
    force: bool = False,
) -> ModelManifest:
    """Write the int8 bundle of ``src`` to ``out`` once it passes the parity check."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from tokenizers import Tokenizer

    try:
        reference = ClipModel.load(src, threads=threads)
    except BundleError as exc:
        raise ToolError(f"source bundle {src} is not valid: {exc}") from exc
    if "quantization" in reference.manifest.extra:
        raise ToolError(f"{src} ({reference.model_id}) is already quantised")
    settings = {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": "QInt8",
        "op_types": list(op_types),
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "preprocessed": preprocess,
        "source_model_id": reference.model_id,
    }

    with staged_bundle(out, force) as staging:
        for name in (VISUAL, TEXTUAL):
            graph = src / name
            if preprocess:
                log.info("pre-processing %s (shape inference, graph optimisation)", name)
                graph = staging / f"{name}.pre"
                # symbolic shape inference gives up on the text tower's dynamic token axis
                quant_pre_process(src / name, graph, skip_symbolic_shape=True)
            log.info("quantising %s", name)
            quantize_dynamic(
                graph,
                staging / name,
                op_types_to_quantize=list(op_types),
                per_channel=per_channel,
                reduce_range=reduce_range,
                weight_type=QuantType.QInt8,
            )
            if preprocess:
                graph.unlink()
        shutil.copyfile(src / TOKENIZER, staging / TOKENIZER)
        # the fp32 weights a retraining run starts from (its candidate is fp32 again)
        if (checkpoint := reference.manifest.checkpoint_file) and (src / checkpoint).is_file():
            shutil.copyfile(src / checkpoint, staging / checkpoint)
        fields = reference.manifest.to_dict()
        fields.pop("parity", None)
        manifest = write_manifest(
            staging,
            {**fields, "version": reference.manifest.version + suffix, "quantization": settings},
        )

        log.info("checking parity: %s vs %s", manifest.model_id, reference.model_id)
        candidate = ClipModel.load(staging, threads=threads)
        pixels = random_pixels(samples, manifest.image_size)
        texts = random_texts(
            Tokenizer.from_file(str(src / TOKENIZER)), samples, manifest.context_length
        )
        figures = {
            "visual": cosine_figures(
                reference.encode_images(pixels), candidate.encode_images(pixels)
            ),
            "textual": cosine_figures(reference.encode_text(texts), candidate.encode_text(texts)),
        }
        if images is not None:
            real = _real_images(reference, images, samples)
            figures["visual_images"] = cosine_figures(
                reference.encode_images(real), candidate.encode_images(real)
            )
        log.info("parity: %s", figures)
        require_parity(figures, min_cosine)
        manifest = write_manifest(
            staging,
            {
                **manifest.to_dict(),
                "parity": {
                    "reference": reference.model_id,
                    "min_cosine_required": min_cosine,
                    **figures,
                },
            },
        )
    log.info("wrote %s (%s)", out, manifest.model_id)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="float model bundle folder")
    parser.add_argument("out", type=Path, help="int8 bundle folder to write")
    parser.add_argument("--suffix", default="-int8", help="appended to the version")
    parser.add_argument(
        "--op-types",
        default=",".join(DEFAULT_OP_TYPES),
        help="ONNX op types to quantise, comma separated (default %(default)s)",
    )
    parser.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weights")
    parser.add_argument(
        "--preprocess",
        action="store_true",
        help="run onnxruntime's quant_pre_process (shape inference, optimisation) first",
    )
    parser.add_argument(
        "--min-cosine",
        type=float,
        default=DEFAULT_MIN_COSINE,
        help="fail if any parity row is below this (default %(default)s)",
    )
    parser.add_argument("--samples", type=int, default=16, help="inputs per parity check")
    parser.add_argument("--images", type=Path, help="also compare on images from this folder")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    return run(
        "quantize_bundle",
        lambda: quantize(
            args.src,
            args.out,
            suffix=args.suffix,
            op_types=args.op_types.split(","),
            per_channel=args.per_channel,
            reduce_range=args.reduce_range,
            preprocess=args.preprocess,
            min_cosine=args.min_cosine,
            samples=args.samples,
            images=args.images,
            threads=args.threads,
            force=args.force,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
