"""The operator commands against the running local stack, found through its state file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from imgsearch_devkit.demo.scenes import describes, generate
from stack_support import IMGSEARCH, Seeded, jpeg

pytestmark = pytest.mark.slow


def cli(seeded: Seeded, *argv: str) -> tuple[int, str, str]:
    """Run ``imgsearch ARGV`` as an operator would: its own process, in the directory whose
    ``.imgsearch/local.json`` names the stack. Returns (status, stdout, stdout + stderr)."""
    done = subprocess.run(
        [IMGSEARCH, *argv],
        cwd=seeded.workdir, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stdout + done.stderr


def table_counts(seeded: Seeded) -> tuple[int, dict[str, int]]:
    items = seeded.client("dynamodb").scan(TableName=seeded.target.table)["Items"]
    ok = sum(1 for item in items if item["status"]["S"] == "ok")
    reasons: dict[str, int] = {}
    for item in items:
        if item["status"]["S"] == "quarantined":
            reasons[item["reason"]["S"]] = reasons.get(item["reason"]["S"], 0) + 1
    return ok, reasons


def test_upload_then_stats_json(seeded_stack: Seeded, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for i, (image, _) in enumerate(generate(3, seed=31)):
        image.save(folder / ("nested" if i == 2 else "") / f"cli {i}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("skipped: not an image")

    status, out, output = cli(seeded_stack, "upload", str(folder), "--json")
    assert status == 0, output
    assert "skipped (not an image file)" in output and "notes.txt" in output
    uploaded = json.loads(out.strip().splitlines()[-1])["keys"]
    assert sorted(uploaded) == [
        "images/broken.jpg", "images/cli 0.png", "images/cli 1.png", "images/nested/cli 2.png",
    ]  # fmt: skip
    seeded_stack.stack.wait_for_ingestion(timeout=60)

    status, out, output = cli(seeded_stack, "stats", "--json")
    assert status == 0, output
    stats = json.loads(out)
    ok, reasons = table_counts(seeded_stack)
    assert stats["index_version"]
    # Counts are for the serving model; the stack holds one model.
    assert stats["embedded"] == ok
    assert stats["quarantined"] == reasons and reasons.get("not_an_image", 0) >= 1
    assert stats["queue_depth"] == 0 and stats["dlq_depth"] == 0

    status, out, output = cli(seeded_stack, "stats")
    assert status == 0 and f"embedded     {ok}" in output, output


def test_upload_of_a_missing_path_fails_clearly(seeded_stack: Seeded) -> None:
    status, _out, output = cli(seeded_stack, "upload", "no/such/dir")
    assert status == 1 and "no such file or folder: no/such/dir" in output


def test_search_text_and_image(seeded_stack: Seeded, tmp_path: Path) -> None:
    status, out, output = cli(seeded_stack, "search", "blue square", "-k", "3", "--json")
    assert status == 0, output
    response = json.loads(out)
    assert len(response["results"]) == 3
    keys = [hit["key"] for hit in response["results"]]
    scenes = seeded_stack.scenes
    relevant = [key for key, scene in scenes.items() if describes(scene, "blue square")]
    assert relevant, "the seeded stack holds a blue square"
    # Every blue square the stack holds ranks above everything else.
    top = keys[: min(len(relevant), len(keys))]
    assert all(describes(scenes[key], "blue square") for key in top), keys

    # Query by image: the stored image itself comes back first.
    probe = tmp_path / "probe.jpg"
    key = next(k for k, scene in seeded_stack.scenes.items() if k.startswith("images/seed/"))
    s3 = seeded_stack.client("s3")
    probe.write_bytes(s3.get_object(Bucket=seeded_stack.target.bucket, Key=key)["Body"].read())
    status, out, output = cli(seeded_stack, "search", "--image", str(probe), "-k", "2")
    assert status == 0, output
    lines = output.strip().splitlines()
    assert lines[0].startswith("2 result(s) from index ")
    assert lines[1].endswith(key), output

    status, out, output = cli(seeded_stack, "search")
    assert status == 1 and "give either TEXT or --image PATH" in output


def test_dlq_redrive(seeded_stack: Seeded) -> None:
    """Dead-lettered S3 events go back to the ingest queue and get embedded."""
    target = seeded_stack.target
    s3, sqs = seeded_stack.client("s3"), seeded_stack.client("sqs")
    image, _ = generate(1, seed=41)[0]
    key = "images/redriven/late arrival.jpg"
    # Store the object, then delete its notification from the ingest queue before the embed
    # function sees it - by planting a copy in the DLQ instead, as five failures would have.
    seeded_stack.stack.mapping.stop()
    try:
        s3.put_object(Bucket=target.bucket, Key=key, Body=jpeg(image))
        messages = sqs.receive_message(QueueUrl=target.queue_url, WaitTimeSeconds=2)["Messages"]
        assert len(messages) == 1 and "late+arrival.jpg" in messages[0]["Body"]
        sqs.send_message(QueueUrl=target.dlq_url, MessageBody=messages[0]["Body"])
        sqs.delete_message(QueueUrl=target.queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
    finally:
        seeded_stack.stack.mapping.start()

    status, out, output = cli(seeded_stack, "dlq", "redrive", "--json")
    assert status == 0, output
    assert json.loads(out) == {"moved": 1, "dlq_depth": 0}
    seeded_stack.stack.wait_for_ingestion(timeout=60)
    item = seeded_stack.client("dynamodb").query(
        TableName=target.table,
        KeyConditionExpression="#k = :k",
        ExpressionAttributeNames={"#k": "key"},
        ExpressionAttributeValues={":k": {"S": key}},
    )["Items"]
    assert [i["status"]["S"] for i in item] == ["ok"]


def test_commands_without_a_stack_say_how_to_start_one(tmp_path: Path) -> None:
    done = subprocess.run(
        [IMGSEARCH, "stats"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "start one with `imgsearch local up`" in done.stderr
