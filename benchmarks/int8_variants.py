"""Which int8 quantisation settings to use: speed, size and parity of each, in one run.

Quantises the cached random-weight ViT-B/32 fp32 bundle of ``benchmarks/embed.py`` with each
variant of ``tools/quantize_bundle.py`` (cached under ``benchmarks/.cache/int8-variants/``), then
times every bundle's image tower (batch 1 and 8) and one text query in turns, with the same thread
count, and reads each variant's parity figures against fp32 from its ``model.json``::

    python benchmarks/int8_variants.py --threads 2

Prints a markdown table and writes ``benchmarks/results/int8_variants.json``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
from _common import environment, markdown_table, median, time_interleaved, write_results
from embed import CACHE, QUERY, prepare_bundles

from imgsearch.model import ClipModel
from imgsearch.model.bundle import TEXTUAL, VISUAL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from bundle_writer import show_progress
from quantize_bundle import DEFAULT_OP_TYPES, quantize

VARIANTS: dict[str, dict] = {
    "default (MatMul,Gemm,Gather)": {},
    "no Gather": {"op_types": ("MatMul", "Gemm")},
    "+ Conv": {"op_types": (*DEFAULT_OP_TYPES, "Conv")},
    "per_channel": {"per_channel": True},
    "reduce_range": {"reduce_range": True},
    "per_channel + reduce_range": {"per_channel": True, "reduce_range": True},
    "quant_pre_process first": {"preprocess": True},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for every bundle")
    parser.add_argument("--rounds", type=int, default=5, help="timed batch-8 calls per bundle")
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args(argv)
    show_progress()

    _, fp32_path, _ = prepare_bundles(args.cache, args.threads, rebuild=False)
    paths = {"fp32": fp32_path}
    for index, (name, settings) in enumerate(VARIANTS.items()):
        path = args.cache / "int8-variants" / str(index)
        if not (path / "model.json").is_file():
            # min_cosine 0: a variant is measured whatever its parity, not rejected
            quantize(fp32_path, path, min_cosine=0.0, threads=args.threads, force=True, **settings)
        paths[name] = path
    models = {name: ClipModel.load(path, threads=args.threads) for name, path in paths.items()}

    size = models["fp32"].manifest.image_size
    rng = np.random.default_rng(0)
    batches = {b: rng.standard_normal((b, 3, size, size)).astype(np.float32) for b in (1, 8)}
    seconds: dict[str, dict[str, float]] = {name: {} for name in models}
    for batch, rounds in ((1, 3 * args.rounds), (8, args.rounds)):
        print(f"timing images at batch {batch} ({rounds} rounds)", flush=True)
        cases = {n: (lambda m=m, p=batches[batch]: m.encode_images(p)) for n, m in models.items()}
        for name, times in time_interleaved(cases, rounds).items():
            seconds[name][f"batch{batch}"] = median(times)
    cases = {name: (lambda m=m: m.encode_text([QUERY])) for name, m in models.items()}
    for name, times in time_interleaved(cases, 10 * args.rounds).items():
        seconds[name]["text"] = median(times)

    rows, results = [], {}
    for name, model in models.items():
        parity = model.manifest.extra.get("parity", {}) if name != "fp32" else {}
        s = seconds[name]
        results[name] = {
            "settings": model.manifest.extra.get("quantization"),
            "images_per_s_batch1": 1 / s["batch1"],
            "images_per_s_batch8": 8 / s["batch8"],
            "text_p50_ms": 1000 * s["text"],
            "visual_mb": paths[name].joinpath(VISUAL).stat().st_size / 1e6,
            "textual_mb": paths[name].joinpath(TEXTUAL).stat().st_size / 1e6,
            "parity_vs_fp32": {k: parity[k] for k in ("visual", "textual") if k in parity},
        }
        r = results[name]
        cosines = [
            f"{r['parity_vs_fp32'][k]['min_cosine']:.5f}" if k in r["parity_vs_fp32"] else "1"
            for k in ("visual", "textual")
        ]
        rows.append(
            [
                name,
                f"{r['images_per_s_batch1']:.2f}",
                f"{r['images_per_s_batch8']:.2f}",
                f"{r['text_p50_ms']:.1f}",
                f"{r['visual_mb']:.0f} / {r['textual_mb']:.0f}",
                *cosines,
            ]
        )

    command = "python benchmarks/int8_variants.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    env = environment("onnxruntime", "numpy")
    print(
        f"\n`{command.strip()}` — {env['cpu']}, {args.threads} threads, load average "
        f"{env['load_average_1_5_15']}, random-weight ViT-B/32 CLIP\n"
    )
    print(
        markdown_table(
            [
                "variant",
                "images/s b1",
                "images/s b8",
                "text p50 ms",
                "MB visual / textual",
                "min cos visual",
                "min cos text",
            ],
            rows,
        )
    )
    path = write_results(
        "int8_variants",
        {
            "command": command.strip(),
            "environment": env,
            "threads": args.threads,
            "variants": results,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
