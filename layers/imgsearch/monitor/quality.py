"""Quality metrics from the usage log, and their degradation against their own recent baseline.

Per (model, index version), from the joined records of a window (``imgsearch.usage.join``)::

    figures = quality_figures(joined, low_score=settings.monitor.low_score)
    total = overall(figures)                       # None for a window without searches
    baseline = baseline_of(earlier_windows, min_searches=30)
    degradation(total, baseline, max_drop=0.2, min_searches=30)   # ["ctr_at_10"] or []

A search is its first page (offset 0): a cursor's later pages are the same query, so they add
their latency and nothing else (their clicks are not on the first page's results). Rates are
shares of searches:

- ``zero_result_rate``: searches with no results;
- ``low_score_rate``: searches whose top score (rank 1's) is below ``low_score``; a search
  without results counts as low;
- ``ctr_at_10``: searches with a positive (a click or "relevant") at rank <= 10;
- ``mrr``: the mean over searches of 1 / the rank of the first positive (0 without one);
- ``clicked``: searches with a positive at any rank;
- ``latency_p50_ms``, ``latency_p99_ms``: numpy's (linearly interpolated) percentiles of the
  ``latency_ms`` of every page, later ones included, as Validate computes its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from imgsearch.usage.join import JoinedQuery

CTR_RANK = 10
"""CTR@10: a positive at this rank or better."""
ANY = "*"
"""``overall``'s model or index version when the groups it combines differ in it."""
HIGHER_IS_BETTER = ("ctr_at_10", "mrr")
LOWER_IS_BETTER = ("zero_result_rate", "low_score_rate")
BASELINE_METRICS = (*HIGHER_IS_BETTER, *LOWER_IS_BETTER)
"""The metrics degradation compares, and a history item's keys for them."""


@dataclass(frozen=True)
class QualityFigures:
    """One (model, index version)'s figures over a window: the report's ``quality`` item."""

    model: str
    index_version: str
    searches: int
    clicked: int
    zero_result_rate: float
    low_score_rate: float
    ctr_at_10: float
    mrr: float
    latency_p50_ms: float
    latency_p99_ms: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: rates to 6 decimals, milliseconds to 3."""
        body = asdict(self)
        for name in BASELINE_METRICS:
            body[name] = round(body[name], 6)
        for name in ("latency_p50_ms", "latency_p99_ms"):
            body[name] = round(body[name], 3)
        return body


@dataclass
class _Group:
    searches: int = 0
    clicked: int = 0
    zero: int = 0
    low: int = 0
    in_top: int = 0
    reciprocal: float = 0.0
    latencies: list[float] = field(default_factory=list)


def _check_threshold(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")


def quality_figures(queries: Iterable[JoinedQuery], *, low_score: float) -> list[QualityFigures]:
    """The figures of each (model, index version) with at least one search, sorted by both
    (the module docstring defines them); a group with only later pages in the window is left
    out: it has no search to divide by."""
    _check_threshold("low_score", low_score)
    groups: dict[tuple[str, str], _Group] = {}
    for query in queries:
        search = query.search
        group = groups.setdefault((search.model, search.index_version), _Group())
        group.latencies.append(search.latency_ms)
        if search.offset != 0:
            continue
        group.searches += 1
        group.zero += not search.results
        group.low += not search.results or search.results[0].score < low_score
        ranks = query.positive_ranks()
        if ranks:
            group.clicked += 1
            group.in_top += ranks[0] <= CTR_RANK
            group.reciprocal += 1.0 / ranks[0]
    return [
        QualityFigures(
            model=model,
            index_version=version,
            searches=g.searches,
            clicked=g.clicked,
            zero_result_rate=g.zero / g.searches,
            low_score_rate=g.low / g.searches,
            ctr_at_10=g.in_top / g.searches,
            mrr=g.reciprocal / g.searches,
            latency_p50_ms=float(np.percentile(g.latencies, 50)),
            latency_p99_ms=float(np.percentile(g.latencies, 99)),
        )
        for (model, version), g in sorted(groups.items())
        if g.searches
    ]


def overall(figures: Sequence[QualityFigures]) -> QualityFigures | None:
    """All of ``figures`` as one group (None when there are none), for a window in which a
    rollout changed the serving model or a publish the index version.

    The rates are the groups' weighted by their searches (the rates of all the searches
    together); the model and the index version are the groups' when they share one, else
    ``"*"``. Percentiles do not combine: the latencies are the groups' largest, an upper bound
    of the percentile of all the pages together (exact for one group).
    """
    if not figures:
        return None
    searches = sum(f.searches for f in figures)

    def shared(name: str) -> str:
        values = {getattr(f, name) for f in figures}
        return values.pop() if len(values) == 1 else ANY

    def weighted(name: str) -> float:
        return sum(getattr(f, name) * f.searches for f in figures) / searches

    return QualityFigures(
        model=shared("model"),
        index_version=shared("index_version"),
        searches=searches,
        clicked=sum(f.clicked for f in figures),
        **{name: weighted(name) for name in BASELINE_METRICS},
        latency_p50_ms=max(f.latency_p50_ms for f in figures),
        latency_p99_ms=max(f.latency_p99_ms for f in figures),
    )


@dataclass(frozen=True)
class Baseline:
    """The metrics over earlier windows: what a window's figures are compared with."""

    windows: int
    ctr_at_10: float
    mrr: float
    zero_result_rate: float
    low_score_rate: float

    def as_dict(self) -> dict[str, Any]:
        """The report's ``baseline``."""
        return {
            "windows": self.windows,
            **{name: round(getattr(self, name), 6) for name in BASELINE_METRICS},
        }


