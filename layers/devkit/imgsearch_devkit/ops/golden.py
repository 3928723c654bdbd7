"""The golden set of a stack: propose judgments from its usage log, add them, list the set.

The set is ``settings.gate.golden_key`` in the stack's bucket. Every write is conditional on the
ETag read (or on there being none), so two adds at once both land: the one that loses re-reads
and merges again. The bucket is versioned, so S3 keeps every earlier set::

    found, stats, golden = suggestions(target, start, end, min_clicks=3)  # [Suggestion], ...
    s3, key = target.client("s3"), target.settings().gate.golden_key
    change = add_judgments(s3, target.bucket, key, [(s.query, s.relevant) for s in found])
    change.previous_sha256, change.sha256, change.added_keys, change.written
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from imgsearch.catalog.contract import put_body_if
from imgsearch.catalog.errors import WriteConflict
from imgsearch.eval.golden import (
    GoldenSet,
    Suggestion,
    golden_lines,
    load_golden,
    merge,
    normalise_query,
    parse_golden,
    suggest,
)
from imgsearch.usage.join import JoinStats
from imgsearch_devkit.ops.usage import feedback_window
from imgsearch_devkit.target import Target

ATTEMPTS = 3
"""Conditional writes tried before giving up (each loser re-reads and merges again)."""
CONTENT_TYPE = "application/x-ndjson"

Additions = Sequence[tuple[str, Sequence[str]]]


def suggestions(
    target: Target,
    start: datetime,
    end: datetime,
    *,
    min_searches: int = 3,
    min_clicks: int = 3,
    min_agreement: float = 0.5,
) -> tuple[list[Suggestion], JoinStats, GoldenSet | None]:
    """What the searches of ``[start, end)`` and their feedback (``ops.usage.feedback_window``,
    late clicks included, as the export has them) propose (``imgsearch.eval.golden.suggest``) for
    queries the stack's golden set does not hold yet; the join's counts; that set."""
    s3 = target.client("s3")
    settings = target.settings()
    joined, stats = feedback_window(target, start, end)
    golden = load_golden(s3, target.bucket, settings.gate.golden_key)
    found = suggest(
        joined,
        min_searches=min_searches,
        min_clicks=min_clicks,
        min_agreement=min_agreement,
        existing=golden,
    )
    return found, stats, golden


def read_additions(body: bytes, source: str) -> list[tuple[str, list[str]]]:
    """(query, keys) pairs from golden set JSON lines, or from the document that
    ``imgsearch golden suggest --json`` prints (its ``suggestions``): ``GoldenSetError``
    naming ``source`` for anything else."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        document = None
    if isinstance(document, dict) and isinstance(document.get("suggestions"), list):
        # The same checks as the set's own lines, one line per suggestion.
        body = "\n".join(json.dumps(item) for item in document["suggestions"]).encode()
    golden = parse_golden(body, source)
    return [(q, sorted(keys)) for q, keys in zip(golden.queries, golden.relevant, strict=True)]


@dataclass(frozen=True)
class GoldenChange:
    key: str
    previous_sha256: str | None
    """None: there was no set."""
    sha256: str
    queries: int
    new_queries: int
    added_keys: int
    """Keys that were not judged relevant to their query before."""
    written: bool
    """False for a dry run, or when every key was in the set already."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _judged(golden: GoldenSet | None) -> dict[str, set[str]]:
    judged: dict[str, set[str]] = {}
    if golden is not None:
        for query, keys in zip(golden.queries, golden.relevant, strict=True):
            judged.setdefault(normalise_query(query), set()).update(keys)
    return judged


def add_judgments(
    s3: Any, bucket: str, key: str, additions: Additions, dry_run: bool = False
) -> GoldenChange:
    """Add ``additions`` to the golden set at ``key`` (``imgsearch.eval.golden.merge``) with a
    conditional write; nothing is written when they change nothing, or for a ``dry_run``.
    ``WriteConflict`` when the set kept changing under ``ATTEMPTS`` tries."""
    for _ in range(ATTEMPTS):
        golden = load_golden(s3, bucket, key)
        body = merge(golden, additions)
        merged = parse_golden(body, key)
        # Equal content is left as it is, even if not in the canonical form: same sha256.
        unchanged = golden is not None and body == golden_lines(golden)
        before, after = _judged(golden), _judged(merged)
        change = GoldenChange(
            key=key,
            previous_sha256=golden.sha256 if golden else None,
            sha256=golden.sha256 if golden and unchanged else merged.sha256,
            queries=len(after),
            new_queries=len(after.keys() - before.keys()),
            added_keys=sum(len(keys - before.get(query, set())) for query, keys in after.items()),
            written=False,
        )
        if dry_run or unchanged:
            return change
        try:
            put_body_if(s3, bucket, key, body, golden.etag if golden else None, CONTENT_TYPE)
        except WriteConflict:
            continue
        return replace(change, written=True)
    raise WriteConflict(f"{key} changed {ATTEMPTS} times while adding to it: try again")
