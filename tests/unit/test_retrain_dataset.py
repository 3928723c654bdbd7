"""The retraining dataset: judgments grouped by query, hard negatives, deleted images dropped,
a stable split by query, the golden set always held out; and the evaluation's criteria."""

from __future__ import annotations

import json

import pytest
from joined_support import SHOWN, searched

from imgsearch.core.config import ConfigError, RetrainSettings, Settings
from imgsearch.eval.golden import parse_golden
from imgsearch.retrain.dataset import (
    DatasetError,
    Example,
    build_dataset,
    caption_examples,
    feedback_examples,
    golden_examples,
    images_manifest,
    is_heldout,
    manifest_for,
)
from imgsearch.retrain.evaluate import HEADLINE, Measured, judge


def everything(keys: object) -> set[str]:
    return set(keys)  # type: ignore[call-overload]


def test_feedback_groups_by_query_with_clicks_as_positives_and_the_rest_as_negatives() -> None:
    examples, dropped = feedback_examples(
        [
            searched("Red  Circle", ("a", "click")),
            searched("red circle", ("c", "relevant"), ("a", "click")),
            searched("red circle"),  # no click: its page says nothing
            searched("blue star", ("b", "irrelevant")),
            searched("", ("a", "click"), kind="image"),
        ]
    )
    (red,) = examples
    assert red.query == "red circle"
    assert red.positives == ("a", "c")
    assert set(red.negatives) == set(SHOWN) - {"a", "c"}
    assert red.weight == 2.0  # two searches with a positive judgment
    assert dropped == {"no_positive": 1, "not_text": 1}  # blue star; the image search


def test_an_explicit_irrelevant_outweighs_one_click_and_makes_a_negative() -> None:
    examples, _ = feedback_examples(
        [
            searched("green cross", ("a", "click"), ("b", "click")),
            searched("green cross", ("b", "irrelevant"), ("b", "irrelevant")),
        ]
    )
    (green,) = examples
    assert green.positives == ("a",)
    assert "b" in green.negatives


def test_captions_parse_and_bad_lines_name_their_place() -> None:
    body = b'{"key": "images/x.jpg", "caption": "A Red Circle"}\n\n'
    (example,) = caption_examples(body, "captions/a.jsonl")
    assert example == Example("a red circle", ("images/x.jpg",), source="caption")
    with pytest.raises(DatasetError, match=r"captions/a\.jsonl line 2"):
        caption_examples(b'{"key": "k", "caption": "c"}\n{"key": "k"}\n', "captions/a.jsonl")
    with pytest.raises(DatasetError, match="line 1: not JSON"):
        caption_examples(b"{nope\n", "captions/a.jsonl")


def test_the_split_is_stable_by_query_and_close_to_the_fraction() -> None:
    queries = [f"query {i}" for i in range(4000)]
    held = [q for q in queries if is_heldout(q, 0.25)]
    assert held == [q for q in queries if is_heldout(q, 0.25)]  # the same every run
    assert 0.22 < len(held) / len(queries) < 0.28
    assert set(held) <= {q for q in queries if is_heldout(q, 0.5)}  # a larger share adds to it


def test_golden_queries_are_held_out_and_deleted_images_dropped() -> None:
    golden = parse_golden(b'{"query": "red circle", "relevant": ["a", "gone"]}\n', "golden")
    feedback = [Example(f"q{i}", ("a", "gone"), ("b",), 1.0) for i in range(40)]
    dataset = build_dataset(
        feedback,
        [Example("red circle", ("c",), source="caption")],
        golden_examples(golden),
        existing=lambda keys: set(keys) - {"gone"},
        heldout_fraction=0.25,
    )
    red = next(e for e in dataset.heldout if e.query == "red circle")
    assert red.source == "golden" and red.positives == ("a", "c")  # merged, golden wins
    assert all("gone" not in e.positives for e in (*dataset.train, *dataset.heldout))
    assert dataset.dropped == {"deleted_images": 1}
    train, held = {e.query for e in dataset.train}, {e.query for e in dataset.heldout}
    assert not train & held
    assert held - {"red circle"} == {q for q in (f"q{i}" for i in range(40)) if is_heldout(q, 0.25)}


def test_an_example_whose_positives_are_all_gone_is_dropped() -> None:
    dataset = build_dataset(
        [Example("x", ("gone",), ("a",))], [], [], lambda keys: {"a"}, heldout_fraction=0.5
    )
    assert not dataset.train and not dataset.heldout
    assert dataset.dropped == {"deleted_images": 1, "no_positive": 1}


