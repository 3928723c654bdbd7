"""Feedback tied to the search that showed it: the records evaluation, the golden set and
retraining read (``imgsearch feedback export`` writes them as JSON lines).

A judgment counts only for a key its search showed, at the rank it was shown (the page's own
``rank`` is not trusted); the same (query, key, event) counts once; feedback whose search is not
among ``records`` is left out and counted::

    joined, stats = join(UsageReader(s3, bucket, "usage/").records(start, end))
    joined[0].search.text, joined[0].positive_ranks()     # "red circle", [1, 4]
    stats.orphaned, stats.unshown                         # feedback that joined no search
    JoinedQuery.from_json(json.loads(joined[0].to_json())) == joined[0]
    join_window(reader, start, end, grace=timedelta(days=1))   # later clicks on those searches
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from imgsearch.core.clock import ISO_FORMAT
from imgsearch.usage.reader import UsageReader
from imgsearch.usage.records import (
    USAGE_FIELD,
    FeedbackEvent,
    FeedbackRecord,
    Record,
    RecordError,
    SearchRecord,
    parse_search,
)

POSITIVE_EVENTS = frozenset({"click", "relevant"})
"""A click or an explicit "relevant": the user found the result useful."""


@dataclass(frozen=True)
class Judgment:
    key: str
    event: FeedbackEvent
    rank: int
    """Where the search showed ``key`` (1-based, across pages)."""
    time: str


@dataclass(frozen=True)
class JoinedQuery:
    search: SearchRecord
    feedback: tuple[Judgment, ...] = ()

    def positive_ranks(self) -> list[int]:
        """The ranks of the results clicked or judged relevant, best first."""
        return sorted({j.rank for j in self.feedback if j.event in POSITIVE_EVENTS})

    def positive_keys(self) -> set[str]:
        return {j.key for j in self.feedback if j.event in POSITIVE_EVENTS}

    def to_json(self, vectors: bool = False) -> str:
        """The search record's fields (its vector only if asked), and its ``feedback``."""
        body = json.loads(self.search.to_json())
        del body[USAGE_FIELD]
        if not vectors:
            body.pop("vector", None)
        body["feedback"] = [asdict(judgment) for judgment in self.feedback]
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> JoinedQuery:
        """Parse an exported line (RecordError if it is not one)."""
        feedback = body.get("feedback")
        if not isinstance(feedback, list):
            raise RecordError("exported query: 'feedback' must be a list")
        search = parse_search({k: v for k, v in body.items() if k != "feedback"})
        try:
            judgments = tuple(
                Judgment(str(j["key"]), j["event"], int(j["rank"]), str(j["time"]))
                for j in feedback
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError("exported query: bad feedback item") from exc
        return cls(search, judgments)


@dataclass
class JoinStats:
    searches: int = 0
    feedback: int = 0
    joined: int = 0
    orphaned: int = 0
    """Feedback on a query id with no search among the records (another window, or forged
    before signing existed)."""
    unshown: int = 0
    """Feedback on a key the search did not show."""
    duplicates: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    """Other records seen, by kind (ingest)."""


def join(records: Iterable[Record]) -> tuple[list[JoinedQuery], JoinStats]:
    """Every search among ``records`` with its feedback, in the order the searches came."""
    stats = JoinStats()
    searches: dict[str, SearchRecord] = {}
    feedback: list[FeedbackRecord] = []
    for record in records:
        if isinstance(record, SearchRecord):
            stats.searches += 1
            searches.setdefault(record.query_id, record)
        elif isinstance(record, FeedbackRecord):
            stats.feedback += 1
            feedback.append(record)
        else:
            kind = type(record).__name__
            stats.skipped[kind] = stats.skipped.get(kind, 0) + 1
    judged: dict[str, list[Judgment]] = {}
    seen: set[tuple[str, str, str]] = set()
    for item in sorted(feedback, key=lambda f: f.time):
        search = searches.get(item.query_id)
        if search is None:
            stats.orphaned += 1
            continue
        rank = search.rank_of(item.key)
        if rank is None:
            stats.unshown += 1
            continue
        if (item.query_id, item.key, item.event) in seen:
            stats.duplicates += 1
            continue
        seen.add((item.query_id, item.key, item.event))
        judged.setdefault(item.query_id, []).append(Judgment(item.key, item.event, rank, item.time))
        stats.joined += 1
    return [JoinedQuery(s, tuple(judged.get(q, ()))) for q, s in searches.items()], stats


def read_joined(lines: Iterable[str]) -> list[JoinedQuery]:
    """Exported lines back as queries (blank lines skipped)."""
    return [JoinedQuery.from_json(json.loads(line)) for line in lines if line.strip()]


def join_window(
    reader: UsageReader, start: datetime, end: datetime, grace: timedelta = timedelta(0)
) -> tuple[list[JoinedQuery], JoinStats]:
    """The searches of ``[start, end)``, each with its feedback, including feedback that came
    up to ``grace`` after ``end`` (a click follows its search)."""
    last = end.strftime(ISO_FORMAT)
    records = (
        r
        for r in reader.records(start, end + grace)
        if not (isinstance(r, SearchRecord) and r.time >= last)
    )
    return join(records)
