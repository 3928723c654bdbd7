"""``imgsearch embed PATH...``: embed local images with a model bundle, one JSON line each."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from imgsearch.core.keys import IMAGE_EXTENSIONS
from imgsearch.model import ImageError, ImageLimits, embed_images
from imgsearch_devkit.cli.common import (
    BundleError,
    add_json_argument,
    fail,
    load_model,
    print_json,
)
from imgsearch_devkit.project import operator_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed local image files",
        description=(
            "Embed image files (folders are walked for image files) and print one JSON line per "
            "input: its key, the vector's dimension, the model id and the first values, or the "
            "error that makes it unusable. Exits 1 when any input failed."
        ),
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parser.add_argument("--bundle", help="model bundle folder or s3:// prefix (default: demo)")
    parser.add_argument("--out", type=Path, help="write all vectors to this .npy file (float32)")
    parser.add_argument("--head", type=int, default=4, help="how many leading values to print")
    parser.add_argument("--batch-size", type=int, default=0, help="images per model call")
    add_json_argument(parser, always=True)
    parser.set_defaults(func=run)


def expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                )
            )
        else:
            files.append(path)
    return files


def run(args: argparse.Namespace) -> int:
    settings = operator_settings()
    try:
        model = load_model(args.bundle, settings)
    except BundleError as exc:
        return fail(str(exc))
    limits = ImageLimits(settings.model.max_image_bytes, settings.model.max_image_pixels)
    batch_size = args.batch_size or settings.model.batch_size
    files = expand(args.paths)
    if not files:
        return fail("no image files found")
    vectors: list[np.ndarray] = []
    failed = 0
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        blobs: list[bytes] = []
        for file in chunk:
            try:
                blobs.append(file.read_bytes())
            except OSError:
                blobs.append(b"")  # reported below as a read error
        for file, data, result in zip(
            chunk, blobs, embed_images(model, blobs, limits), strict=True
        ):
            line: dict[str, object] = {"key": str(file), "model": model.model_id}
            if isinstance(result, ImageError):
                failed += 1
                reason = result.reason if data or file.is_file() else "unreadable"
                line.update(
                    error=reason, detail=result.detail if file.is_file() else "no such file"
                )
            else:
                line.update(
                    dim=int(result.shape[0]), head=[round(float(v), 6) for v in result[: args.head]]
                )
                if args.out:
                    line.update(vectors=str(args.out), row=len(vectors))
                vectors.append(result)
            print_json(line)
    if args.out and vectors:
        np.save(args.out, np.stack(vectors).astype(np.float32))
    return 1 if failed else 0
