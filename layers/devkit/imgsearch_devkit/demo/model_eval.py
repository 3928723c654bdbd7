"""Text-to-image retrieval quality of a model bundle on held-out synthetic scenes.

Renders a balanced set of scenes from a seed that training never uses, embeds the images through
the real runtime path (PNG bytes -> ``embed_images``), asks one query per colour x shape kind
("red circle", ...) and ranks every image by exact cosine similarity. An image is relevant to a
query when it shows shapes of that colour and kind::

    from imgsearch.model import ClipModel
    from imgsearch_devkit.demo.model_eval import evaluate_model

    report = evaluate_model(ClipModel.load("models/demo-clip"), images=520)
    report["precision_at_10"], report["mrr"]
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import numpy as np

from imgsearch.eval.metrics import score_rankings
from imgsearch.model import ClipModel, ImageError, embed_images
from imgsearch_devkit.demo.scenes import KINDS, describes, generate

logger = logging.getLogger(__name__)

EVAL_SEED = 20_250_101
"""The held-out seed; ``tools/train_demo_clip.py`` refuses to train on it."""

DEFAULT_IMAGES = 520
"""13 images of each of the 40 kinds: more than 10 relevant images per query."""


def kind_queries() -> list[str]:
    """One text query per kind, e.g. "red circle"."""
    return [f"{colour} {shape}" for colour, shape in KINDS]


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def embed_scenes(
    model: ClipModel,
    images: int,
    seed: int,
    batch_size: int = 64,
) -> tuple[np.ndarray, list[Any]]:
    """Render ``images`` balanced scenes and embed them; returns (vectors, scenes)."""
    pairs = generate(images, seed=seed, balanced=True)
    vectors: list[np.ndarray] = []
    for start in range(0, len(pairs), batch_size):
        blobs = [_png(image) for image, _ in pairs[start : start + batch_size]]
        for result in embed_images(model, blobs):
            if isinstance(result, ImageError):  # our own PNGs: a failure is a runtime bug
                raise RuntimeError(f"a rendered scene failed to embed: {result}")
            vectors.append(result)
        logger.info("embedded %d/%d images", min(start + batch_size, len(pairs)), len(pairs))
    return np.stack(vectors), [scene for _, scene in pairs]


def evaluate_model(
    model: ClipModel,
    images: int = DEFAULT_IMAGES,
    seed: int = EVAL_SEED,
    k: int = 10,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Retrieval figures of ``model`` on ``images`` held-out scenes, ready to print as JSON."""
    if images < len(KINDS):
        raise ValueError(f"need at least {len(KINDS)} images (one per kind), got {images}")
    started = time.perf_counter()
    image_vectors, scenes = embed_scenes(model, images, seed, batch_size)
    queries = kind_queries()
    similarity = model.encode_text(queries) @ image_vectors.T
    rankings = np.argsort(-similarity, axis=1, kind="stable").tolist()
    relevant = [
        {i for i, scene in enumerate(scenes) if describes(scene, query)} for query in queries
    ]
    scores = score_rankings(rankings, relevant, k)
    return {
        "model": model.model_id,
        "images": images,
        "seed": seed,
        "k": k,
        **scores.as_dict(),
        "min_relevant_per_query": min(len(r) for r in relevant),
        "seconds": round(time.perf_counter() - started, 2),
    }
