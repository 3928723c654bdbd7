"""The golden set: text queries with the images judged relevant to each, and how it grows from use.

It is JSON lines in the service's bucket (``settings.gate.golden_key``), one
``{"query": "red circle", "relevant": ["images/a.png", ...]}`` per line; Validate scores every
index on it and records its sha256, so a report says which set it used. ``suggest`` proposes
judgments from the usage log (queries with enough consistent clicks), ``merge`` writes a set
with them added, in a canonical form whose sha256 changes only when the content does::

    golden = load_golden(s3, bucket, "eval/golden.jsonl")   # None when there is none
    found = suggest(joined, min_clicks=3, existing=golden)  # joined: usage.join's records
    found[0].query, found[0].relevant, found[0].agreement   # "red circle", ("images/a.png",), 0.8
    body = merge(golden, [(s.query, s.relevant) for s in found])  # canonical JSON lines
    parse_golden(body, "eval/golden.jsonl").sha256          # the new version's
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from imgsearch.catalog.errors import PipelineError
from imgsearch.core.aws import get_object_if_any
from imgsearch.usage.join import POSITIVE_EVENTS, JoinedQuery


class GoldenSetError(PipelineError):
    """The golden set in the bucket is not valid JSON lines of {"query", "relevant"}."""


@dataclass(frozen=True)
class GoldenSet:
    queries: list[str]
    relevant: list[frozenset[str]]
    sha256: str
    key: str
    etag: str = field(default="", compare=False)
    """The ETag it was read with (``load_golden``): what a conditional write back needs."""


def parse_golden(body: bytes, key: str) -> GoldenSet:
    queries: list[str] = []
    relevant: list[frozenset[str]] = []
    for number, line in enumerate(body.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GoldenSetError(f"{key} line {number}: not JSON ({exc.msg})") from exc
        query, keys = (
            (item.get("query"), item.get("relevant")) if isinstance(item, dict) else (0, 0)
        )
        if not isinstance(query, str) or not query.strip():
            raise GoldenSetError(f'{key} line {number}: "query" must be a non-empty string')
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise GoldenSetError(f'{key} line {number}: "relevant" must be a list of S3 keys')
        queries.append(query)
        relevant.append(frozenset(keys))
    if not queries:
        raise GoldenSetError(f"{key} holds no queries")
    return GoldenSet(queries, relevant, hashlib.sha256(body).hexdigest(), key)


def load_golden(s3: Any, bucket: str, key: str) -> GoldenSet | None:
    """The golden set at ``key``, with its ETag; None when there is none."""
    response = get_object_if_any(s3, bucket, key)
    if response is None:
        return None
    return replace(parse_golden(response["Body"].read(), key), etag=response.get("ETag", ""))


def normalise_query(text: str) -> str:
    """The form queries are grouped and matched by: case-folded, whitespace collapsed."""
    return " ".join(text.casefold().split())


def golden_lines(golden: GoldenSet) -> bytes:
    """``golden`` in the canonical form ``merge`` writes (what ``merge(golden, [])`` returns)."""
    return merge(golden, [])


def merge(golden: GoldenSet | None, additions: Sequence[tuple[str, Sequence[str]]]) -> bytes:
    """``golden`` (None: an empty set) with ``additions`` of (query, relevant keys), as canonical
    JSON lines: by query, keys sorted, so that equal content is equal bytes (and sha256).

    A query that matches one already there (``normalise_query``) adds its keys to it, under the
    first spelling; a new one is added as given (stripped). ``parse_golden`` reads the result
    back. ``ValueError`` for an addition with an empty query, no keys or an empty key.
    """
    for query, keys in additions:
        if not query.strip():
            raise ValueError("a golden query must be a non-empty string")
        if not keys or not all(isinstance(key, str) and key for key in keys):
            raise ValueError(f"query {query!r}: relevant keys must be non-empty strings")
    present = zip(golden.queries, golden.relevant, strict=True) if golden else ()
    entries: dict[str, set[str]] = {}
    spelling: dict[str, str] = {}
    for query, keys in [*present, *additions]:
        name = spelling.setdefault(normalise_query(query), query.strip())
        entries.setdefault(name, set()).update(keys)
    return "".join(
        json.dumps({"query": query, "relevant": sorted(entries[query])}, ensure_ascii=False) + "\n"
        for query in sorted(entries)
    ).encode("utf-8")


@dataclass(frozen=True)
class Suggestion:
    """A judgment the usage log supports: ``relevant`` for ``query`` (``normalise_query``)."""

    query: str
    relevant: tuple[str, ...]
    """Sorted."""
    searches: int
    """First-page text searches of the query in the records."""
    clicks: int
    """Those of them with a positive on any result (see ``suggest``)."""
    agreement: float
    """The smallest share of those ``clicks`` searches that a proposed key was positive in."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "relevant": list(self.relevant),
            "searches": self.searches,
            "clicks": self.clicks,
            "agreement": round(self.agreement, 6),
        }


