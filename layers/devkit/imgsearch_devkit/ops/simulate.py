"""Simulated users of the demo images, through a stack's API: a search each, clicks on what
matches (``imgsearch feedback simulate``, the retraining walkthrough).

The demo images are rendered from a seed, so their scenes are known again here from their
keys: the users click a result when its scene shows what they asked for.

    scenes = demo_scenes(target)            # key -> Scene of every demo image in the bucket
    summary = simulate(target.api(), scenes, shuffled=False, seed=0)
    summary.searches, summary.clicks        # 160, 412
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from imgsearch_client import Client

from imgsearch_devkit.demo.scenes import Scene
from imgsearch_devkit.demo.users import background_queries, choose_clicks
from imgsearch_devkit.local.demo import DEMO_FOLDER, demo_images, demo_key
from imgsearch_devkit.target import Target, TargetError


@dataclass
class Simulation:
    searches: int = 0
    clicks: int = 0


def demo_scenes(target: Target) -> dict[str, Scene]:
    """Key -> scene of the demo images the stack holds (``imgsearch local up --demo-images``)."""
    s3 = target.client("s3")
    prefix = target.image_prefix + DEMO_FOLDER
    listed = {
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=target.image_bucket, Prefix=prefix
        )
        for item in page.get("Contents", [])
    }
    rendered = sum(1 for key in listed if not key[len(prefix) :].startswith("broken/"))
    if not rendered:
        raise TargetError(
            f"no demo images under s3://{target.image_bucket}/{prefix}: start the local stack "
            "with its demo (imgsearch local up)"
        )
    return {
        key: image.scene
        for image in demo_images(rendered)
        if image.scene is not None and (key := demo_key(image, target.image_prefix)) in listed
    }


def simulate(
    api: Client,
    scenes: dict[str, Scene],
    shuffled: bool = False,
    seed: int = 0,
    on_search: Callable[[str, int], None] | None = None,
) -> Simulation:
    """Each background query searched once; the matching results clicked (``shuffled``: as
    many random ones among those shown)."""
    rng = np.random.default_rng(seed)
    summary = Simulation()
    for query in background_queries():
        page = api.search(query, k=10)
        shown = [hit.key for hit in page.results]
        clicked = choose_clicks(query, shown, scenes, rng, shuffled=shuffled)
        for key in clicked:
            api.feedback(page.query_id, key, "click", rank=shown.index(key) + 1)
        summary.searches += 1
        summary.clicks += len(clicked)
        if on_search:
            on_search(query, len(clicked))
    return summary
