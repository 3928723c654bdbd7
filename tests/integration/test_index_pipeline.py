"""The index pipeline end to end: the real ASL file in moto's Step Functions interpreter, each
Lambda task dispatched to the real handler, against moto S3, DynamoDB and SNS (the stack and its
data: ``pipeline_support``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imgsearch_devkit.cli import main
from pipeline_support import (
    BUCKET,
    KINDS,
    PER_KIND,
    REGION,
    TABLE,
    Stack,
    history_states,
    pipeline_environment,
    running_stack,
)
from tiny_bundle import make_tiny_bundle

from imgsearch.ann import open_index
from imgsearch.catalog.current import read_current
from imgsearch.catalog.keytable import KeyTable
from imgsearch.core.keys import image_id

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny", dim=32)


@pytest.fixture
def environment(bundle: Path, tmp_path: Path) -> dict[str, str]:
    return pipeline_environment(bundle, tmp_path)


@pytest.fixture
def stack(environment: dict[str, str], bundle: Path) -> Iterator[tuple[Stack, Any]]:
    with running_stack(environment, bundle) as running:
        yield running


def test_successful_run_publishes_a_version_whose_report_holds_every_figure(stack) -> None:
    stack, dispatch = stack
    stack.put_images()
    stack.put_golden()

    result = stack.run()

    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    version = output["build"]["version"]
    current = read_current(stack.s3, BUCKET)
    assert current is not None and current.version == version
    assert current.count == len(KINDS) * PER_KIND
    assert current.model == "tiny@1"
    report = stack.report(version)
    assert report["passed"] is True
    assert report["ann"]["recall_at_10"] >= 0.95
    assert report["ann"]["text_queries"] == len(KINDS)
    # A collection this small clears the gate at the ladder's first step, and serves at it.
    assert report["ann"]["recall_at_10_by_expansion_search"] == {
        "64": report["ann"]["recall_at_10"]
    }
    assert current.expansion_search == report["ann"]["expansion_search"] == 64
    assert report["completeness"]["complete"] is True
    assert report["completeness"]["snapshot_count"] == len(KINDS) * PER_KIND
    for name in ("precision_at_10", "recall_at_10", "ndcg_at_10", "mrr"):
        assert 0 <= report["quality"][name] <= 1
    assert report["quality"]["precision_at_10"] > 0.9  # the kinds are well separated
    assert report["latency"]["p99_ms"] >= report["latency"]["p50_ms"] > 0
    assert report["build"]["build_seconds"] > 0 and report["build"]["dtype"] == "f16"
    assert {g["name"] for g in report["gates"]} >= {"ann_recall_at_10", "completeness", "p99_ms"}
    assert current.headline["recall_at_10"] == report["ann"]["recall_at_10"]
    assert current.headline["precision_at_10"] == report["quality"]["precision_at_10"]
    # The query function opens the published index this way.
    assert current.engine == report["build"]["engine"] == "faiss"
    stack.s3.download_file(BUCKET, f"indexes/{version}/index.faiss", "/tmp/pipeline-test.faiss")
    index = open_index("faiss", "/tmp/pipeline-test.faiss", view=True)
    assert len(index) == current.count and index.dtype == "f16"
    keys = KeyTable(
        stack.s3.get_object(Bucket=BUCKET, Key=f"indexes/{version}/keys")["Body"].read()
    )
    assert keys.key(image_id("images/red-circle/000.png")) == "images/red-circle/000.png"
    # The snapshot is removed once its index serves; every task ran once.
    assert "Contents" not in stack.s3.list_objects_v2(Bucket=BUCKET, Prefix="snapshots/")
    assert [len(dispatch.calls(f)) for f in ("SnapshotFunction", "PublishIndexFunction")] == [1, 1]


def use_local_target(stack: Stack, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator commands' local state file, pointing at the moto resources."""
    monkeypatch.chdir(folder)
    state = Path(".imgsearch/local.json")
    state.parent.mkdir()
    state.write_text(
        json.dumps(
            {
                "region": REGION,
                "bucket": BUCKET,
                "table": TABLE,
                "state_machine_arn": stack.arn,
                "alerts_topic_arn": stack.topic,
            }
        )
    )


