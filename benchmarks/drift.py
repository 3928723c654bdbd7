"""Embedding drift detection: false alarms on same-distribution windows, detection of real
photographs among synthetic scenes, and the detector's cost for a 10,000 x 512 window.

The embeddings are the production ones: images are JPEG-encoded and go through
``imgsearch.model.embed_images`` (decode, CLIP preprocessing, the image tower) with the embedded
demo model (``models/demo-clip``), then are stored as float16 as the index and the embeddings
table store them. The detector is ``imgsearch.monitor.drift.mmd_test`` at its defaults; every
window is also tested with the single median-heuristic kernel (``bandwidths=(1.0,)``), the
classic form of the test, for comparison.

1. False alarms: the reference is ``--reference`` scenes of ``imgsearch_devkit.demo.scenes``
   (one seed, kinds drawn at random as uploads come); each of ``--windows`` windows is
   ``--window`` fresh scenes of another seed. Target: at most 5 % of windows flagged.
2. Detection: the same windows with a share of their scenes (``--shares``; the first is the
   stated shift) replaced by real photographs that scikit-image ships inside its wheel
   (``imgsearch_devkit.demo.photos``, no download), each a random crop (40-100 % of the short
   side, aspect 3:4 to 4:3), maybe flipped, resized to a long side of 160-480 px, JPEG quality
   70-95, so windows do not share pixels. Target: at least 95 % flagged at 20 %.
3. A change in the mix of known content: the same windows with their scenes of one of the eight
   colours replaced by scenes of the other seven (no target: it shows what a 1-in-8 change of
   the mix looks like to the detector).
4. Cost: ``mmd_test`` on a 10,000-row window against a 10,000-row reference of random 512-d
   unit vectors (the figures do not depend on the values), seconds (median of ``--rounds``) and
   the peak of numpy's allocations during the call (tracemalloc; BLAS's own scratch memory is
   not counted), at the default ``max_samples`` and at ``--large-max-samples``.

::

    python benchmarks/drift.py            # defaults: about 3 minutes on 2 cores
    python benchmarks/drift.py --quick    # a smoke test: 20 windows, a smaller reference

Prints markdown tables and writes ``benchmarks/results/drift.json``.
"""

from __future__ import annotations

import argparse
import inspect
import math
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import environment, markdown_table, median, write_results
from imgsearch_devkit.demo.photos import PHOTOGRAPHS, jpeg, photo_jpegs, photographs
from imgsearch_devkit.demo.scenes import COLOURS, generate, random_scene, render

from imgsearch.model import ClipModel, embed_images
from imgsearch.monitor.drift import mmd_test

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo-clip"
REFERENCE_SEED = 3100
"""The reference scenes' seed; window ``w`` has seed ``REFERENCE_SEED + 1 + w``. The detector's
widths were chosen on other seeds (1700 on), so these windows are a held-out check."""
PHOTO_SEED, MIX_SEED = 3_000_000, 4_000_000
MISSING_COLOUR = "pink"
"""The mix-change windows: scenes of every kind but this colour's (7 of the 8 colours)."""
CLASSIC = (1.0,)
"""The single median-heuristic kernel, for comparison with the default widths."""
DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(mmd_test).parameters.items()
    if parameter.default is not inspect.Parameter.empty
}
"""``mmd_test``'s own defaults: what the monitor runs with unless configured otherwise."""
ALPHAS = (DEFAULTS["alpha"], 0.05)
"""Flags are also counted at 0.05 from the same p-values (a laxer setting, for comparison)."""


def scene_jpegs(count: int, seed: int) -> tuple[list[bytes], np.ndarray]:
    """``count`` scenes, and which of them are of ``MISSING_COLOUR``."""
    pairs = generate(count, seed, balanced=False)
    return [jpeg(image) for image, _ in pairs], np.array(
        [scene.colour == MISSING_COLOUR for _, scene in pairs]
    )


def mix_jpegs(count: int, seed: int) -> list[bytes]:
    """Scenes as ``generate`` draws them but never of ``MISSING_COLOUR``."""
    rng = np.random.default_rng(seed)
    colours = [c for c in COLOURS if c != MISSING_COLOUR]
    return [jpeg(render(random_scene(rng, str(rng.choice(colours))))) for _ in range(count)]


def without_colour(window: np.ndarray, missing: np.ndarray, spare: np.ndarray) -> np.ndarray:
    """``window`` with its ``MISSING_COLOUR`` scenes replaced by ``spare`` scenes."""
    if missing.sum() > len(spare):
        raise RuntimeError(f"{missing.sum()} scenes to replace, {len(spare)} spare")
    return np.concatenate([window[~missing], spare[: missing.sum()]])


def embed(model: ClipModel, blobs: Sequence[bytes], batch: int = 64) -> np.ndarray:
    """The stored form of the images' embeddings: unit float32 from the model, kept as float16."""
    rows = []
    for start in range(0, len(blobs), batch):
        for vector in embed_images(model, blobs[start : start + batch]):
            if not isinstance(vector, np.ndarray):
                raise RuntimeError(f"an image failed to embed: {vector}")
            rows.append(vector)
    return np.stack(rows).astype(np.float16)


