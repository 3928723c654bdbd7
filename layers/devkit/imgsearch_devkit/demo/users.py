"""Simulated users of the demo scenes: what they search for and which results they click.

They search for a kind of shape on a background colour ("red circle on a black background"), the
one thing the demo model is weak at (its card: precision@10 0.27), and click every shown result
that matches (ground truth: ``scenes.describes``). The ``shuffled`` user clicks as many results
but picks them at random among those shown: the same volume of feedback with no signal in it,
which a retraining gate must reject. Pure functions, no AWS::

    import numpy as np
    from imgsearch_devkit.demo.users import background_queries, choose_clicks

    queries = background_queries()        # 160: every kind on every background
    rng = np.random.default_rng(0)
    clicked = choose_clicks(queries[0], shown_keys, scene_of, rng)          # matching ones
    noise = choose_clicks(queries[0], shown_keys, scene_of, rng, shuffled=True)

``scene_of`` maps an image key to its scene (``None`` or absent: not a demo image, never
clicked). The colour and shape queries (``model_eval.kind_queries``) are what retraining must
not make worse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from imgsearch_devkit.demo.scenes import BACKGROUNDS, KINDS, Scene, describes

SceneOf = Mapping[str, Scene | None] | Callable[[str], Scene | None]


def background_query(colour: str, shape: str, background: str) -> str:
    """``"red circle on a black background"``: every word is in the demo vocabulary, and
    ``scenes.requirements`` reads it as colour, shape and background (no count: "a" is followed
    by a background colour, not by a size or a shape colour)."""
    return f"{colour} {shape} on a {background} background"


def background_queries() -> list[str]:
    """Every kind on every background (40 x 4 = 160 queries), kinds in ``KINDS`` order.

    Each asks for about one image in 160 of a balanced corpus: a corpus of ``40 * n`` images has
    about ``n / 4`` relevant images per query, and the demo model ranks all ``n`` images of the
    kind first, so its top 10 shows them and the ones on other backgrounds (the hard negatives)
    when ``n`` is about 10 (a corpus of about 400 images).
    """
    return [background_query(c, s, b) for c, s in KINDS for b in BACKGROUNDS]


def _scene(scene_of: SceneOf, key: str) -> Scene | None:
    return scene_of(key) if callable(scene_of) else scene_of.get(key)


def matching(query: str, shown_keys: Sequence[str], scene_of: SceneOf) -> list[str]:
    """The shown keys whose scene the query describes, in the order shown."""
    return [
        key
        for key in shown_keys
        if (scene := _scene(scene_of, key)) is not None and describes(scene, query)
    ]


def choose_clicks(
    query: str,
    shown_keys: Sequence[str],
    scene_of: SceneOf,
    rng: np.random.Generator,
    shuffled: bool = False,
) -> list[str]:
    """The keys a user clicks among ``shown_keys`` (a page of results, best first).

    The honest user clicks every matching result, in the order shown. The ``shuffled`` user
    clicks the same number of results, drawn at random from the page (so from matching and
    non-matching ones alike): click rates equal, signal gone. ``rng`` is used only when
    ``shuffled``.
    """
    clicked = matching(query, shown_keys, scene_of)
    if not shuffled or not clicked:
        return clicked
    picks = rng.choice(len(shown_keys), size=len(clicked), replace=False)
    return [shown_keys[int(i)] for i in sorted(picks)]
