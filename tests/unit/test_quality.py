"""Quality figures from joined searches, their baseline and degradation, on hand-counted logs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from imgsearch.monitor.quality import (
    Baseline,
    QualityFigures,
    baseline_of,
    degradation,
    overall,
    quality_figures,
)
from imgsearch.usage.join import JoinedQuery, Judgment
from imgsearch.usage.records import SearchRecord, Shown

TIME = "2026-12-02T03:00:00.000000Z"


def searched(
    number: int,
    scores: list[float],
    *,
    feedback: tuple[tuple[str, str], ...] = (),
    offset: int = 0,
    latency: float = 1.0,
    model: str = "clip@1",
    version: str = "v1",
) -> JoinedQuery:
    """A search whose results are keys k0, k1, ... (from ``offset``) scoring ``scores``; its
    feedback is (key, event) pairs, at the rank the search showed the key."""
    results = tuple(Shown(f"k{offset + i}", score) for i, score in enumerate(scores))
    search = SearchRecord(
        query_id=f"q{number}",
        time=TIME,
        model=model,
        index_version=version,
        kind="text",
        k=len(scores) or 10,
        offset=offset,
        results=results,
        latency_ms=latency,
        text="red circle",
    )
    judgments = []
    for key, event in feedback:
        rank = search.rank_of(key)
        assert rank is not None, f"{key} was not shown"
        judgments.append(Judgment(key, event, rank, TIME))  # type: ignore[arg-type]
    return JoinedQuery(search, tuple(judgments))


def window() -> list[JoinedQuery]:
    """Four searches of clip@1/v1 and a second page; two of clip@2/v2."""
    twelve = [0.9 - i * 0.01 for i in range(12)]
    return [
        searched(1, [0.9, 0.5], feedback=(("k1", "click"),), latency=10),  # rank 2
        searched(2, [], latency=20),  # no results
        searched(3, [0.1, 0.05], latency=30),  # top score below 0.2
        searched(4, twelve, feedback=(("k11", "click"),), latency=40),  # rank 12 only
        # A second page with a click at rank 11: its latency counts, nothing else.
        searched(5, [0.3, 0.2], feedback=(("k10", "click"),), offset=10, latency=50),
        searched(6, [0.8], feedback=(("k0", "relevant"),), model="clip@2", version="v2"),
        searched(7, [0.7], feedback=(("k0", "irrelevant"),), model="clip@2", version="v2"),
    ]


def test_figures_per_model_and_index_version() -> None:
    first, second = quality_figures(window(), low_score=0.2)
    assert first == QualityFigures(
        model="clip@1",
        index_version="v1",
        searches=4,
        clicked=2,  # searches 1 and 4
        zero_result_rate=0.25,
        low_score_rate=0.5,  # search 2 (empty) and 3
        ctr_at_10=0.25,  # search 4's click is at rank 12
        mrr=pytest.approx((1 / 2 + 1 / 12) / 4),
        latency_p50_ms=30.0,  # of 10, 20, 30, 40, 50: every page's
        latency_p99_ms=pytest.approx(40 + 0.96 * 10),  # numpy's linear interpolation
    )
    # An "irrelevant" is no positive: one of the two searches was clicked.
    assert (second.model, second.searches, second.clicked) == ("clip@2", 2, 1)
    assert (second.ctr_at_10, second.mrr, second.low_score_rate) == (0.5, 0.5, 0.0)
    assert first.as_dict()["mrr"] == round((1 / 2 + 1 / 12) / 4, 6)
    assert list(first.as_dict()) == [
        "model",
        "index_version",
        "searches",
        "clicked",
        "zero_result_rate",
        "low_score_rate",
        "ctr_at_10",
        "mrr",
        "latency_p50_ms",
        "latency_p99_ms",
    ]


def test_no_searches_all_zero_results_and_later_pages_alone() -> None:
    assert quality_figures([], low_score=0.2) == []
    assert overall([]) is None
    (empty,) = quality_figures([searched(1, []), searched(2, [])], low_score=0.2)
    assert (empty.zero_result_rate, empty.low_score_rate, empty.ctr_at_10, empty.mrr) == (
        1.0,
        1.0,
        0.0,
        0.0,
    )
    # Only a second page of a search that began before the window: nothing to divide by.
    assert quality_figures([searched(1, [0.5], offset=20)], low_score=0.2) == []


def test_the_low_score_threshold_is_strict_and_must_be_a_number() -> None:
    (at,) = quality_figures([searched(1, [0.2])], low_score=0.2)
    assert at.low_score_rate == 0.0
    with pytest.raises(ValueError, match="low_score"):
        quality_figures([], low_score=float("nan"))


def test_overall_weighs_the_groups_by_their_searches() -> None:
    figures = quality_figures(window(), low_score=0.2)
    total = overall(figures)
    assert total is not None
    assert (total.model, total.index_version, total.searches, total.clicked) == ("*", "*", 6, 3)
    assert total.ctr_at_10 == pytest.approx(2 / 6)  # searches 1 and 6
    assert total.mrr == pytest.approx((1 / 2 + 1 / 12 + 1) / 6)
    assert total.zero_result_rate == pytest.approx(1 / 6)
    assert total.low_score_rate == pytest.approx(2 / 6)
    assert total.latency_p99_ms == max(f.latency_p99_ms for f in figures)
    # One group: itself. Two index versions of one model keep the model's name.
    assert overall(figures[:1]) == figures[0]
    other = replace(figures[0], index_version="v0")
    assert overall([figures[0], other]).model == "clip@1"  # type: ignore[union-attr]


def item(searches: int, ctr: float | None, mrr: float, zero: float, low: float) -> dict:
    return {
        "run": "r",
        "searches": searches,
        "ctr_at_10": ctr,
        "mrr": mrr,
        "zero_result_rate": zero,
        "low_score_rate": low,
    }


def test_the_baseline_pools_earlier_windows_by_their_searches() -> None:
    history = [
        item(20, 0.5, 0.4, 0.1, 0.2),
        item(30, 0.25, 0.2, 0.0, 0.1),
        item(0, 0.0, 0.0, 0.0, 0.0),  # a quiet window
        item(10, None, 0.9, 0.9, 0.9),  # a metric missing: an older report
        {"run": "before the quality figures"},
    ]
    baseline = baseline_of(history, min_searches=50)
    assert baseline == Baseline(
        windows=2,
        ctr_at_10=pytest.approx((20 * 0.5 + 30 * 0.25) / 50),
        mrr=pytest.approx((20 * 0.4 + 30 * 0.2) / 50),
        zero_result_rate=pytest.approx(20 * 0.1 / 50),
        low_score_rate=pytest.approx((20 * 0.2 + 30 * 0.1) / 50),
    )
    assert baseline.as_dict() == {  # type: ignore[union-attr]
        "windows": 2,
        "ctr_at_10": 0.35,
        "mrr": 0.28,
        "zero_result_rate": 0.04,
        "low_score_rate": 0.14,
    }
    assert baseline_of(history, min_searches=51) is None  # too few searches to compare with
    assert baseline_of([], min_searches=1) is None
    with pytest.raises(ValueError, match="min_searches"):
        baseline_of(history, min_searches=0)


BASELINE = Baseline(windows=24, ctr_at_10=0.5, mrr=0.4, zero_result_rate=0.02, low_score_rate=0.1)


def current(**figures: float) -> QualityFigures:
    values = {"ctr_at_10": 0.5, "mrr": 0.4, "zero_result_rate": 0.02, "low_score_rate": 0.1}
    values.update(figures)
    return QualityFigures("clip@1", "v1", 100, 50, **values, latency_p50_ms=1, latency_p99_ms=2)


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        ({}, []),
        ({"ctr_at_10": 0.41}, []),  # 18 % below 0.5
        ({"ctr_at_10": 0.4}, []),  # exactly 20 %: not more than max_drop
        ({"ctr_at_10": 0.39}, ["ctr_at_10"]),  # 22 %
        ({"mrr": 0.33, "ctr_at_10": 0.9}, []),  # 17.5 % below 0.4; a rise is no drop
        ({"mrr": 0.31}, ["mrr"]),  # 22.5 %
        ({"zero_result_rate": 0.20}, []),  # 98 % -> 80 % with results: 18 % fewer
        ({"zero_result_rate": 0.30}, ["zero_result_rate"]),  # 98 % -> 70 %: 29 % fewer
        ({"low_score_rate": 0.25}, []),  # 90 % -> 75 %: 16.7 %
        ({"low_score_rate": 0.30, "ctr_at_10": 0.0}, ["ctr_at_10", "low_score_rate"]),
    ],
)
def test_degradation_is_a_drop_of_more_than_max_drop(figures: dict, expected: list) -> None:
    assert degradation(current(**figures), BASELINE, max_drop=0.2, min_searches=30) == expected


def test_no_degradation_without_a_baseline_or_enough_searches() -> None:
    bad = current(ctr_at_10=0.0, mrr=0.0, zero_result_rate=1.0, low_score_rate=1.0)
    assert len(degradation(bad, BASELINE, max_drop=0.2, min_searches=100)) == 4
    assert degradation(bad, BASELINE, max_drop=0.2, min_searches=101) == []
    assert degradation(bad, None, max_drop=0.2, min_searches=1) == []
    # A baseline at the worst already cannot drop.
    floor = Baseline(windows=1, ctr_at_10=0, mrr=0, zero_result_rate=1, low_score_rate=1)
    assert degradation(bad, floor, max_drop=0.2, min_searches=1) == []
    for drop in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="max_drop"):
            degradation(bad, BASELINE, max_drop=drop, min_searches=1)
    with pytest.raises(ValueError, match="min_searches"):
        degradation(bad, BASELINE, max_drop=0.2, min_searches=0)
