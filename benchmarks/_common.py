"""What the benchmark scripts share: interleaved timing, markdown tables and JSON results.

Other processes may share the CPU, so the cases being compared are timed in turns (round-robin)
rather than one after the other: a burst of outside load then hits every case alike::

    times = time_interleaved({"onnx": run_onnx, "torch": run_torch}, rounds=10)
    print(markdown_table(["engine", "p50 ms"], [[k, f"{1000 * median(v):.1f}"] ...]))
    write_results("embed", {"environment": environment(), ...})
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
EVENT_FIXTURE = RESULTS.parents[1] / "tests" / "fixtures" / "events" / "apigw-http-search.json"


def time_interleaved(
    cases: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of every case, ``rounds`` times each, taking turns."""
    for _ in range(warmup):
        for run in cases.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values``; NaN for none."""
    import numpy as np

    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(*packages: str) -> dict[str, Any]:
    """The machine and library versions a result was measured with, and its load average."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in packages},
    }


def api_event(
    method: str, path: str, query: dict[str, str], body: bytes | None = None
) -> dict[str, Any]:
    """API Gateway's HTTP API (payload 2.0) event for ``method path?query``, a JPEG ``body``
    when given, from the test suite's recorded event::

        handler(api_event("GET", "/search", {"q": "a red bicycle", "k": "20"}), context)
    """
    import base64
    from urllib.parse import urlencode

    data = json.loads(EVENT_FIXTURE.read_text(encoding="utf-8"))
    data["rawPath"] = path
    data["requestContext"]["http"].update(method=method, path=path)
    data["rawQueryString"] = urlencode(query)
    data["queryStringParameters"] = query
    if body is not None:
        data["body"] = base64.b64encode(body).decode()
        data["isBase64Encoded"] = True
        data["headers"]["content-type"] = "image/jpeg"
    return data


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def photo_like_jpeg(
    width: int = 4000, height: int = 3000, seed: int = 0, shapes: int = 60, quality: int = 90
) -> bytes:
    """A JPEG that decodes like a photo: smooth regions, edges, texture and grain.

    Flat colour would compress to almost nothing and decode unrealistically fast.
    """
    import io

    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    cell = max(width, height) // 20
    coarse = rng.integers(
        0, 256, (max(1, height // cell), max(1, width // cell), 3), dtype=np.uint8
    )
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    largest = max(width, height) // 4
    for _ in range(shapes):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(20, largest)), int(rng.integers(20, largest))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=colour, outline=(0, 0, 0), width=4)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.int16)
    grain = rng.normal(0, 10, pixels.shape).astype(np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8)).save(
        buffer, "JPEG", quality=quality
    )
    return buffer.getvalue()


def fp32_bundle(cache: Path, threads: int, rebuild: bool = False) -> tuple[Path, Path]:
    """The random ViT-B/32 checkpoint and its fp32 bundle under ``cache``, built once.

    Needs ``tools/`` on ``sys.path`` (torch and transformers are imported only when building).
    """
    from export_clip import export
    from random_clip import PRESETS, write_random_clip

    checkpoint, fp32 = cache / "clip-vit-b-32-random", cache / "fp32"
    if rebuild or not (checkpoint / "config.json").is_file():
        print(f"writing a random ViT-B/32 CLIP checkpoint to {checkpoint}", flush=True)
        write_random_clip(checkpoint, PRESETS["vit-b-32"])
    if rebuild or not (fp32 / "model.json").is_file():
        export(
            checkpoint,
            fp32,
            name="clip-b32-random",
            version="1",
            source="random init (tools/random_clip.py)",
            license="n/a",
            threads=threads,
            force=True,
            checkpoint=False,  # serving benchmarks: no retraining, no 600 MB weights file
        )
    return checkpoint, fp32


def int8_bundle(cache: Path, threads: int, rebuild: bool = False) -> Path:
    """The int8 bundle of ``fp32_bundle``'s, in ``benchmarks/embed.py``'s cache layout (shared
    with it), built once. Needs ``tools/`` on ``sys.path`` like ``fp32_bundle``."""
    from quantize_bundle import quantize

    _, fp32 = fp32_bundle(cache, threads, rebuild)
    int8 = cache / "int8"
    if rebuild or not (int8 / "model.json").is_file():
        quantize(fp32, int8, threads=threads, force=True)
    return int8
