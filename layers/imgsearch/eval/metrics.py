"""Retrieval metrics: precision@k, recall@k, MRR and nDCG@k, per query and averaged.

A ranking is the list of result ids a search returned, best first; the relevant set holds the ids
a perfect search would return (binary relevance). The model evaluation and the index validation
step share these functions::

    from imgsearch.eval.metrics import score_rankings

    scores = score_rankings([[3, 1, 2], [5, 4]], [{1, 2}, {9}], k=2)
    scores.precision    # mean precision@2 = (1/2 + 0/2) / 2 = 0.25
    scores.mrr          # (1/2 + 0) / 2 = 0.25
    scores.as_dict()    # {"precision_at_2": 0.25, "recall_at_2": 0.25, "mrr": 0.25, ...}
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass

import numpy as np


def _check_k(k: int) -> None:
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")


def precision_at_k(ranking: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Relevant results among the first ``k``, divided by ``k`` (a short ranking is penalised)."""
    _check_k(k)
    return sum(1 for item in ranking[:k] if item in relevant) / k


def recall_at_k(ranking: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Share of the relevant items found in the first ``k``; 0 when nothing is relevant."""
    _check_k(k)
    if not relevant:
        return 0.0
    return sum(1 for item in ranking[:k] if item in relevant) / len(relevant)


def reciprocal_rank(ranking: Sequence[Hashable], relevant: Collection[Hashable]) -> float:
    """``1 / rank`` of the first relevant result, 0 when there is none."""
    for rank, item in enumerate(ranking, start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranking: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Binary-relevance nDCG: DCG of the first ``k`` over the DCG of a perfect ranking."""
    _check_k(k)
    dcg = sum(
        1.0 / math.log2(rank + 1)
        for rank, item in enumerate(ranking[:k], start=1)
        if item in relevant
    )
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal if ideal else 0.0


@dataclass(frozen=True)
class RetrievalScores:
    """Per-query metrics averaged over ``queries`` queries."""

    k: int
    queries: int
    precision: float
    recall: float
    mrr: float
    ndcg: float

    def as_dict(self) -> dict[str, float | int]:
        """Flat, JSON-ready names such as ``precision_at_10``, ``mrr`` and ``ndcg_at_10``."""
        return {
            f"precision_at_{self.k}": self.precision,
            f"recall_at_{self.k}": self.recall,
            "mrr": self.mrr,
            f"ndcg_at_{self.k}": self.ndcg,
            "queries": self.queries,
        }


def score_rankings(
    rankings: Sequence[Sequence[Hashable]], relevant: Sequence[Collection[Hashable]], k: int
) -> RetrievalScores:
    """Mean of every metric over the queries; ``rankings[i]`` answers the query ``relevant[i]``."""
    _check_k(k)
    if len(rankings) != len(relevant):
        raise ValueError(f"{len(rankings)} rankings but {len(relevant)} relevant sets")
    if not rankings:
        raise ValueError("no queries to score")
    n = len(rankings)
    pairs = list(zip(rankings, relevant, strict=True))
    return RetrievalScores(
        k=k,
        queries=n,
        precision=sum(precision_at_k(r, rel, k) for r, rel in pairs) / n,
        recall=sum(recall_at_k(r, rel, k) for r, rel in pairs) / n,
        mrr=sum(reciprocal_rank(r, rel) for r, rel in pairs) / n,
        ndcg=sum(ndcg_at_k(r, rel, k) for r, rel in pairs) / n,
    )


def paired_randomisation_p(
    before: Sequence[float], after: Sequence[float], rounds: int = 10_000, seed: int = 0
) -> float:
    """One-sided p-value that ``after`` is better than ``before`` on the same queries.

    Fisher's randomisation test, the one IR evaluation recommends (Smucker et al., 2007): each
    query's two figures swap sides at random; p is the share of ``rounds`` swaps whose mean gain
    is at least the observed one. Seeded, so the same figures give the same p::

        paired_randomisation_p([0.2, 0.4, 0.1], [0.5, 0.6, 0.4])   # about 0.12: three say little
    """
    if len(before) != len(after):
        raise ValueError(f"{len(before)} figures before, {len(after)} after")
    gains = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    if not len(gains):
        return 1.0
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(rounds, len(gains)))
    observed = gains.mean()
    at_least = int(((signs * gains).mean(axis=1) >= observed - 1e-12).sum())
    return (1 + at_least) / (1 + rounds)
