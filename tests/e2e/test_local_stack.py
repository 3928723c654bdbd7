"""The whole service on one machine: upload with plain boto3, ingest, index, query, delete.

Everything goes through the stack's public surfaces - the S3 endpoint (real notifications to
the ingest queue), the Step Functions endpoint and the HTTP API - with the real handlers behind
them. The last test drives ``imgsearch local up`` itself in a subprocess and stops it with
Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

import pytest
from imgsearch_devkit.demo.scenes import describes, generate
from imgsearch_devkit.local.stack import LocalStack, LocalStackConfig, PortInUse
from imgsearch_devkit.target import Target
from stack_support import IMGSEARCH, Seeded, jpeg, run_pipeline, upload_scenes

pytestmark = pytest.mark.slow


def get_json(url: str) -> dict:
    with urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def search(seeded: Seeded, text: str, k: int = 5) -> dict:
    return get_json(f"{seeded.target.api_url}/search?{urlencode({'q': text, 'k': k})}")


def wait_served(seeded: Seeded, version: str) -> None:
    deadline = time.monotonic() + 30
    while get_json(seeded.target.api_url + "/version")["index_version"] != version:
        assert time.monotonic() < deadline, f"the API never served {version}"
        time.sleep(0.3)


def test_state_file_names_the_stack(seeded_stack: Seeded) -> None:
    state = json.loads((seeded_stack.workdir / ".imgsearch" / "local.json").read_text())
    for field in (
        "aws_endpoint", "api_url", "region", "bucket", "image_prefix", "table",
        "queue_url", "dlq_url", "state_machine_arn", "alerts_topic_arn",
    ):  # fmt: skip
        assert state[field], field
    assert state["api_url"] == seeded_stack.target.api_url


def test_notification_mirrors_the_template(seeded_stack: Seeded) -> None:
    config = seeded_stack.client("s3").get_bucket_notification_configuration(
        Bucket=seeded_stack.target.bucket
    )["QueueConfigurations"]
    assert sorted(e for c in config for e in c["Events"]) == [
        "s3:ObjectCreated:*",
        "s3:ObjectRemoved:*",
    ]
    for entry in config:
        assert entry["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "images/"}]
    attributes = seeded_stack.client("sqs").get_queue_attributes(
        QueueUrl=seeded_stack.target.queue_url, AttributeNames=["All"]
    )["Attributes"]
    assert attributes["VisibilityTimeout"] == "720"
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 5


def test_upload_ingest_index_query_delete(seeded_stack: Seeded) -> None:
    uploaded = upload_scenes(seeded_stack, "images/e2e/", 20, seed=23)
    # Outside the image prefix: no notification, never embedded.
    s3 = seeded_stack.client("s3")
    s3.put_object(Bucket=seeded_stack.target.bucket, Key="other/ignored.jpg", Body=b"x")
    seeded_stack.stack.wait_for_ingestion(timeout=120)

    table = seeded_stack.client("dynamodb")
    items = table.scan(TableName=seeded_stack.target.table)["Items"]
    keys = {item["key"]["S"] for item in items if item["status"]["S"] == "ok"}
    assert set(uploaded) <= keys, "every upload (keys with spaces) was embedded"
    assert "other/ignored.jpg" not in {item["key"]["S"] for item in items}

    output = run_pipeline(seeded_stack)
    version = output["publish"]["version"]
    assert output["publish"]["count"] == len(keys)
    wait_served(seeded_stack, version)

    response = search(seeded_stack, "red circle", k=5)
    assert response["index_version"] == version
    hits = response["results"]
    known = seeded_stack.known([hit["key"] for hit in hits])
    assert known, hits
    # Two red circles among 60 scenes of 40 kinds: one must rank in the top 3.
    assert any(describes(seeded_stack.scenes[key], "red circle") for key in known[:3]), hits
    top = next(key for key in known if describes(seeded_stack.scenes[key], "red circle"))
    with urlopen(hits[0]["url"], timeout=30) as image:
        assert image.read(3) == b"\xff\xd8\xff", "the presigned URL serves the JPEG"

    s3.delete_object(Bucket=seeded_stack.target.bucket, Key=top)
    seeded_stack.stack.wait_for_ingestion(timeout=60)
    deadline = time.monotonic() + 15
    while top in {h["key"] for h in search(seeded_stack, "red circle", k=20)["results"]}:
        assert time.monotonic() < deadline, f"{top} still found after its deletion"
        time.sleep(0.5)
    similar = f"{seeded_stack.target.api_url}/images/{quote(top, safe='')}/similar"
    with pytest.raises(Exception, match="404"):
        get_json(similar)


def test_an_upload_is_searchable_in_seconds_with_no_pipeline_run(seeded_stack: Seeded) -> None:
    served = get_json(seeded_stack.target.api_url + "/version")["index_version"]
    assert served, "the seeded stack serves an index"
    (image, scene), *_ = generate(1, seed=77)
    data, key = jpeg(image), f"images/fresh/{scene.colour} {scene.shape}.jpg"
    seeded_stack.client("s3").put_object(Bucket=seeded_stack.target.bucket, Key=key, Body=data)

    def top_hit() -> str:
        request = Request(
            f"{seeded_stack.target.api_url}/search?k=3",
            data=data,
            headers={"Content-Type": "image/jpeg"},
            method="POST",
        )
        with urlopen(request, timeout=60) as response:
            results = json.loads(response.read())["results"]
        return results[0]["key"] if results else ""

    deadline = time.monotonic() + 30  # a bound on a hang, not a speed target (benchmarks/fresh.py)
    while top_hit() != key:
        assert time.monotonic() < deadline, f"{key} was not searchable within 30 s"
        time.sleep(0.2)
    assert get_json(seeded_stack.target.api_url + "/version")["index_version"] == served
    recent = get_json(f"{seeded_stack.target.api_url}/recent?k=1")["results"]
    assert [r["key"] for r in recent] == [key]
    seeded_stack.scenes[key] = scene


def test_busy_ports_are_reported(seeded_stack: Seeded, tmp_path: Path) -> None:
    api_port = int(seeded_stack.target.api_url.rsplit(":", 1)[1])
    aws_port = int(seeded_stack.target.aws_endpoint.rsplit(":", 1)[1])
    for ports, flag in (((0, api_port), "--api-port"), ((aws_port, 0), "--aws-port")):
        config = LocalStackConfig(
            aws_port=ports[0], api_port=ports[1], state_file=tmp_path / "local.json"
        )
        with pytest.raises(PortInUse, match=flag):
            LocalStack(config).start()
    assert not (tmp_path / "local.json").exists()


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def start_local_up(cwd: Path, *args: str) -> tuple[subprocess.Popen[str], dict]:
    """``imgsearch local up --no-demo --no-schedule ARGS`` in ``cwd``; returns it with its state."""
    process = subprocess.Popen(
        [IMGSEARCH, "local", "up", "--no-demo", "--no-schedule",
         "--aws-port", "0", "--api-port", "0", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    state = args[args.index("--state") + 1] if "--state" in args else ".imgsearch/local.json"
    state_file = cwd / state
    deadline = time.monotonic() + 90
    while not state_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no state file: {process.communicate()[0]}")
        time.sleep(0.3)
    return process, json.loads(state_file.read_text())


def interrupt(process: subprocess.Popen[str]) -> str:
    """Ctrl-C, as a user stops it; returns everything it printed."""
    try:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    return output


def test_local_up_serves_until_interrupted(tmp_path: Path) -> None:
    """``imgsearch local up --no-demo`` writes the state file, serves, and stops on Ctrl-C."""
    process, state = start_local_up(tmp_path)
    assert get_json(state["api_url"] + "/health")["status"] == "no_index"
    output = interrupt(process)
    assert "serving: open" in output and "local stack stopped" in output, output
    assert "export AWS_ACCESS_KEY_ID=testing" in output and "export PATH=" in output, output
    assert not (tmp_path / ".imgsearch" / "local.json").exists()
    assert not _port_open(state["api_url"]) and not _port_open(state["aws_endpoint"])


def test_the_data_outlives_ctrl_c_until_fresh(tmp_path: Path) -> None:
    process, state = start_local_up(tmp_path)
    try:
        target = Target.from_state_file(tmp_path / ".imgsearch" / "local.json")
        s3, sfn = target.client("s3"), target.client("stepfunctions")
        for i, (image, _scene) in enumerate(generate(4, seed=5)):
            s3.put_object(Bucket=target.bucket, Key=f"images/kept/{i}.jpg", Body=jpeg(image))
        deadline = time.monotonic() + 60
        while len(target.client("dynamodb").scan(TableName=target.table)["Items"]) < 4:
            assert time.monotonic() < deadline, "the uploads were not embedded"
            time.sleep(0.3)
        arn = sfn.start_execution(stateMachineArn=target.state_machine_arn, input="{}")
        while (run := sfn.describe_execution(executionArn=arn["executionArn"]))["status"] == (
            "RUNNING"
        ):
            assert time.monotonic() < deadline + 120, "the pipeline did not finish"
            time.sleep(0.3)
        version = json.loads(run["output"])["publish"]["version"]
    finally:
        first = interrupt(process)
    assert "data           new, kept in" in first, first

    process, state = start_local_up(tmp_path)
    try:
        # The index serves at once: nothing re-embedded, no pipeline run.
        assert get_json(state["api_url"] + "/health")["index_version"] == version
        target = Target.from_state_file(tmp_path / ".imgsearch" / "local.json")
        listed = target.client("s3").list_objects_v2(Bucket=target.bucket, Prefix="images/kept/")
        assert listed["KeyCount"] == 4
    finally:
        second = interrupt(process)
    assert "data           restored from" in second, second

    process, state = start_local_up(tmp_path, "--fresh")
    try:
        assert get_json(state["api_url"] + "/health")["status"] == "no_index"
    finally:
        interrupt(process)


def test_a_second_stack_in_one_folder_needs_its_own_state_file(tmp_path: Path) -> None:
    first, state = start_local_up(tmp_path)
    try:
        refused = subprocess.run(
            [IMGSEARCH, "local", "up", "--no-demo", "--no-schedule",
             "--aws-port", "0", "--api-port", "0"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert refused.returncode == 1 and "--state" in refused.stderr, refused.stderr
        second, other = start_local_up(tmp_path, "--state", ".imgsearch/second.json")
        assert other["api_url"] != state["api_url"]
        interrupt(second)
        # Stopping the second stack leaves the first one's state file alone.
        assert json.loads((tmp_path / ".imgsearch" / "local.json").read_text()) == state
    finally:
        interrupt(first)
