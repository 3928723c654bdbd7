"""Validation figures and gates, on indexes small enough to reason about."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgsearch.catalog.keytable import KeyTable
from imgsearch.catalog.report import Quality, SnapshotManifest
from imgsearch.core.config import GateSettings, IndexSettings
from imgsearch.core.vectors import l2_normalise
from imgsearch.eval.golden import GoldenSetError, parse_golden
from imgsearch.pipeline.build import build_index
from imgsearch.pipeline.validate import (
    ann_recall,
    check_completeness,
    content_rng,
    exact_rankings,
    expansion_ladder,
    measure_latency,
    noisy_queries,
    quality_gates,
    tune_expansion_search,
)


def data(n: int = 400, dim: int = 32) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float16), np.arange(n, dtype=np.int64) * 13 + 5


def test_recall_is_one_for_an_exact_enough_index_and_drops_when_the_graph_is_starved() -> None:
    vectors, ids = data()
    queries = noisy_queries(vectors, ids, 50, np.random.default_rng(1))
    good = build_index(vectors, ids, IndexSettings(dtype="f32"), threads=1)
    assert ann_recall(good, vectors, ids, queries, threads=1) == pytest.approx(1.0)
    starved = build_index(
        vectors, ids, IndexSettings(dtype="f32", connectivity=2, expansion_add=2), threads=1
    )
    starved.expansion_search = 1
    assert ann_recall(starved, vectors, ids, queries, threads=1) < 0.9


@pytest.mark.parametrize(
    ("low", "high", "ladder"),
    [
        (64, 512, [64, 128, 256, 512]),
        (64, 300, [64, 128, 256, 300]),
        (512, 512, [512]),
        (600, 512, [512]),
    ],
)
def test_the_ladder_doubles_from_the_minimum_and_ends_at_the_maximum(low, high, ladder) -> None:
    settings = IndexSettings(min_expansion_search=low, expansion_search=high)
    assert expansion_ladder(settings) == ladder


def test_tuning_serves_the_first_step_that_clears_the_floor_or_else_the_last() -> None:
    vectors, ids = data(2000)
    queries = noisy_queries(vectors, ids, 60, np.random.default_rng(4))
    index = build_index(
        vectors, ids, IndexSettings(dtype="f32", connectivity=4, expansion_add=8), threads=1
    )
    args = (index, vectors, ids, queries, [1, 8, 64, 2000])
    _, recalls = tune_expansion_search(*args, floor=1.01, threads=1)  # never reached
    assert list(recalls) == [1, 8, 64, 2000] and index.expansion_search == 2000
    assert recalls[1] < 0.5 < 0.99 < recalls[2000]
    floor = (recalls[1] + recalls[2000]) / 2
    chosen, tried = tune_expansion_search(*args, floor=floor, threads=1)
    first = next(step for step, recall in recalls.items() if recall >= floor)
    assert chosen == first and index.expansion_search == first and list(tried)[-1] == first
    assert chosen > 1


def test_duplicates_returned_in_another_order_are_not_misses() -> None:
    """Each vector stored three times: which copies make the top 10 is a tie, not a miss."""
    vectors, _ = data(100)
    copies = np.concatenate([vectors, vectors, vectors])
    ids = np.arange(300, dtype=np.int64)
    queries = noisy_queries(vectors, ids[:100], 40, np.random.default_rng(3))
    index = build_index(copies, ids[::-1].copy(), IndexSettings(), threads=1)
    assert ann_recall(index, copies, ids[::-1].copy(), queries, threads=1) == pytest.approx(1.0)


def test_noisy_queries_are_unit_vectors_near_stored_ones() -> None:
    vectors, ids = data()
    queries = noisy_queries(vectors, ids, 30, np.random.default_rng(2))
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    best = (queries @ vectors.astype(np.float32).T).max(axis=1)
    assert np.all(best > 0.9) and np.all(best < 0.9999)


def manifest(content_hash: str, snapshot_id: str) -> SnapshotManifest:
    return SnapshotManifest(
        snapshot_id=snapshot_id,
        prefix=f"snapshots/{snapshot_id}/",
        model="m@1",
        dim=32,
        count=400,
        content_hash=content_hash,
        scan_seconds=0,
        segments=1,
        taken_at="t",
    )


def test_probes_depend_on_the_content_not_on_the_snapshot_or_its_row_order() -> None:
    vectors, ids = data()
    shuffled = np.random.default_rng(9).permutation(len(ids))
    # Two snapshots of one embedding set: other ids (versions), rows in another order.
    one = noisy_queries(vectors, ids, 30, content_rng(manifest("abc-400", "s1")))
    other = content_rng(manifest("abc-400", "s2"))
    assert np.array_equal(one, noisy_queries(vectors[shuffled], ids[shuffled], 30, other))
    changed = noisy_queries(vectors, ids, 30, content_rng(manifest("abd-400", "s1")))
    assert not np.array_equal(one, changed)


def test_exact_rankings_rank_ties_by_id_whatever_the_row_order() -> None:
    vectors, ids = data(300)
    copies = np.concatenate([vectors, vectors, vectors])  # every vector three times: ties
    copy_ids = np.arange(900, dtype=np.int64) * 7 + 1
    queries = noisy_queries(vectors, ids, 20, np.random.default_rng(5))
    ranked = exact_rankings(copies, copy_ids, queries)
    assert ranked.shape == (20, 10)
    for order in (np.arange(900)[::-1], np.random.default_rng(6).permutation(900)):
        assert np.array_equal(exact_rankings(copies[order], copy_ids[order], queries), ranked)
    # The top 10 are the best similarities, each tie group in id order.
    scores = l2_normalise(queries) @ l2_normalise(copies).T
    for row, found in enumerate(ranked):
        expected = sorted(range(900), key=lambda i: (-round(float(scores[row, i]), 5), copy_ids[i]))
        assert found.tolist() == copy_ids[expected[:10]].tolist()


def test_completeness_finds_missing_ids_and_wrong_keys(tmp_path) -> None:
    vectors, ids = data(50)
    keys = [f"images/{n}.jpg" for n in range(50)]
    index = build_index(vectors[:49], ids[:49], IndexSettings(), threads=1)
    KeyTable.write(tmp_path / "keys", ids, [*keys[:10], "images/other.jpg", *keys[11:]])
    figures = check_completeness(index, KeyTable.open(tmp_path / "keys"), ids, keys)
    assert figures.missing_from_index == 1
    assert figures.wrong_or_missing_keys == 1 and figures.example_wrong_key == keys[10]
    assert figures.complete is False
    complete = build_index(vectors, ids, IndexSettings(), threads=1)
    KeyTable.write(tmp_path / "good", ids, keys)
    assert check_completeness(complete, KeyTable.open(tmp_path / "good"), ids, keys).complete


def test_latency_figures() -> None:
    vectors, ids = data()
    index = build_index(vectors, ids, IndexSettings(), threads=1)
    figures = measure_latency(index, noisy_queries(vectors, ids, 40, np.random.default_rng(3)))
    assert figures.probes == 40 and 0 < figures.p50_ms <= figures.p99_ms <= figures.max_ms


def test_golden_set_parsing_and_errors() -> None:
    body = (
        b'{"query": "red circle", "relevant": ["images/a.png"]}\n\n'
        b'{"query": "cat", "relevant": ["b", "c"]}\n'
    )
    golden = parse_golden(body, "eval/golden.jsonl")
    assert golden.queries == ["red circle", "cat"]
    assert golden.relevant == [frozenset({"images/a.png"}), frozenset({"b", "c"})]
    assert len(golden.sha256) == 64
    for bad, message in [
        (b"{not json", "line 1: not JSON"),
        (b'{"query": "", "relevant": ["a"]}', '"query" must be'),
        (b'{"query": "x", "relevant": []}', '"relevant" must be'),
        (b'["query"]', '"query" must be'),
        (b"\n", "holds no queries"),
    ]:
        with pytest.raises(GoldenSetError, match=message):
            parse_golden(bad, "eval/golden.jsonl")


def quality(value: float, sha: str = "s") -> Quality:
    names = ("precision_at_10", "recall_at_10", "ndcg_at_10", "mrr")
    return Quality(
        **dict.fromkeys(names, value),
        golden_key="eval/golden.jsonl",
        golden_sha256=sha,
        relevant_keys=1,
        relevant_keys_not_indexed=0,
    )


def test_quality_gates_compare_with_the_serving_index_on_the_same_golden_set() -> None:
    gate = GateSettings(quality_margin=0.02)
    assert all(g.passed for g in quality_gates(quality(0.79), quality(0.80), gate))
    failed = [g for g in quality_gates(quality(0.77), quality(0.80), gate) if not g.passed]
    assert [g.name for g in failed] == ["precision_at_10", "recall_at_10", "ndcg_at_10", "mrr"]
    assert failed[0].threshold == pytest.approx(0.78) and failed[0].op == ">="
    # No baseline, or a baseline on another golden set: nothing to compare, noted as such.
    for baseline in (None, quality(0.99, sha="other")):
        (only,) = quality_gates(quality(0.1), baseline, gate)
        assert only.passed and "no serving figures" in only.detail
    json.dumps([g.__dict__ for g in quality_gates(quality(0.5), quality(0.6), gate)])


def test_a_challenger_model_must_beat_the_champion_by_the_promotion_margin() -> None:
    gate = GateSettings(quality_margin=0.02, promotion_margin=0.05)
    # The same model's next index: "not worse" is enough.
    assert all(g.passed for g in quality_gates(quality(0.80), quality(0.80), gate))
    # Another model: 5 % better on nDCG@10, or it is not promoted.
    gates = quality_gates(quality(0.83), quality(0.80), gate, challenger=True)
    (promotion,) = [g for g in gates if g.name == "promotion"]
    assert not promotion.passed and promotion.threshold == pytest.approx(0.84)
    gates = quality_gates(quality(0.85), quality(0.80), gate, challenger=True)
    assert all(g.passed for g in gates)
    # Without a margin configured, a challenger passes on "not worse" alone.
    plain = GateSettings(quality_margin=0.02)
    names = [g.name for g in quality_gates(quality(0.80), quality(0.80), plain, challenger=True)]
    assert "promotion" not in names
