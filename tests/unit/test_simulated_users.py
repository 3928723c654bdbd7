"""The simulated users of the demo: background-colour queries and the clicks they make."""

from __future__ import annotations

import numpy as np
from imgsearch_devkit.demo.scenes import BACKGROUNDS, KINDS, describes, generate, requirements
from imgsearch_devkit.demo.users import background_queries, choose_clicks, matching


def test_every_query_asks_for_a_kind_on_a_background() -> None:
    queries = background_queries()
    assert len(queries) == len(set(queries)) == len(KINDS) * len(BACKGROUNDS)
    assert queries[0] == "red circle on a white background"
    for query in queries:
        assert set(requirements(query)) == {"colour", "shape", "background"}, query


def test_a_small_corpus_has_answers_for_most_queries() -> None:
    scenes = [scene for _, scene in generate(400, seed=5100)]
    answered = [sum(describes(s, q) for s in scenes) for q in background_queries()]
    assert np.mean(answered) == 400 / 160
    assert np.mean([a > 0 for a in answered]) > 0.85


def test_users_click_what_matches_and_shuffled_users_as_many_at_random() -> None:
    pairs = generate(80, seed=3)
    scene_of = {f"k{i}": scene for i, (_, scene) in enumerate(pairs)}
    scene = pairs[0][1]
    query = f"{scene.colour} {scene.shape} on a {scene.background} background"
    shown = list(scene_of)[:10]
    rng = np.random.default_rng(0)
    clicked = choose_clicks(query, shown, scene_of, rng)
    assert clicked == matching(query, shown, scene_of) and "k0" in clicked
    noise = [choose_clicks(query, shown, scene_of, rng, shuffled=True) for _ in range(50)]
    assert {len(n) for n in noise} == {len(clicked)}
    assert all(set(n) <= set(shown) for n in noise)
    assert len({tuple(n) for n in noise}) > 1
    assert choose_clicks(query, ["not a demo image"], lambda key: None, rng, shuffled=True) == []