def _check_min_searches(min_searches: int) -> None:
    if min_searches < 1:
        raise ValueError(f"min_searches must be >= 1, got {min_searches}")


def _usable(item: Mapping[str, Any]) -> bool:
    searches = item.get("searches")
    return (
        isinstance(searches, int)
        and not isinstance(searches, bool)
        and searches > 0
        and all(isinstance(item.get(name), int | float) for name in BASELINE_METRICS)
    )


def baseline_of(history: Sequence[Mapping[str, Any]], *, min_searches: int) -> Baseline | None:
    """The baseline of earlier windows' overall figures (the caller picks the windows: the
    monitor's ``baseline_days`` before the current one).

    Each item needs ``searches`` (int) and the ``BASELINE_METRICS`` (numbers), as
    ``overall(...).as_dict()`` holds them; an item without searches or with a metric missing or
    null (a window without traffic, a report of an older version) is skipped. The metrics are
    the items' weighted by their searches; None when the items used hold fewer than
    ``min_searches`` searches together.
    """
    _check_min_searches(min_searches)
    used = [item for item in history if _usable(item)]
    searches = sum(item["searches"] for item in used)
    if searches < min_searches:
        return None
    return Baseline(
        windows=len(used),
        **{
            name: sum(float(item[name]) * item["searches"] for item in used) / searches
            for name in BASELINE_METRICS
        },
    )


def degradation(
    current: QualityFigures, baseline: Baseline | None, *, max_drop: float, min_searches: int
) -> list[str]:
    """The metrics of ``current`` more than ``max_drop`` worse than ``baseline``, as a share of
    it, in ``BASELINE_METRICS`` order; none without a baseline or when ``current`` has fewer
    than ``min_searches`` searches (too few to tell a drop from noise).

    ``ctr_at_10`` and ``mrr`` are degraded below ``baseline * (1 - max_drop)``. A rate that
    should stay low is compared by its good share, ``1 - rate``, in the same way: with
    ``max_drop`` 0.2, a zero-result rate rising from 2 % to 30 % (98 % -> 70 % of searches with
    results, 29 % fewer) is degraded, one from 2 % to 20 % (18 % fewer) is not. A metric at 0
    (or a rate at 1) in the baseline cannot get worse.
    """
    if not 0 < max_drop < 1:
        raise ValueError(f"max_drop must be in (0, 1), got {max_drop}")
    _check_min_searches(min_searches)
    if baseline is None or current.searches < min_searches:
        return []
    worse = []
    for name in BASELINE_METRICS:
        now, then = getattr(current, name), getattr(baseline, name)
        if name in LOWER_IS_BETTER:
            now, then = 1 - now, 1 - then
        if now < then * (1 - max_drop):
            worse.append(name)
    return worse