def wilson(hits: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a rate (sound at 0 or all hits, unlike p +- 2 se)."""
    p = hits / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    )
    return max(0.0, centre - half), min(1.0, centre + half)


def scenario(
    name: str,
    share: float,
    reference: np.ndarray,
    windows: Sequence[np.ndarray],
    seed: int,
    target: str,
) -> dict[str, Any]:
    """Test every window at ``mmd_test``'s defaults and with the single median-heuristic kernel."""
    results, seconds = [], []
    for number, window in enumerate(windows):
        started = time.perf_counter()
        results.append(mmd_test(reference, window, rng=np.random.default_rng(seed + number)))
        seconds.append(time.perf_counter() - started)
    classic = [
        mmd_test(reference, window, bandwidths=CLASSIC, rng=np.random.default_rng(seed + number))
        for number, window in enumerate(windows)
    ]
    row: dict[str, Any] = {
        "scenario": name,
        "photo_share": share,
        "target": target,
        "windows": len(results),
        "window_size": results[0].current_size,
        "reference_size": results[0].reference_size,
        "median_statistic": median([r.statistic for r in results]),
        "median_threshold": median([r.threshold for r in results]),
        "median_p_value": median([r.p_value for r in results]),
        "median_centroid_shift": median([r.centroid_shift for r in results]),
        "mean_test_seconds": statistics.fmean(seconds),
    }
    for alpha in ALPHAS:
        hits = sum(r.p_value < alpha for r in results)
        row[f"flagged_at_{alpha:g}"] = hits
        row[f"rate_at_{alpha:g}"] = hits / len(results)
        row[f"rate_ci95_at_{alpha:g}"] = wilson(hits, len(results))
    row["classic_flagged"] = sum(r.drift for r in classic)
    row["classic_rate"] = row["classic_flagged"] / len(classic)
    print(
        f"  {name}: {sum(r.drift for r in results)} / {len(results)} flagged "
        f"(single kernel: {row['classic_flagged']})",
        flush=True,
    )
    return row


def unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((rows, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def cost(rows: int, dim: int, max_samples: int, dtype: str, rounds: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    reference = unit_rows(rng, rows, dim).astype(dtype)
    current = unit_rows(rng, rows, dim).astype(dtype)

    def once() -> None:
        mmd_test(reference, current, max_samples=max_samples, rng=np.random.default_rng(1))

    tracemalloc.start()  # this first call also warms up BLAS's threads
    once()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        once()
        seconds.append(time.perf_counter() - started)
    return {
        "rows": rows,
        "dim": dim,
        "dtype": dtype,
        "max_samples": max_samples,
        "permutations": DEFAULTS["permutations"],
        "seconds_median": median(seconds),
        "seconds": seconds,
        "peak_mib": peak / 2**20,
        "inputs_mib": (reference.nbytes + current.nbytes) / 2**20,
    }


def percent(rate: float) -> str:
    return f"{100 * rate:.0f} %"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=int, default=1000, help="reference scenes")
    parser.add_argument("--windows", type=int, default=100, help="windows per scenario")
    parser.add_argument("--window", type=int, default=150, help="images per window")
    parser.add_argument(
        "--shares",
        type=float,
        nargs="+",
        default=[0.2, 0.1, 0.05],
        help="photograph shares of the shifted windows; the first is the stated shift",
    )
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime and decode threads")
    parser.add_argument("--cost-rows", type=int, default=10_000)
    parser.add_argument("--cost-dim", type=int, default=512)
    parser.add_argument("--large-max-samples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per cost case")
    parser.add_argument("--quick", action="store_true", help="20 windows, 400 reference scenes")
    args = parser.parse_args(argv)
    if args.quick:
        args.reference, args.windows, args.rounds = 400, 20, 1
    command = sys.argv[1:] if argv is None else argv
    started = time.perf_counter()

    model = ClipModel.load(DEMO, threads=args.threads)
    counts = [round(share * args.window) for share in args.shares]
    print(
        f"embedding {args.reference} + {args.windows} x {args.window + args.window // 4} scenes "
        f"and {args.windows} x {max(counts)} photographs with {model.model_id}",
        flush=True,
    )
    reference = embed(model, scene_jpegs(args.reference, REFERENCE_SEED)[0])
    windows, missing = [], []
    for w in range(args.windows):
        blobs, of_colour = scene_jpegs(args.window, REFERENCE_SEED + 1 + w)
        windows.append(embed(model, blobs))
        missing.append(of_colour)
    sources = photographs()
    photos = [
        embed(model, photo_jpegs(sources, max(counts), PHOTO_SEED + w)) for w in range(args.windows)
    ]
    # About 1 in 8 scenes is of the missing colour: a spare quarter of a window is plenty.
    mixes = [
        without_colour(window, of_colour, embed(model, mix_jpegs(args.window // 4, MIX_SEED + w)))
        for w, (window, of_colour) in enumerate(zip(windows, missing, strict=True))
    ]
    embed_seconds = time.perf_counter() - started
    print(f"  done in {embed_seconds:.0f} s; testing", flush=True)

    rows = [scenario("same distribution", 0.0, reference, windows, 10_000, "<= 5 %")]
    for number, (share, count) in enumerate(zip(args.shares, counts, strict=True)):
        shifted = [
            np.concatenate([window[: args.window - count], photo[:count]])
            for window, photo in zip(windows, photos, strict=True)
        ]
        name = f"{count} of {args.window} are photographs ({percent(share)})"
        target = ">= 95 %" if number == 0 else "-"
        rows.append(scenario(name, share, reference, shifted, 20_000 + 1000 * number, target))
    rows.append(scenario(f"{MISSING_COLOUR} scenes replaced", 0.0, reference, mixes, 30_000, "-"))
    test_seconds = time.perf_counter() - started - embed_seconds

    print(f"measuring the cost at {args.cost_rows:,} x {args.cost_dim}", flush=True)
    costs = [
        cost(args.cost_rows, args.cost_dim, DEFAULTS["max_samples"], dtype, args.rounds)
        for dtype in ("float32", "float16")
    ]
    costs.append(
        cost(args.cost_rows, args.cost_dim, args.large_max_samples, "float32", args.rounds)
    )

    env = environment("numpy", "onnxruntime", "pillow", "scikit-image")
    default_alpha, lax_alpha = (f"{a:g}" for a in ALPHAS)
    print(
        f"\nCPU: {env['cpu']} ({env['cpu_count']} cores), load average "
        f"{env['load_average_1_5_15']}; mmd_test defaults: alpha {default_alpha}, "
        f"permutations {DEFAULTS['permutations']}, max_samples {DEFAULTS['max_samples']}, "
        f"{len(DEFAULTS['bandwidths'])} kernel widths\n"
    )
    print(
        f"Drift of {model.model_id} image embeddings (float16): {args.reference} synthetic scenes "
        f"as the reference; {args.windows} windows of {args.window} further scenes, each of its "
        f"own seed; the same windows with a share of their scenes replaced by augmented "
        f"scikit-image photographs; and the same windows with their "
        f"{MISSING_COLOUR} scenes replaced by scenes of other colours (a change in the mix):\n"
    )
    print(
        markdown_table(
            [
                "windows",
                f"flagged (alpha {default_alpha})",
                "95 % CI",
                "target",
                f"at alpha {lax_alpha}",
                "single median kernel",
                "median statistic",
                "median threshold",
                "median centroid shift",
            ],
            [
                [
                    r["scenario"],
                    f"{r[f'flagged_at_{default_alpha}']} / {r['windows']} = "
                    f"{percent(r[f'rate_at_{default_alpha}'])}",
                    "{} - {}".format(*(percent(x) for x in r[f"rate_ci95_at_{default_alpha}"])),
                    r["target"],
                    percent(r[f"rate_at_{lax_alpha}"]),
                    percent(r["classic_rate"]),
                    f"{r['median_statistic']:.2f}",
                    f"{r['median_threshold']:.2f}",
                    f"{r['median_centroid_shift']:.3f}",
                ]
                for r in rows
            ],
        )
    )
    print(
        f"\nCost of one test, {args.cost_rows:,}-row window vs {args.cost_rows:,}-row reference, "
        f"{args.cost_dim}-d random unit vectors, {DEFAULTS['permutations']} permutations "
        f"(median of {args.rounds} calls; peak = numpy's allocations during the call, beyond "
        f"the inputs):\n"
    )
    print(
        markdown_table(
            ["max_samples a side", "input", "seconds", "peak MiB", "inputs MiB"],
            [
                [
                    f"{c['max_samples']:,}"
                    + (" (default)" if c["max_samples"] == DEFAULTS["max_samples"] else ""),
                    c["dtype"],
                    f"{c['seconds_median']:.2f}",
                    f"{c['peak_mib']:.0f}",
                    f"{c['inputs_mib']:.0f}",
                ]
                for c in costs
            ],
        )
    )
    total = time.perf_counter() - started
    print(
        f"\nPhotographs: {', '.join(PHOTOGRAPHS)}. A {args.window}-image window's test took "
        f"{1000 * rows[0]['mean_test_seconds']:.0f} ms. Embedding {embed_seconds:.0f} s, "
        f"tests {test_seconds:.0f} s, total {total:.0f} s."
    )
    path = write_results(
        "drift",
        {
            "environment": env,
            "command": " ".join(["python benchmarks/drift.py", *command]),
            "seconds": round(total, 1),
            "model": model.model_id,
            "mmd_test_defaults": DEFAULTS,
            "photographs": list(PHOTOGRAPHS),
            "reference_scenes": args.reference,
            "window": args.window,
            "scenarios": rows,
            "cost": costs,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