def test_skip_force_rollback_and_list(
    stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, dispatch = stack
    stack.put_images()
    use_local_target(stack, tmp_path, monkeypatch)

    assert main(["pipeline", "run", "--wait"]) == 0
    printed = capsys.readouterr().out
    states = [line.split()[1] for line in printed.splitlines() if line.startswith("  ok")]
    assert states == ["Snapshot", "Changed?", "Build", "Validate", "Gate", "Publish", "Published"]
    v1 = stack.current_version()
    assert f"published {v1}" in printed and "recall_at_10" in printed

    # Same embedding set: the run stops after the snapshot and says why.
    skipped = stack.start()
    result = stack.wait(skipped)
    assert result["status"] == "SUCCEEDED"
    output = json.loads(result["output"])
    assert output["status"] == "skipped" and v1 in output["reason"]
    assert history_states(stack, skipped) == ["Snapshot", "Changed?", "NothingChanged"]
    assert len(dispatch.calls("BuildIndexFunction")) == 1
    assert stack.current_version() == v1

    # force rebuilds the same set; a changed set rebuilds without it.
    assert stack.run({"force": True})["status"] == "SUCCEEDED"
    v2 = stack.current_version()
    assert v2 != v1 and read_current(stack.s3, BUCKET).previous == v1
    stack.put_images(kinds=("green circle",), per_kind=5)  # unknown word: still a new vector
    assert stack.run()["status"] == "SUCCEEDED"
    v3 = stack.current_version()
    assert read_current(stack.s3, BUCKET).count == len(KINDS) * PER_KIND + 5
    # keep_versions=2: v1 is pruned once v3 publishes.
    names = {
        p["Prefix"]
        for p in stack.s3.list_objects_v2(Bucket=BUCKET, Prefix="indexes/", Delimiter="/")[
            "CommonPrefixes"
        ]
    }
    assert names == {f"indexes/{v2}/", f"indexes/{v3}/"}

    # The rollback function puts v2 back; a second rollback has nothing older left.
    response = stack.lambda_.invoke(FunctionName="RollbackIndexFunction", Payload=b"{}")
    assert "FunctionError" not in response, response["Payload"].read()
    assert json.loads(response["Payload"].read())["version"] == v2
    current = read_current(stack.s3, BUCKET)
    assert current.version == v2 and current.previous == v3
    assert current.expansion_search == stack.report(v2)["ann"]["expansion_search"]
    response = stack.lambda_.invoke(FunctionName="RollbackIndexFunction", Payload=b"{}")
    assert json.loads(response["Payload"].read())["errorType"] == "RollbackError"
    response = stack.lambda_.invoke(
        FunctionName="RollbackIndexFunction", Payload=json.dumps({"to": v3}).encode()
    )
    assert json.loads(response["Payload"].read())["version"] == v3

    # The operator commands see the same.
    capsys.readouterr()
    assert main(["index", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["serving"] == v3
    assert [(v["version"], v["serving"], v["status"]) for v in listed["versions"]] == [
        (v2, False, "validated"),
        (v3, True, "validated"),
    ]
    assert [v["expansion_search"] for v in listed["versions"]] == [64, 64]
    assert [v["published"] for v in listed["versions"]] == [True, True]
    assert main(["index", "rollback", "--to", v2]) == 0
    assert stack.current_version() == v2
    assert main(["index", "rollback", "--to", "not-a-version"]) == 2
    assert main(["pipeline", "history", "--json"]) == 0
    history = json.loads(capsys.readouterr().out.splitlines()[-1])["executions"]
    # Three publishes and the run that found nothing changed.
    assert len(history) == 4
    assert sorted(h["status"] for h in history) == [
        "SKIPPED",
        "SUCCEEDED",
        "SUCCEEDED",
        "SUCCEEDED",
    ]


def test_an_empty_table_is_a_skip_not_a_failure(stack) -> None:
    """A fresh stack's scheduled runs must not raise the failed-pipeline alarm every hour."""
    stack, dispatch = stack
    for payload in ({}, {"force": True}):
        result = stack.run(payload)
        assert result["status"] == "SUCCEEDED", result
        output = json.loads(result["output"])
        assert output["status"] == "skipped" and "nothing to index" in output["reason"]
    assert dispatch.calls("BuildIndexFunction") == [] and stack.alerts() == []
    assert stack.current_version() is None


def test_rejected_run_fails_and_leaves_the_serving_index(stack) -> None:
    stack, dispatch = stack
    stack.put_images()
    stack.put_golden()
    assert stack.run()["status"] == "SUCCEEDED"
    serving = stack.current_version()
    stack.alerts()  # drain

    # A gate no index can pass: recall@10 >= 1.01.
    dispatch.routes.update(stack.routes(IMGSEARCH_GATE_MIN_RECALL="1.01"))
    execution = stack.start({"force": True}, name="rejected-run")
    result = stack.wait(execution)

    assert result["status"] == "FAILED"
    assert result["error"] == "IndexPipeline.GateRejected"
    assert "ann_recall_at_10" in result["cause"] and "needs >= 1.01" in result["cause"]
    assert stack.current_version() == serving
    assert history_states(stack, execution)[-3:] == ["Gate", "Rejected", "ReportFailure"]
    failure = json.loads(
        stack.s3.get_object(Bucket=BUCKET, Key="indexes/failures/rejected-run.json")["Body"].read()
    )
    assert failure["step"] == "Gate" and failure["serving_version"] == serving
    rejected = stack.report(failure["version"])
    assert rejected["passed"] is False and "quality" in rejected
    assert [g["name"] for g in rejected["gates"] if not g["passed"]] == ["ann_recall_at_10"]
    (alert,) = stack.alerts()
    assert "failed at Gate" in alert["Subject"]
    assert json.loads(alert["Message"])["execution_name"] == "rejected-run"
    # Its snapshot stays for inspection (the bucket's lifecycle rule expires snapshots/).
    assert failure["snapshot"].startswith("snapshots/")


def test_transient_task_failure_is_retried(stack) -> None:
    stack, dispatch = stack
    stack.put_images()
    dispatch.fail_next("BuildIndexFunction", "Lambda.TooManyRequestsException", times=1)
    dispatch.fail_next("PublishIndexFunction", "Lambda.ServiceException", times=1)

    result = stack.run()

    assert result["status"] == "SUCCEEDED", result
    assert [c.error for c in dispatch.calls("BuildIndexFunction")] == [
        "Lambda.TooManyRequestsException",
        "",
    ]
    assert [c.error for c in dispatch.calls("PublishIndexFunction")] == [
        "Lambda.ServiceException",
        "",
    ]
    assert stack.current_version() == json.loads(result["output"])["build"]["version"]


def test_task_that_keeps_failing_is_caught_and_reported(stack) -> None:
    stack, dispatch = stack
    stack.put_images()
    dispatch.fail_next("ValidateIndexFunction", "Lambda.ServiceException", times=10)

    execution = stack.start(name="broken-validate")
    result = stack.wait(execution)

    assert result["status"] == "FAILED"
    assert result["error"] == "Lambda.ServiceException"
    assert result["cause"].startswith("Validate failed: Lambda was unable to run the function")
    assert len(dispatch.calls("ValidateIndexFunction")) == 4  # the first try and 3 retries
    assert stack.current_version() is None
    failure = json.loads(
        stack.s3.get_object(Bucket=BUCKET, Key="indexes/failures/broken-validate.json")[
            "Body"
        ].read()
    )
    assert failure["step"] == "Validate" and failure["error"] == "Lambda.ServiceException"
    assert failure["version"]  # built, never validated: it will not serve
    (alert,) = stack.alerts()
    assert "failed at Validate" in alert["Subject"]


def test_two_runs_racing_to_publish(stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack, dispatch = stack
    stack.put_images()
    assert stack.run()["status"] == "SUCCEEDED"
    first = stack.current_version()
    # Both runs read current.json at their snapshot, then meet before publishing. S3 serialises
    # conditional writes; moto does not, so the lock stands in for S3's atomicity.
    # Generous timeouts: on a loaded CI machine the second run can validate long after the first.
    barrier, lock = threading.Barrier(2, timeout=240), threading.Lock()
    publish = dispatch.routes["PublishIndexFunction"]

    def publish_after_both_validated(event: dict[str, Any], context: Any) -> Any:
        barrier.wait()
        with lock:
            return publish(event, context)

    dispatch.routes["PublishIndexFunction"] = publish_after_both_validated
    runs = [stack.start({"force": True}, name=f"racer-{n}") for n in (1, 2)]
    results = [stack.wait(run, timeout=300) for run in runs]

    statuses = sorted(r["status"] for r in results)
    assert statuses == ["FAILED", "SUCCEEDED"]
    winner = next(r for r in results if r["status"] == "SUCCEEDED")
    loser = next(r for r in results if r["status"] == "FAILED")
    assert loser["error"] == "PublishConflict"
    assert loser["cause"].startswith("Publish failed:")
    current = read_current(stack.s3, BUCKET)
    assert current.version == json.loads(winner["output"])["build"]["version"]
    assert current.previous == first
    # The winner's pruning left the loser's validated candidate alone (its run was in flight).
    built = {call.result["version"] for call in dispatch.calls("BuildIndexFunction")}
    (candidate,) = built - {first, current.version}
    assert stack.report(candidate)["passed"] is True
    conflicts = [
        line for line in capsys.readouterr().out.splitlines() if '"PublishConflicts"' in line
    ]
    assert len(conflicts) == 1 and json.loads(conflicts[0])["PublishConflicts"] == [1.0]


def test_forced_runs_on_an_unchanged_table_give_the_same_verdict(stack) -> None:
    """Every image uploaded twice more: exact ties everywhere, so which copies an HNSW search
    returns depends on the build. The verdict and the quality figures must not (see "What is
    deterministic" in docs/pipeline.md)."""
    stack, _ = stack
    stack.put_images(copies=2)
    stack.put_golden()
    assert stack.run()["status"] == "SUCCEEDED"
    runs = [stack.run({"force": True}) for _ in range(10)]

    assert [r["status"] for r in runs] == ["SUCCEEDED"] * 10, [r.get("cause") for r in runs]
    quality = ("precision_at_10", "golden_recall_at_10", "ndcg_at_10", "mrr")
    headlines = [json.loads(r["output"])["validation"]["headline"] for r in runs]
    assert len({tuple(h[name] for name in quality) for h in headlines}) == 1, headlines
