"""The synthetic scene generator: deterministic, balanced, and its captions tell the truth."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from imgsearch_devkit.demo.scenes import (
    BACKGROUNDS,
    COLOURS,
    KINDS,
    SHAPES,
    WORDS,
    caption,
    describes,
    generate,
    render,
    requirements,
)


def test_same_seed_same_images_and_scenes() -> None:
    first, second = generate(12, seed=3), generate(12, seed=3)
    assert [s for _, s in first] == [s for _, s in second]
    for (a, _), (b, _) in zip(first, second, strict=True):
        assert a.tobytes() == b.tobytes()
    other = generate(12, seed=4)
    assert [s for _, s in other] != [s for _, s in first]


def test_enough_distinct_colours_and_shapes_none_shared_with_backgrounds() -> None:
    assert len(COLOURS) >= 8 and len(SHAPES) >= 4
    assert len(set(COLOURS.values())) == len(COLOURS)
    assert not set(COLOURS) & set(BACKGROUNDS)
    assert not set(COLOURS.values()) & set(BACKGROUNDS.values())


def test_balanced_mode_gives_every_kind_its_share() -> None:
    n = 10 * len(KINDS) + 7
    counts = Counter(scene.kind for _, scene in generate(n, seed=11))
    assert set(counts) == set(KINDS)
    assert set(counts.values()) == {10, 11}


def test_captions_describe_their_scene_and_only_their_kind() -> None:
    rng = np.random.default_rng(0)
    pairs = generate(3 * len(KINDS), seed=5)
    for _, scene in pairs:
        for _ in range(5):
            text = caption(scene, rng)
            assert describes(scene, text), (text, scene)
            assert set(text.split()) <= WORDS
            others = [s for _, s in pairs if s.kind != scene.kind]
            assert not any(describes(other, text) for other in others), text


def test_requirements_read_counts_sizes_and_positions() -> None:
    assert requirements("two small red circles") == {
        "count": frozenset({2}),
        "size": frozenset({"small"}),
        "colour": frozenset({"red"}),
        "shape": frozenset({"circle"}),
    }
    assert requirements("red circles")["count"] == frozenset({2, 3})
    assert requirements("an orange star at the top")["count"] == frozenset({1})
    assert requirements("an orange star at the top")["position"] == frozenset({"top"})
    assert "count" not in requirements("red circle")  # a bare noun names the kind
    assert requirements("a picture of a blue cross on a grey background")["background"] == (
        frozenset({"grey"})
    )
    assert requirements("red blue circle")["colour"] == frozenset()  # contradiction: no scene


def test_kind_query_matches_every_count() -> None:
    scenes = [s for _, s in generate(6 * len(KINDS), seed=8) if s.kind == ("red", "circle")]
    assert {s.count for s in scenes} > {1}
    assert all(describes(s, "red circle") for s in scenes)


@pytest.mark.parametrize("size", [(192, 160), (160, 224), (128, 128)])
def test_shapes_stay_inside_the_centre_crop(size: tuple[int, int]) -> None:
    width, height = size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    for _, scene in generate(len(KINDS), seed=2):
        pixels = np.asarray(render(scene, size)).astype(int)
        shape_colour = np.all(np.abs(pixels - np.array(scene.rgb)) <= 2, axis=-1)
        inside = shape_colour[top : top + side, left : left + side].sum()
        assert inside > 0
        assert inside == shape_colour.sum(), scene
