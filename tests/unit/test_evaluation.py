"""Retrieval metrics on small rankings checked by hand."""

from __future__ import annotations

import math

import pytest

from imgsearch.eval.metrics import (
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    score_rankings,
)

RANKING = ["a", "x", "b", "y", "c"]
RELEVANT = {"a", "b", "c", "d"}


def test_precision_and_recall() -> None:
    assert precision_at_k(RANKING, RELEVANT, 1) == 1.0
    assert precision_at_k(RANKING, RELEVANT, 3) == pytest.approx(2 / 3)
    assert precision_at_k(RANKING, RELEVANT, 10) == pytest.approx(3 / 10)  # short list penalised
    assert recall_at_k(RANKING, RELEVANT, 3) == pytest.approx(2 / 4)
    assert recall_at_k(RANKING, RELEVANT, 5) == pytest.approx(3 / 4)
    assert recall_at_k(RANKING, set(), 5) == 0.0


def test_reciprocal_rank() -> None:
    assert reciprocal_rank(RANKING, RELEVANT) == 1.0
    assert reciprocal_rank(["x", "y", "b"], RELEVANT) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x", "y"], RELEVANT) == 0.0


def test_ndcg() -> None:
    # hits at ranks 1 and 3 of 3; ideal: 3 hits at ranks 1..3
    dcg = 1 + 1 / math.log2(4)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKING, RELEVANT, 3) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(["a", "b"], {"a", "b"}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x"], set(), 10) == 0.0


def test_score_rankings_averages_over_queries() -> None:
    scores = score_rankings([[3, 1, 2], [5, 4]], [{1, 2}, {9}], k=2)
    assert scores.precision == pytest.approx(0.25)
    assert scores.recall == pytest.approx(0.25)
    assert scores.mrr == pytest.approx(0.25)
    assert scores.as_dict()["precision_at_2"] == pytest.approx(0.25)
    assert scores.as_dict()["queries"] == 2


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="k must be positive"):
        precision_at_k(RANKING, RELEVANT, 0)
    with pytest.raises(ValueError, match="rankings but"):
        score_rankings([[1]], [], k=1)
    with pytest.raises(ValueError, match="no queries"):
        score_rankings([], [], k=1)
