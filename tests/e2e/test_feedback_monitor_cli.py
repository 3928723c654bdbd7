"""Learning from use on the local stack, as an operator does it: searches and clicks through the
API, then ``imgsearch feedback export``, ``imgsearch monitor run`` and ``monitor report``, and
``imgsearch golden suggest``/``add``/``list`` (the golden set is put back as it was after)."""

from __future__ import annotations

import json

import pytest
from imgsearch_devkit.demo.scenes import describes
from stack_support import Seeded, run_cli

pytestmark = pytest.mark.slow

QUERIES = ["red circle", "blue square", "green star", "yellow triangle"]


def search_and_click(seeded: Seeded, rounds: int) -> int:
    """Users who click every result that shows what they asked for; the clicks sent."""
    api = seeded.target.api()
    clicks = 0
    for _ in range(rounds):
        for text in QUERIES:
            page = api.search(text, k=5)
            for rank, hit in enumerate(page.results, start=1):
                if seeded.known([hit.key]) and describes(seeded.scenes[hit.key], text):
                    api.feedback(page.query_id, hit.key, "click", rank=rank)
                    clicks += 1
    seeded.stack.usage_stream.flush()
    return clicks


def test_export_joins_clicks_to_their_searches(seeded_stack: Seeded, tmp_path) -> None:
    clicks = search_and_click(seeded_stack, rounds=1)
    out = tmp_path / "feedback.jsonl"
    status, _, output = run_cli(
        seeded_stack, "feedback", "export", "--hours", "1", "--out", str(out)
    )
    assert status == 0, output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [line for line in lines if line.get("text") in QUERIES and line["feedback"]]
    assert sum(len(line["feedback"]) for line in mine) >= clicks > 0
    for line in mine:
        shown = [key for key, _ in line["results"]]
        for judgment in line["feedback"]:
            assert shown[judgment["rank"] - 1] == judgment["key"]  # the rank it was shown at
    assert "feedback joined" in output

    status, _, output = run_cli(seeded_stack, "feedback", "export", "--since", "yesterday")
    assert status == 2 and "not an ISO 8601 time" in output


def test_monitor_run_and_its_report_page(seeded_stack: Seeded, tmp_path) -> None:
    search_and_click(seeded_stack, rounds=1)
    status, out, output = run_cli(seeded_stack, "monitor", "run", "--json")
    assert status == 0, output
    answer = json.loads(out)
    assert answer["searches"] >= len(QUERIES) and answer["report"].endswith("/report.json")
    page = tmp_path / "monitor.html"
    status, _, output = run_cli(seeded_stack, "monitor", "report", "--out", str(page))
    assert status == 0, output
    html = page.read_text()
    assert answer["run"] in html and "data:image/svg+xml" in html
    status, out, _ = run_cli(seeded_stack, "monitor", "report", "--json")
    report = json.loads(out)
    assert report["run"] == answer["run"]
    assert report["serving"]["index_version"] == seeded_stack.target.api().version().index_version
    status, _, output = run_cli(seeded_stack, "monitor", "report", "--run", "no-such-run")
    assert status == 1 and "no monitor report" in output


def test_golden_set_grows_from_consistent_clicks(seeded_stack: Seeded, tmp_path) -> None:
    s3 = seeded_stack.client("s3")
    bucket, key = seeded_stack.target.bucket, seeded_stack.target.settings().gate.golden_key
    try:
        before: bytes | None = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        before = None
    search_and_click(seeded_stack, rounds=3)
    try:
        status, out, output = run_cli(
            seeded_stack, "golden", "suggest", "--days", "1", "--min-clicks", "3", "--json"
        )
        assert status == 0, output
        suggested = json.loads(out)
        proposals = {s["query"]: s["relevant"] for s in suggested["suggestions"]}
        assert set(QUERIES) <= set(proposals), proposals
        for text in QUERIES:
            assert all(describes(seeded_stack.scenes[k], text) for k in proposals[text])
        path = tmp_path / "suggestions.json"
        path.write_text(out)
        status, out, output = run_cli(seeded_stack, "golden", "add", "--from", str(path), "--json")
        assert status == 0, output
        change = json.loads(out)
        assert change["sha256"] != change["previous_sha256"]
        status, out, output = run_cli(seeded_stack, "golden", "list", "--json")
        assert status == 0, output
        listed = json.loads(out)
        assert listed["sha256"] == change["sha256"]
        assert set(QUERIES) <= {q["query"] for q in listed["queries"]}
    finally:
        if before is None:
            s3.delete_object(Bucket=bucket, Key=key)
        else:
            s3.put_object(Bucket=bucket, Key=key, Body=before)
