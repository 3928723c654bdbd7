"""Demo data for the local stack: synthetic captioned scenes, a golden set, example queries.

The images are rendered, not committed: ``synthetic.generate`` is deterministic (same seed, same
pixels, same JPEG bytes), renders 160 images in about a second and keeps binaries out of the
repository. They come from the held-out evaluation seed, so the demo model never saw them. Two
deliberately broken files show quarantine at work. The golden set (which demo images each kind
query should find) goes to the template's ``eval/golden.jsonl``, so the pipeline's validation
reports retrieval figures::

    images = demo_images()                  # [DemoImage(name, data, scene)], 160 + 2 broken
    write_demo_folder(images, folder)       # files to upload with the operator's upload code
    golden_jsonl(images, "images/demo/")    # {"query": "red circle", "relevant": [...]} lines
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from imgsearch_devkit.demo.model_eval import EVAL_SEED, kind_queries
from imgsearch_devkit.demo.scenes import COUNT_WORDS, KINDS, PLURALS, Scene, describes, generate

DEMO_IMAGES = 4 * len(KINDS)
"""Four images of each colour x shape kind (160)."""
DEMO_FOLDER = "demo/"
"""Sub-folder of the image prefix the demo uploads to."""
EXAMPLE_QUERIES = (
    "red circle",
    "two blue squares",
    "a yellow star on a black background",
    "green triangles",
)


@dataclass(frozen=True)
class DemoImage:
    name: str
    """File name (and key under ``<image prefix>demo/``); spaces on purpose: S3 events encode
    them, the embed function decodes them."""
    data: bytes
    scene: Scene | None
    """``None`` for the broken files."""


def scene_name(index: int, scene: Scene) -> str:
    noun = scene.shape if scene.count == 1 else PLURALS[scene.shape]
    return f"{index:03d} {COUNT_WORDS[scene.count - 1]} {scene.size} {scene.colour} {noun}.jpg"


def _jpeg(image: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)  # type: ignore[attr-defined]
    return buffer.getvalue()


def demo_images(n: int = DEMO_IMAGES, seed: int = EVAL_SEED) -> list[DemoImage]:
    images = [
        DemoImage(scene_name(i, scene), _jpeg(image), scene)
        for i, (image, scene) in enumerate(generate(n, seed=seed, balanced=True), start=1)
    ]
    whole = images[0].data
    broken = [
        DemoImage("broken/truncated.jpg", whole[: len(whole) // 2], None),
        DemoImage("broken/not an image.jpg", b"this is a text file with an image's name\n", None),
    ]
    return [*images, *broken]


def write_demo_folder(images: list[DemoImage], folder: Path) -> Path:
    """Write the files (skipping ones already there with the same bytes); returns ``folder``."""
    for image in images:
        path = folder / image.name
        if path.is_file() and path.read_bytes() == image.data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image.data)
    return folder


def demo_key(image: DemoImage, image_prefix: str) -> str:
    return f"{image_prefix}{DEMO_FOLDER}{image.name}"


def golden_jsonl(images: list[DemoImage], image_prefix: str) -> bytes:
    """One line per kind query with every demo image the query describes."""
    lines = []
    for query in kind_queries():
        relevant = [
            demo_key(image, image_prefix)
            for image in images
            if image.scene is not None and describes(image.scene, query)
        ]
        if relevant:
            lines.append(json.dumps({"query": query, "relevant": relevant}))
    return ("\n".join(lines) + "\n").encode()


def relevant_to(query: str, key: str, images: list[DemoImage], image_prefix: str) -> bool | None:
    """Whether the demo image at ``key`` matches ``query`` (``None``: not a demo image)."""
    for image in images:
        if image.scene is not None and demo_key(image, image_prefix) == key:
            return describes(image.scene, query)
    return None