@dataclass
class _Evidence:
    searches: int = 0
    clicks: int = 0
    positive: dict[str, int] = field(default_factory=dict)
    """Searches in which each key was positive."""
    irrelevant: dict[str, int] = field(default_factory=dict)

    def add(self, query: JoinedQuery) -> None:
        self.searches += 1
        rejected = {j.key for j in query.feedback if j.event == "irrelevant"}
        # An explicit "irrelevant" outweighs a click of the same search (opened, then judged).
        liked = {j.key for j in query.feedback if j.event in POSITIVE_EVENTS} - rejected
        self.clicks += bool(liked)
        for counts, keys in ((self.positive, liked), (self.irrelevant, rejected)):
            for key in keys:
                counts[key] = counts.get(key, 0) + 1


def suggest(
    queries: Iterable[JoinedQuery],
    *,
    min_searches: int = 3,
    min_clicks: int = 3,
    min_agreement: float = 0.5,
    existing: GoldenSet | None = None,
) -> list[Suggestion]:
    """Judgments proposed from the queries with enough consistent clicks, most clicked first.

    Text searches (first pages only: a cursor's later pages are the same query) are grouped by
    ``normalise_query``; a group of fewer than ``min_searches`` proposes nothing. In each search
    a key is positive when it got a click or "relevant" and no "irrelevant" there. A key is
    proposed when it was positive in at least ``min_clicks`` searches of the group, in at least
    ``min_agreement`` of the group's searches that had any positive, and judged "irrelevant" in
    no more searches than it was positive in. Queries ``existing`` already holds are skipped.
    """
    if min_searches < 1 or min_clicks < 1:
        raise ValueError(
            f"min_searches and min_clicks must be >= 1, got {min_searches}, {min_clicks}"
        )
    if not 0 < min_agreement <= 1:
        raise ValueError(f"min_agreement must be in (0, 1], got {min_agreement}")
    known = {normalise_query(query) for query in existing.queries} if existing else set()
    groups: dict[str, _Evidence] = {}
    for query in queries:
        search = query.search
        if search.kind != "text" or search.offset != 0 or not search.text:
            continue
        name = normalise_query(search.text)
        if name and name not in known:
            groups.setdefault(name, _Evidence()).add(query)
    found = []
    for name, evidence in groups.items():
        if evidence.searches < min_searches or not evidence.clicks:
            continue
        chosen = {
            key: count
            for key, count in evidence.positive.items()
            if count >= min_clicks
            and count >= min_agreement * evidence.clicks
            and evidence.irrelevant.get(key, 0) <= count
        }
        if chosen:
            found.append(
                Suggestion(
                    query=name,
                    relevant=tuple(sorted(chosen)),
                    searches=evidence.searches,
                    clicks=evidence.clicks,
                    agreement=min(chosen.values()) / evidence.clicks,
                )
            )
    return sorted(found, key=lambda s: (-s.clicks, s.query))