def test_the_manifest_hash_follows_the_examples() -> None:
    one = build_dataset([Example("x", ("a",))], [], [], everything, 0.01)
    same = build_dataset([Example("x", ("a",))], [], [], everything, 0.01)
    other = build_dataset([Example("x", ("b",))], [], [], everything, 0.01)
    assert manifest_for(one, "t").sha256 == manifest_for(same, "t").sha256
    assert manifest_for(one, "t").sha256 != manifest_for(other, "t").sha256
    assert manifest_for(one, "t").train_pairs == 1
    line = one.train[0].line()
    assert Example.from_line(line) == one.train[0]
    assert json.loads(images_manifest("photos", ["a b.jpg"])) == [
        {"prefix": "s3://photos/"},
        "a b.jpg",
    ]


OPTIONS = RetrainSettings(min_heldout_queries=2, min_gain=0.02, tolerance=0.02)
HELDOUT = [Example(f"q{i}", ("a",)) for i in range(6)] + [Example("g", ("a",), source="golden")]
BEFORE = [0.4, 0.5, 0.6, 0.4, 0.5, 0.6]
"""The champion's nDCG@10 per held-out feedback query (mean 0.5)."""


def measured(figures: dict[str, float]) -> Measured:
    """``figures``, and per-query figures that every query moves up by 0.06."""
    return Measured(figures, [b + 0.06 for b in BEFORE])


def test_a_candidate_passes_on_the_gain_with_nothing_worse_than_the_tolerance() -> None:
    champion = Measured({HEADLINE: 0.50, "golden.ndcg_at_10": 0.90, "feedback.mrr": 0.60}, BEFORE)
    candidate = measured({HEADLINE: 0.56, "golden.ndcg_at_10": 0.89, "feedback.mrr": 0.70})
    report = judge("m@2", "m@1", candidate, champion, HELDOUT, 30, OPTIONS)
    assert report.passed and report.reason == ""
    assert report.queries == {"feedback": 6, "golden": 1}


def test_a_gain_that_chance_explains_is_not_enough() -> None:
    champion = Measured({HEADLINE: 0.50}, BEFORE)
    # the mean gains 6 %, all of it from one query; the other five lose a little
    lucky = Measured({HEADLINE: 0.53}, [0.4 + 0.48, 0.49, 0.59, 0.39, 0.49, 0.59])
    report = judge("m@2", "m@1", lucky, champion, HELDOUT, 30, OPTIONS)
    assert not report.passed
    assert report.reason.startswith("held-out nDCG@10 gain p = 0.")
    assert report.reason.endswith("over 6 queries (at most 0.05)")


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        ({HEADLINE: 0.505, "golden.ndcg_at_10": 0.9}, "held-out nDCG@10 +1.0% (needs +2.0%)"),
        ({HEADLINE: 0.60, "golden.ndcg_at_10": 0.85}, "golden.ndcg_at_10 -5.6%"),
    ],
)
def test_a_candidate_fails_on_too_small_a_gain_or_a_regression(
    candidate: dict[str, float], reason: str
) -> None:
    champion = Measured({HEADLINE: 0.50, "golden.ndcg_at_10": 0.90}, BEFORE)
    report = judge("m@2", "m@1", measured(candidate), champion, HELDOUT, 30, OPTIONS)
    assert not report.passed
    assert report.reason.startswith(reason)


def test_too_little_held_out_data_is_a_failure_named_in_the_report() -> None:
    report = judge(
        "m@2", "m@1", Measured({HEADLINE: 1.0}), Measured({HEADLINE: 0.1}), HELDOUT[:1], 3, OPTIONS
    )
    assert not report.passed
    assert report.criteria[0].kind == "failure"
    assert report.reason == "1 held-out feedback queries (at least 2)"


def test_bad_retraining_settings_fail_at_load() -> None:
    with pytest.raises(ConfigError, match="HELDOUT_FRACTION"):
        Settings.from_env({"IMGSEARCH_RETRAIN_HELDOUT_FRACTION": "1.5"})
    with pytest.raises(ConfigError, match="SIGNIFICANCE"):
        Settings.from_env({"IMGSEARCH_RETRAIN_SIGNIFICANCE": "0"})
    with pytest.raises(ConfigError, match="HYPERPARAMETERS must be a JSON object"):
        Settings.from_env({"IMGSEARCH_RETRAIN_HYPERPARAMETERS": "[1]"})
