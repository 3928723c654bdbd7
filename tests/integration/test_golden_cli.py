"""``imgsearch golden suggest|add|list`` against a moto bucket: the usage log read back and
joined, conditional writes that keep both of two concurrent adds, S3 keeping every version."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from imgsearch_devkit.cli import golden
from imgsearch_devkit.ops.golden import add_judgments
from moto import mock_aws

from imgsearch.core.clock import ISO_FORMAT
from imgsearch.eval.golden import parse_golden
from imgsearch.usage.records import FeedbackRecord, SearchRecord, Shown

REGION = "us-east-1"
BUCKET = "imgsearch-golden-test"
KEY = "eval/golden.jsonl"  # settings.gate.golden_key's default
SHOWN = ("images/a.png", "images/b.png", "images/c.png")


def run(argv: list[str]) -> int:
    """The command group as ``imgsearch`` runs it (``imgsearch_devkit.cli.main``)."""
    parser = argparse.ArgumentParser(prog="imgsearch")
    golden.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A versioned bucket, and the local state file that points the commands at it."""
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        monkeypatch.chdir(tmp_path)
        state = Path(".imgsearch/local.json")
        state.parent.mkdir()
        state.write_text(json.dumps({"region": REGION, "bucket": BUCKET, "table": "t"}))
        yield client


def put_usage_log(s3: Any, texts_and_clicks: list[tuple[str, list[str]]]) -> None:
    """One search per item (showing ``SHOWN``) with a click on each of its keys, an hour ago,
    in one Firehose object under ``usage/YYYY/MM/DD/HH/``."""
    when = datetime.now(UTC) - timedelta(hours=1)
    stamp = when.strftime(ISO_FORMAT)
    lines = []
    for number, (text, clicks) in enumerate(texts_and_clicks):
        query_id = f"q{number}"
        lines.append(
            SearchRecord(
                query_id=query_id,
                time=stamp,
                model="clip@1",
                index_version="v1",
                kind="text",
                k=10,
                offset=0,
                results=tuple(Shown(key, 0.3) for key in SHOWN),
                latency_ms=3.0,
                text=text,
            ).to_json()
        )
        lines += [FeedbackRecord(query_id, stamp, key, "click").to_json() for key in clicks]
    s3.put_object(
        Bucket=BUCKET,
        Key=f"usage/{when:%Y/%m/%d/%H}/stream-1",
        Body="\n".join(lines).encode(),
    )


def printed(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    return json.loads(capsys.readouterr().out)


def versions(s3: Any) -> int:
    return len(s3.list_object_versions(Bucket=BUCKET, Prefix=KEY).get("Versions", []))


def test_suggest_add_and_list(s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["golden", "list", "--json"]) == 0
    assert printed(capsys) == {"key": KEY, "sha256": None, "queries": []}

    put_usage_log(
        s3,
        [
            ("red circle", ["images/a.png"]),
            ("red circle", ["images/a.png", "images/b.png"]),
            ("red circle", ["images/a.png"]),
            ("blue square", ["images/c.png"]),  # one search: not enough
        ],
    )
    assert run(["golden", "suggest", "--days", "1", "--json"]) == 0
    suggested = capsys.readouterr().out
    document = json.loads(suggested)
    assert (document["searches"], document["joined"], document["golden_sha256"]) == (4, 5, None)
    assert document["suggestions"] == [
        {
            "query": "red circle",
            "relevant": ["images/a.png"],
            "searches": 3,
            "clicks": 3,
            "agreement": 1.0,
        }
    ]

    # What suggest printed is what add reads.
    Path("suggested.json").write_text(suggested)
    assert run(["golden", "add", "--from", "suggested.json"]) == 0
    out = capsys.readouterr().out
    body = s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
    assert body == b'{"query": "red circle", "relevant": ["images/a.png"]}\n'
    first = parse_golden(body, KEY).sha256
    assert out.splitlines() == [
        "wrote eval/golden.jsonl",
        "queries     1 (1 new)",
        "keys added  1",
        f"sha256      {first}",
        "previous    -",
    ]

    # A dry run and an add that changes nothing write no version; a real one keeps the old.
    dry = ["golden", "add", "--query", "Red Circle", "--key", "images/b.png", "--dry-run"]
    assert run(dry) == 0
    assert "would write" in capsys.readouterr().out and versions(s3) == 1
    assert run(["golden", "add", "--query", "red circle", "--key", "images/a.png", "--json"]) == 0
    assert printed(capsys)["written"] is False and versions(s3) == 1
    assert run(["golden", "add", "--query", "cat", "--key", "images/c.png", "--json"]) == 0
    change = printed(capsys)
    assert (change["previous_sha256"], change["written"], versions(s3)) == (first, True, 2)

    assert run(["golden", "list", "--json"]) == 0
    assert printed(capsys) == {
        "key": KEY,
        "sha256": change["sha256"],
        "queries": [
            {"query": "cat", "relevant": ["images/c.png"]},
            {"query": "red circle", "relevant": ["images/a.png"]},
        ],
    }
    assert run(["golden", "list"]) == 0
    assert "2 queries, sha256 " + change["sha256"] in capsys.readouterr().out

    # The set holds "red circle" now: nothing is suggested for it again.
    assert run(["golden", "suggest", "--days", "1", "--json"]) == 0
    assert printed(capsys)["suggestions"] == []


def test_two_concurrent_adds_both_land(s3: Any) -> None:
    """Another add writes between this one's read and its write: the conditional write fails,
    and the retry merges onto the other's set."""
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b'{"query": "red", "relevant": ["r"]}\n')
    other = boto3.client("s3", region_name=REGION)
    raced: list[str] = []

    def interleave(params: dict[str, Any], **_: Any) -> None:
        if not raced:
            raced.append(params["Key"])
            add_judgments(other, BUCKET, KEY, [("blue", ["b"])])

    s3.meta.events.register("before-parameter-build.s3.PutObject", interleave)
    change = add_judgments(s3, BUCKET, KEY, [("green", ["g"])])
    golden_set = parse_golden(s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read(), KEY)
    assert raced == [KEY] and change.written
    assert golden_set.queries == ["blue", "green", "red"]
    assert change.sha256 == golden_set.sha256
    assert versions(s3) == 3  # the first set, the other add's, this one's


def test_bad_input_is_refused_before_anything_is_written(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("bad.jsonl").write_text('{"query": "red"}\n')
    assert run(["golden", "add", "--from", "bad.jsonl"]) == 2
    assert '"relevant" must be' in capsys.readouterr().err
    assert run(["golden", "add", "--query", "red"]) == 2
    assert run(["golden", "suggest", "--since", "yesterday"]) == 2
    assert run(["golden", "suggest", "--min-agreement", "2"]) == 2
    assert versions(s3) == 0
