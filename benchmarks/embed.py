"""Embedding speed: ONNX fp32 vs ONNX int8 vs PyTorch eager, and 12-megapixel JPEG preprocessing.

Builds a randomly initialised ViT-B/32-shaped CLIP (timings do not depend on weight values),
exports it with ``tools/export_clip.py`` and quantises it with ``tools/quantize_bundle.py``, all
cached under ``benchmarks/.cache/``. Then, with the same thread count for every engine and the
cases timed in turns, it measures images/s at batch 1 and 8, the latency of one short text query,
and the preprocessing of a 4000x3000 JPEG with and without the JPEG draft (DCT-scaling) path::

    python benchmarks/embed.py --threads 2

Prints markdown tables and writes ``benchmarks/results/embed.json``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    environment,
    fp32_bundle,
    markdown_table,
    median,
    photo_like_jpeg,
    time_interleaved,
    write_results,
)

from imgsearch.model import ClipModel, ImageLimits, decode_image, preprocess, to_pixels

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from bundle_writer import show_progress  # noqa: E402
from quantize_bundle import quantize  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
QUERY = "a photo of a red car"
TARGETS = {"fp32_vs_torch": 2.0, "int8_vs_fp32": 1.7, "draft_share_of_model": 0.10}


def prepare_bundles(cache: Path, threads: int, rebuild: bool) -> tuple[Path, Path, Path]:
    """The random checkpoint and its fp32 and int8 bundles, built once and cached."""
    checkpoint, fp32 = fp32_bundle(cache, threads, rebuild)
    int8 = cache / "int8"
    if rebuild or not (int8 / "model.json").is_file():
        quantize(fp32, int8, threads=threads, force=True)
    return checkpoint, fp32, int8


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for every engine")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="timed batch-8 calls per engine (3x for batch 1, 10x for text)",
    )
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached bundles")
    args = parser.parse_args(argv)

    # The ONNX sessions never spin idle threads (session.py); torch's OpenMP pool waits passively
    # too, so that neither engine burns CPU time while the other one is being timed.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from transformers import CLIPModel

    torch.set_num_threads(args.threads)
    show_progress()
    checkpoint, fp32_path, int8_path = prepare_bundles(args.cache, args.threads, args.rebuild)
    fp32 = ClipModel.load(fp32_path, threads=args.threads)
    int8 = ClipModel.load(int8_path, threads=args.threads)
    clip = CLIPModel.from_pretrained(checkpoint).eval()

    def torch_images(pixels: np.ndarray) -> Any:
        with torch.inference_mode():
            return clip.get_image_features(pixel_values=torch.from_numpy(pixels))

    def torch_text(texts: list[str]) -> Any:
        with torch.inference_mode():
            return clip.get_text_features(input_ids=torch.from_numpy(fp32.tokenizer(texts)))

    rng = np.random.default_rng(0)
    size = fp32.manifest.image_size
    batches = {b: rng.standard_normal((b, 3, size, size)).astype(np.float32) for b in (1, 8)}
    engines = {"ONNX fp32": fp32, "ONNX int8": int8}
    seconds: dict[str, dict[str, float]] = {name: {} for name in [*engines, "PyTorch eager"]}
    for batch, rounds in ((1, 3 * args.rounds), (8, args.rounds)):
        print(f"timing images at batch {batch} ({rounds} rounds)", flush=True)
        cases = {
            name: (lambda m=m, p=batches[batch]: m.encode_images(p)) for name, m in engines.items()
        }
        cases["PyTorch eager"] = lambda p=batches[batch]: torch_images(p)
        for name, times in time_interleaved(cases, rounds).items():
            seconds[name][f"batch{batch}"] = median(times)
    print(f"timing the text query {QUERY!r} ({10 * args.rounds} rounds)", flush=True)
    cases = {name: (lambda m=m: m.encode_text([QUERY])) for name, m in engines.items()}
    cases["PyTorch eager"] = lambda: torch_text([QUERY])
    for name, times in time_interleaved(cases, 10 * args.rounds).items():
        seconds[name]["text"] = median(times)

    print("timing 12-megapixel JPEG preprocessing", flush=True)
    jpeg = photo_like_jpeg()
    manifest = fp32.manifest
    limits = ImageLimits()
    prep = time_interleaved(
        {
            "draft": lambda: preprocess(jpeg, manifest, limits),
            "full": lambda: to_pixels(decode_image(jpeg, limits, min_side=0), manifest),
        },
        2 * args.rounds,
    )
    prep_s = {name: median(times) for name, times in prep.items()}

    engine_rows, results = [], {}
    for name, s in seconds.items():
        results[name] = {
            "images_per_s_batch1": 1 / s["batch1"],
            "images_per_s_batch8": 8 / s["batch8"],
            "text_p50_ms": 1000 * s["text"],
        }
        r = results[name]
        engine_rows.append(
            [
                name,
                f"{r['images_per_s_batch1']:.2f}",
                f"{r['images_per_s_batch8']:.2f}",
                f"{r['text_p50_ms']:.1f}",
            ]
        )

    def ratios(fast: str, slow: str) -> dict[str, float]:
        a, b = results[fast], results[slow]
        return {
            "batch1": a["images_per_s_batch1"] / b["images_per_s_batch1"],
            "batch8": a["images_per_s_batch8"] / b["images_per_s_batch8"],
            "text": b["text_p50_ms"] / a["text_p50_ms"],
        }

    speedups = {
        "fp32_vs_torch": ratios("ONNX fp32", "PyTorch eager"),
        "int8_vs_fp32": ratios("ONNX int8", "ONNX fp32"),
    }
    for key, label in (
        ("fp32_vs_torch", "speed-up fp32 / torch"),
        ("int8_vs_fp32", "speed-up int8 / fp32"),
    ):
        r = speedups[key]
        engine_rows.append(
            [
                f"**{label}** (target ≥ {TARGETS[key]}×)",
                f"{r['batch1']:.2f}×",
                f"{r['batch8']:.2f}×",
                f"{r['text']:.2f}×",
            ]
        )

    model_per_image = {name: 1 / results[name]["images_per_s_batch8"] for name in engines}
    prep_rows = []
    for name, label in (
        ("full", "full decode (min_side=0)"),
        ("draft", f"JPEG draft (min_side={manifest.resize})"),
    ):
        shares = [prep_s[name] / model_per_image[e] for e in engines]
        prep_rows.append(
            [label, f"{1000 * prep_s[name]:.1f}", *(f"{100 * share:.1f} %" for share in shares)]
        )

    command = "python benchmarks/embed.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    env = environment("onnxruntime", "torch", "transformers", "numpy", "pillow")
    print(
        f"\n`{command.strip()}` — {env['cpu']}, {args.threads} threads for every engine, "
        f"load average {env['load_average_1_5_15']}, random-weight ViT-B/32 CLIP\n"
    )
    print(
        markdown_table(
            ["engine", "images/s, batch 1", "images/s, batch 8", "text query p50 ms"], engine_rows
        )
    )
    print()
    print(
        markdown_table(
            [
                "12 MP JPEG (4000×3000) → pixels",
                "ms",
                "% of fp32 model time/image (b8)",
                "% of int8 model time/image (b8)",
            ],
            prep_rows,
        )
    )
    draft_share = prep_s["draft"] / model_per_image["ONNX int8"]
    met = {
        "fp32_vs_torch": min(speedups["fp32_vs_torch"].values()) >= TARGETS["fp32_vs_torch"],
        "int8_vs_fp32": min(speedups["int8_vs_fp32"].values()) >= TARGETS["int8_vs_fp32"],
        "draft_share_of_model": draft_share < TARGETS["draft_share_of_model"],
    }
    print(
        "\ntargets met (every column): "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in met.items())
    )
    path = write_results(
        "embed",
        {
            "command": command.strip(),
            "environment": env,
            "threads": args.threads,
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "rounds": args.rounds,
            "model": fp32.model_id,
            "engines": results,
            "speedups": speedups,
            "preprocess_12mp_ms": {name: 1000 * s for name, s in prep_s.items()},
            "jpeg_bytes": len(jpeg),
            "draft_share_of_int8_model_time": draft_share,
            "targets": TARGETS,
            "targets_met": met,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
