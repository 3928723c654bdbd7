"""What every bundle writer shares: staging, manifests, parity inputs and figures, errors.

The tools (``tools/train_demo_clip.py``, ``export_clip.py``, ``quantize_bundle.py``) and the
training job build a new bundle in a staging folder beside ``out`` and move it into place only
once its parity check has passed, so a failed run never leaves a half bundle behind::

    from imgsearch_training.bundle import (
        cosine_figures, require_parity, staged_bundle, write_manifest,
    )

    with staged_bundle(out, force=False) as staging:
        ...  # write visual.onnx, textual.onnx, tokenizer.json into staging
        manifest = write_manifest(staging, {"name": "clip", "version": "1", ...})
        figures = {"visual": cosine_figures(reference, candidate)}
        require_parity(figures, min_cosine=0.999)     # raises ParityError: nothing published
        write_manifest(staging, {**manifest.to_dict(), "parity": figures})
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from imgsearch.model.bundle import MANIFEST, REQUIRED_FILES, ModelManifest, sha256_file


class ToolError(Exception):
    """Bad input or environment: exit code 2."""

    exit_code = 2


class ParityError(ToolError):
    """The new bundle does not compute what its reference computes: exit code 1."""

    exit_code = 1


@contextmanager
def staged_bundle(out: Path, force: bool = False) -> Iterator[Path]:
    """A fresh folder beside ``out``; it replaces ``out`` only if the block succeeds."""
    if out.exists() and not force:
        raise ToolError(f"{out} already exists (pass --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would make the published bundle private
    try:
        yield staging
        if out.exists():
            old = staging.with_suffix(".old")
            out.rename(old)
            shutil.rmtree(old)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_manifest(root: Path, fields: dict[str, Any]) -> ModelManifest:
    """Hash the bundle's files, write ``model.json`` and return it, validated by the runtime."""
    files = {name: sha256_file(root / name) for name in REQUIRED_FILES}
    manifest = ModelManifest.from_dict({**fields, "files": files}, str(root / MANIFEST))
    (root / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    return manifest


def cosine_figures(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | int]:
    """Row-wise cosine similarity of two embedding batches: min, mean and row count."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cosines = (reference * candidate).sum(axis=1) / np.maximum(norms, 1e-12)
    return {
        "min_cosine": round(float(cosines.min()), 6),
        "mean_cosine": round(float(cosines.mean()), 6),
        "rows": len(cosines),
    }


def require_parity(figures: dict[str, dict[str, Any]], min_cosine: float) -> None:
    """Raise ``ParityError`` naming every check whose worst row is below ``min_cosine``."""
    failed = [
        f"{check}: min cosine {values['min_cosine']:.6f} < {min_cosine} "
        f"(mean {values['mean_cosine']:.6f} over {values['rows']} rows)"
        for check, values in figures.items()
        if values["min_cosine"] < min_cosine
    ]
    if failed:
        raise ParityError("parity check failed, nothing written: " + "; ".join(failed))


def random_pixels(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Normalised-looking pixel batches (standard normal), float32 (count, 3, size, size)."""
    return np.random.default_rng(seed).standard_normal((count, 3, size, size)).astype(np.float32)


def random_texts(tokenizer: Any, count: int, context_length: int, seed: int = 0) -> list[str]:
    """``count`` texts of words from the tokenizer's vocabulary, from one word to longer than
    the context (so truncation is exercised too); ``tokenizer`` is a ``tokenizers.Tokenizer``."""
    rng = np.random.default_rng(seed)
    special = set(tokenizer.get_added_tokens_decoder())
    words = sorted(
        {
            word
            for token_id in range(tokenizer.get_vocab_size())
            if token_id not in special
            and (word := tokenizer.decode([token_id]).strip()).isalpha()
            and len(word) > 1
        }
    )
    if not words:
        raise ToolError("the tokenizer's vocabulary has no plain words to build test texts from")
    lengths = np.linspace(1, context_length + 8, num=count).astype(int)
    return [" ".join(rng.choice(words, size=n)) for n in lengths]
