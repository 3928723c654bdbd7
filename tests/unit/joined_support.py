"""Joined searches built by hand, for the tests of what reads the joined usage log (the golden
set's suggestions, the retraining dataset)::

    searched("red circle", ("a", "click"), ("c", "irrelevant"))   # a search that showed SHOWN
"""

from __future__ import annotations

import itertools

from imgsearch.usage.join import JoinedQuery, Judgment
from imgsearch.usage.records import SearchKind, SearchRecord, Shown

TIME = "2026-12-02T03:00:00.000000Z"
SHOWN = ("a", "b", "c", "d", "e")
QUERY_IDS = itertools.count(1)


def searched(
    text: str,
    *feedback: tuple[str, str],
    kind: SearchKind = "text",
    offset: int = 0,
) -> JoinedQuery:
    """A search of ``text`` that showed ``SHOWN`` (from ``offset``) with ``feedback``: (key,
    event) pairs. Every call is another search (its own query id)."""
    search = SearchRecord(
        query_id=f"q{next(QUERY_IDS)}",
        time=TIME,
        model="clip@1",
        index_version="v1",
        kind=kind,
        k=len(SHOWN),
        offset=offset,
        results=tuple(Shown(key, 0.5) for key in SHOWN),
        latency_ms=1.0,
        text=text if kind == "text" else None,
    )
    judged = tuple(
        Judgment(key, event, search.rank_of(key) or 0, TIME)  # type: ignore[arg-type]
        for key, event in feedback
    )
    return JoinedQuery(search, judged)
