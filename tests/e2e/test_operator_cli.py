"""The operator commands against the running local stack, found through its state file."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from imgsearch_devkit.demo.scenes import describes, generate
from imgsearch_devkit.target import (
    LOCAL_STATE_FILE,
    STATE_VARIABLE,
    TargetError,
    claim_state_file,
    state_file_alive,
)
from stack_support import IMGSEARCH, Seeded, jpeg, run_cli, run_pipeline, upload_scenes

pytestmark = pytest.mark.slow


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

    status, out, output = run_cli(seeded_stack, "upload", str(folder), "--json")
    assert status == 0, output
    assert "skipped (not an image file)" in output and "notes.txt" in output
    uploaded = json.loads(out.strip().splitlines()[-1])["keys"]
    assert sorted(uploaded) == [
        "images/broken.jpg", "images/cli 0.png", "images/cli 1.png", "images/nested/cli 2.png",
    ]  # fmt: skip
    seeded_stack.stack.wait_for_ingestion(timeout=60)

    status, out, output = run_cli(seeded_stack, "stats", "--json")
    assert status == 0, output
    stats = json.loads(out)
    ok, reasons = table_counts(seeded_stack)
    assert stats["index_version"]
    # Counts are for the serving model; the stack holds one model.
    assert stats["embedded"] == ok
    assert stats["quarantined"] == reasons and reasons.get("not_an_image", 0) >= 1
    assert stats["queue_depth"] == 0 and stats["dlq_depth"] == 0

    status, out, output = run_cli(seeded_stack, "stats")
    assert status == 0 and f"embedded     {ok}" in output, output


def test_upload_of_a_missing_path_fails_clearly(seeded_stack: Seeded) -> None:
    status, _out, output = run_cli(seeded_stack, "upload", "no/such/dir")
    assert status == 1 and "no such file or folder: no/such/dir" in output


def test_search_text_and_image(seeded_stack: Seeded, tmp_path: Path) -> None:
    status, out, output = run_cli(seeded_stack, "search", "blue square", "-k", "3", "--json")
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
    status, out, output = run_cli(seeded_stack, "search", "--image", str(probe), "-k", "2")
    assert status == 0, output
    lines = output.strip().splitlines()
    assert lines[0].startswith("2 result(s) from index ")
    assert lines[1].endswith(key), output

    status, out, output = run_cli(seeded_stack, "search")
    assert status == 1 and "give either TEXT or --image PATH" in output


def test_dlq_redrive(seeded_stack: Seeded) -> None:
    """Dead-lettered S3 events go back to the ingest queue and get embedded."""
    target = seeded_stack.target
    s3, sqs = seeded_stack.client("s3"), seeded_stack.client("sqs")
    image, scene = generate(1, seed=41)[0]
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

    status, out, output = run_cli(seeded_stack, "dlq", "redrive", "--json")
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
    seeded_stack.scenes[key] = scene  # searchable now (the fresh segment): other tests judge it


def test_commands_without_a_stack_say_how_to_start_one(tmp_path: Path) -> None:
    done = subprocess.run(
        [IMGSEARCH, "stats"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "start one with `imgsearch local up`" in done.stderr


def test_publish_and_rollback_wait_until_the_api_serves(seeded_stack: Seeded) -> None:
    api = seeded_stack.target.api()
    before = api.version().index_version

    status, out, output = run_cli(seeded_stack, "pipeline", "run", "--force", "--wait")
    assert status == 0, output
    published = next(line.split()[1] for line in out.splitlines() if line.startswith("published"))
    assert f"the API serves {published} (" in out, output
    # When the command returns, the API already answers with the new version.
    assert api.version().index_version == published

    status, out, output = run_cli(seeded_stack, "index", "rollback")
    assert status == 0, output
    assert f"serving {before} (was {published})" in out and f"the API serves {before} (" in out
    assert api.version().index_version == before


def test_a_run_with_nothing_new_is_a_skip_everywhere(seeded_stack: Seeded) -> None:
    # Whatever earlier tests uploaded is indexed first; then nothing is new.
    status, _out, output = run_cli(seeded_stack, "pipeline", "run", "--wait")
    assert status == 0, output
    status, out, output = run_cli(seeded_stack, "pipeline", "run", "--wait", "--json")
    assert status == 0, output
    run = json.loads(out)
    assert run["status"] == "SKIPPED" and "nothing changed" in run["output"]["reason"], run
    assert [s["state"] for s in run["states"]] == ["Snapshot", "Changed?", "NothingChanged"]

    status, out, output = run_cli(seeded_stack, "pipeline", "run", "--wait")
    assert status == 0 and "`imgsearch pipeline run --force` rebuilds anyway" in out, output

    status, out, output = run_cli(seeded_stack, "pipeline", "history", "--json")
    assert status == 0, output
    names = {e["name"]: e["status"] for e in json.loads(out)["executions"]}
    assert names[run["execution"].rsplit(":", 1)[1]] == "SKIPPED"

    status, out, output = run_cli(seeded_stack, "pipeline", "run")
    assert status == 0 and "Step Functions console" not in out, output  # none on a local stack


def test_rollback_json_names_the_version_served(seeded_stack: Seeded) -> None:
    status, out, output = run_cli(seeded_stack, "pipeline", "run", "--force", "--wait", "--json")
    assert status == 0, output
    published = json.loads(out)
    version = published["output"]["publish"]["version"]
    assert published["served_after_seconds"] is not None

    status, out, output = run_cli(seeded_stack, "index", "rollback", "--json")
    assert status == 0, output
    current = json.loads(out)
    assert current["previous"] == version and current["served_after_seconds"] is not None
    assert seeded_stack.target.api().version().index_version == current["version"]


def run_anywhere(*argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``imgsearch ARGV`` in ``cwd``, with ``env`` over an environment that names no state."""
    environ = {k: v for k, v in os.environ.items() if k != STATE_VARIABLE}
    return subprocess.run(
        [IMGSEARCH, *argv], cwd=cwd, env={**environ, **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_state_file_is_found_from_anywhere(seeded_stack: Seeded, tmp_path: Path) -> None:
    state = seeded_stack.workdir / LOCAL_STATE_FILE
    deep = seeded_stack.workdir / "photos" / "2024"
    deep.mkdir(parents=True, exist_ok=True)
    for done in (
        run_anywhere("stats", "--approximate", "--json", cwd=deep),  # walks up, as git does
        run_anywhere("stats", "--approximate", "--json", "--state", str(state), cwd=tmp_path),
        run_anywhere("stats", "--approximate", "--json", cwd=tmp_path, IMGSEARCH_STATE=str(state)),
    ):
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["index_version"]
    done = run_anywhere("stats", cwd=tmp_path)
    assert done.returncode == 1
    assert f"no {LOCAL_STATE_FILE} in {tmp_path.resolve()} or any folder above it" in done.stderr


def test_a_second_stack_cannot_take_the_running_stacks_state_file(seeded_stack: Seeded) -> None:
    state = seeded_stack.workdir / LOCAL_STATE_FILE
    assert state_file_alive(state)
    with pytest.raises(TargetError, match=r"still running .* --state FILE"):
        claim_state_file(state)
    claim_state_file(state, seeded_stack.target)  # its own stack may write it again


def test_stats_say_what_waits_for_the_next_build(seeded_stack: Seeded) -> None:
    run_pipeline(seeded_stack)  # whatever earlier tests left: published (or unchanged)
    status, out, output = run_cli(seeded_stack, "stats", "--json")
    assert status == 0, output
    assert json.loads(out)["pending"] == 0

    upload_scenes(seeded_stack, "images/pending/", 2, seed=51)
    seeded_stack.stack.wait_for_ingestion(timeout=60)
    status, out, output = run_cli(seeded_stack, "stats", "--json")
    stats = json.loads(out)
    assert stats["pending"] == 2 and stats["next_build"] is None, stats
    status, out, output = run_cli(seeded_stack, "stats")
    assert "not indexed  2  (embedded since the serving index's snapshot: the next build" in out
    assert "next build   none scheduled (imgsearch pipeline run)" in out


def test_stats_show_progress_on_stderr_and_print_json_alone(seeded_stack: Seeded) -> None:
    done = run_anywhere("stats", "--json", cwd=seeded_stack.workdir)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)  # stdout is the JSON document and nothing else
    assert "scanning the embeddings table" in done.stderr

    status, out, output = run_cli(seeded_stack, "stats", "--approximate", "--json")
    assert status == 0, output
    approximate = json.loads(out)
    items = len(seeded_stack.client("dynamodb").scan(TableName=seeded_stack.target.table)["Items"])
    assert approximate["approximate"] and approximate["item_count"] == items
    assert approximate["embedded"] is None and "scanning" not in output
    assert approximate["index_version"] == stats["index_version"]
    status, out, _ = run_cli(seeded_stack, "stats", "--approximate")
    assert "refreshed about every 6 hours" in out


def test_quarantine_list_says_why_a_file_was_refused(seeded_stack: Seeded) -> None:
    key = "images/refused/not really.jpg"
    s3 = seeded_stack.client("s3")
    s3.put_object(Bucket=seeded_stack.target.bucket, Key=key, Body=b"0123456789")
    seeded_stack.stack.wait_for_ingestion(timeout=60)

    status, out, output = run_cli(seeded_stack, "quarantine", "list", "--json")
    assert status == 0, output
    images = {image["key"]: image for image in json.loads(out)["images"]}
    assert images[key]["reason"] == "not_an_image" and images[key]["size"] == 10
    assert images[key]["updated_at"].startswith("20")

    status, out, output = run_cli(
        seeded_stack, "quarantine", "list", "--reason", "too_large", "--json"
    )
    assert status == 0 and key not in {i["key"] for i in json.loads(out)["images"]}, output
    status, out, output = run_cli(seeded_stack, "quarantine", "list", "--reason", "not_an_image")
    header, *rows = out.splitlines()
    assert header.split() == ["key", "reason", "bytes", "refused", "at", "model"]
    assert any(row.startswith(key) and " not_an_image " in row for row in rows), out


def test_upload_json_is_the_only_thing_on_stdout(seeded_stack: Seeded, tmp_path: Path) -> None:
    image, _ = generate(1, seed=61)[0]
    image.save(tmp_path / "one.png")
    (tmp_path / "readme.txt").write_text("not an image")
    status, out, output = run_cli(seeded_stack, "upload", str(tmp_path), "--json")
    assert status == 0, output
    result = json.loads(out)
    assert result["keys"] == ["images/one.png"]
    assert result["skipped"] == [str(tmp_path / "readme.txt")]
    seeded_stack.stack.wait_for_ingestion(timeout=60)


def test_a_closed_pipe_ends_quietly(seeded_stack: Seeded) -> None:
    """``imgsearch stats | head``: the reader goes away before the command prints."""
    process = subprocess.Popen(
        [IMGSEARCH, "stats"], cwd=seeded_stack.workdir,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    errors = process.stderr.read()
    assert process.wait(timeout=120) == 1
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors
