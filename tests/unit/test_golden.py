"""The golden set: canonical writing and merging, and judgments proposed from clicks."""

from __future__ import annotations

import hashlib

import pytest
from joined_support import searched

from imgsearch.eval.golden import (
    GoldenSetError,
    Suggestion,
    golden_lines,
    merge,
    normalise_query,
    parse_golden,
    suggest,
)

KEY = "eval/golden.jsonl"


def test_merge_writes_canonical_lines_that_parse_back() -> None:
    golden = parse_golden(
        b'{"query": "red circle", "relevant": ["images/b.png", "images/a.png"]}\n'
        b'{"query": "Blue  Square", "relevant": ["images/s.png"]}\n'
        b'{"query": "red circle", "relevant": ["images/c.png"]}\n',
        KEY,
    )
    canonical = golden_lines(golden)
    assert canonical == (
        b'{"query": "Blue  Square", "relevant": ["images/s.png"]}\n'
        b'{"query": "red circle", "relevant": ["images/a.png", "images/b.png", "images/c.png"]}\n'
    )
    assert merge(golden, []) == canonical
    again = parse_golden(canonical, KEY)
    assert golden_lines(again) == canonical  # the same content, the same bytes and sha256
    assert again.sha256 == hashlib.sha256(canonical).hexdigest()

    # Additions join a query already there by its normalised text, under its spelling.
    added = merge(
        again,
        [("blue square", ["images/t.png", "images/s.png"]), ("  green  ", ["images/g.png"])],
    )
    assert parse_golden(added, KEY).queries == ["Blue  Square", "green", "red circle"]
    assert parse_golden(added, KEY).relevant[0] == {"images/s.png", "images/t.png"}
    assert parse_golden(added, KEY).sha256 != again.sha256
    assert merge(None, [("red", ["x"])]) == b'{"query": "red", "relevant": ["x"]}\n'


def test_merge_refuses_empty_queries_and_keys() -> None:
    for additions, message in [
        ([(" ", ["x"])], "non-empty string"),
        ([("red", [])], "relevant keys"),
        ([("red", ["x", ""])], "relevant keys"),
    ]:
        with pytest.raises(ValueError, match=message):
            merge(None, additions)
    with pytest.raises(GoldenSetError, match="holds no queries"):
        parse_golden(merge(None, []), KEY)


def test_queries_are_matched_by_case_folded_collapsed_text() -> None:
    assert normalise_query("  Red\tCIRCLE \n") == "red circle"


def test_a_key_clicked_in_enough_searches_is_proposed() -> None:
    queries = [
        searched("red circle", ("a", "click")),
        searched("Red  Circle", ("a", "click"), ("b", "click")),
        searched("red circle ", ("a", "relevant")),
        searched("red circle"),  # no feedback: a search, but not one with a positive
        searched("blue square", ("c", "click")),
    ]
    assert suggest(queries) == [
        Suggestion(query="red circle", relevant=("a",), searches=4, clicks=3, agreement=1.0)
    ]
    # b was clicked in one search of three with a positive: enough when asked for one click
    # and a third of the searches.
    (loose,) = suggest(queries, min_clicks=1, min_agreement=0.3)
    assert (loose.relevant, loose.agreement) == (("a", "b"), pytest.approx(1 / 3))
    assert suggest(queries, min_searches=5) == []
    assert suggest(queries, min_clicks=4) == []


def test_agreement_irrelevant_judgments_and_other_searches() -> None:
    queries = [
        # "cat": c in 3 of 7 searches with a positive (43 %), a in all of them.
        *(searched("cat", ("a", "click"), ("c", "click")) for _ in range(3)),
        *(searched("cat", ("a", "click")) for _ in range(4)),
        # d judged irrelevant only; e clicked in 3 searches but irrelevant in 4 others;
        # b clicked and then judged irrelevant in the same searches: never positive.
        *(searched("cat", ("d", "irrelevant")) for _ in range(3)),
        *(searched("cat", ("e", "click")) for _ in range(3)),
        *(searched("cat", ("e", "irrelevant")) for _ in range(4)),
        *(searched("cat", ("b", "click"), ("b", "irrelevant")) for _ in range(3)),
        # Positives on later pages, and on image or similar searches, do not count.
        *(searched("cat", ("c", "click"), offset=10) for _ in range(3)),
        *(searched("", ("c", "click"), kind="image") for _ in range(3)),
        *(searched("", ("c", "click"), kind="similar") for _ in range(3)),
    ]
    (cat,) = suggest(queries)
    # Searches with a positive: 7 (a, c) + 3 (e) = 10; a is positive in 7 of them.
    assert cat == Suggestion("cat", ("a",), searches=20, clicks=10, agreement=0.7)
    assert suggest(queries, min_agreement=0.8) == []
    assert suggest(queries, min_agreement=0.3)[0].relevant == ("a", "c")


def test_sorted_by_clicks_then_query_and_existing_queries_are_skipped() -> None:
    queries = [
        *(searched(text, ("a", "click")) for text in ["dog"] * 3 + ["bird"] * 3 + ["cat"] * 4),
    ]
    assert [s.query for s in suggest(queries)] == ["cat", "bird", "dog"]
    existing = parse_golden(b'{"query": "CAT", "relevant": ["z"]}', KEY)
    assert [s.query for s in suggest(queries, existing=existing)] == ["bird", "dog"]
    assert suggest([]) == []


@pytest.mark.parametrize(
    "bad",
    [{"min_searches": 0}, {"min_clicks": 0}, {"min_agreement": 0.0}, {"min_agreement": 1.5}],
)
def test_bad_thresholds_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        suggest([], **bad)
