"""The state machine's payloads match the typed contracts.

The real ASL runs in moto with the real handlers (``pipeline_support``); every task's input, as
the ASL's ``Parameters`` build it, and every output, as the handler returned it, must read as
its model and dump back to the very same JSON: a field the ASL passes that the model does not
know, one it misses, or a value it would coerce fails here, naming the step. The runs' outputs
and the files they leave (``current.json``, ``report.json``, the failure report) are checked the
same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_support import BUCKET, Stack, pipeline_environment, running_stack
from tiny_bundle import make_tiny_bundle

from imgsearch.catalog.contract import Contract
from imgsearch.catalog.current import CurrentIndex
from imgsearch.catalog.report import BuildResult, IndexReport, SnapshotManifest
from imgsearch.catalog.versions import PublishRecord
from imgsearch.pipeline.contracts import (
    BuildInput,
    FailureInput,
    FailureReport,
    FailureResult,
    PublishInput,
    PublishResult,
    RollbackInput,
    RunState,
    SkippedRun,
    StartInput,
    ValidateInput,
    ValidationOutcome,
)

pytestmark = pytest.mark.slow

CONTRACTS: dict[str, tuple[type[Contract], type[Contract]]] = {
    "SnapshotFunction": (StartInput, SnapshotManifest),
    "BuildIndexFunction": (BuildInput, BuildResult),
    "ValidateIndexFunction": (ValidateInput, ValidationOutcome),
    "PublishIndexFunction": (PublishInput, PublishResult),
    "ReportFailureFunction": (FailureInput, FailureResult),
    "RollbackIndexFunction": (RollbackInput, CurrentIndex),
}
"""Function -> (input model, output model)."""


def assert_matches(model: type[Contract], payload: Any, where: str) -> None:
    """``payload`` reads as ``model`` and dumps back unchanged (defaults it left out aside)."""
    parsed = model.parse(payload)
    again = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert again == payload, f"{where}: {model.__name__} does not round-trip"


def assert_invocations_match(stack: Stack, dispatch: Any) -> set[str]:
    """Every recorded task against its models; returns the functions seen."""
    for call in dispatch.invocations:
        inputs, outputs = CONTRACTS[call.function]
        assert_matches(inputs, call.event, f"{call.function} input")
        if not call.error:
            assert_matches(outputs, call.result, f"{call.function} output")
    return {call.function for call in dispatch.invocations}


def read_json(stack: Stack, key: str) -> Any:
    return json.loads(stack.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny", dim=32)


@pytest.fixture
def stack(bundle: Path, tmp_path: Path) -> Iterator[tuple[Stack, Any]]:
    with running_stack(pipeline_environment(bundle, tmp_path), bundle) as running:
        yield running


def test_a_publishing_run_then_a_skipped_one_and_a_rollback(stack) -> None:
    stack, dispatch = stack
    stack.put_images()
    stack.put_golden()

    first = stack.run()
    assert first["status"] == "SUCCEEDED", first
    assert_matches(RunState, json.loads(first["output"]), "published run's output")
    second = stack.run({"force": True})
    assert second["status"] == "SUCCEEDED", second
    published = RunState.parse(json.loads(second["output"]))
    assert published.publish is not None and published.execution_input == {"force": True}

    skipped = stack.run()
    assert skipped["status"] == "SUCCEEDED", skipped
    assert_matches(SkippedRun, json.loads(skipped["output"]), "skipped run's output")

    response = stack.lambda_.invoke(FunctionName="RollbackIndexFunction", Payload=b"{}")
    assert "FunctionError" not in response, response["Payload"].read()

    assert assert_invocations_match(stack, dispatch) == {
        "SnapshotFunction",
        "BuildIndexFunction",
        "ValidateIndexFunction",
        "PublishIndexFunction",
        "RollbackIndexFunction",
    }
    current = read_json(stack, "indexes/current.json")
    assert_matches(CurrentIndex, current, "current.json")
    assert current["schema_version"] == "1.0"
    report = read_json(stack, f"indexes/{published.publish.version}/report.json")
    assert_matches(IndexReport, report, "report.json")
    assert report["schema_version"] == "1.0" and report["quality"] is not None
    record = read_json(stack, f"indexes/{published.publish.version}/published.json")
    assert_matches(PublishRecord, record, "published.json")
    assert record["previous"] == json.loads(first["output"])["build"]["version"]


def test_a_rejected_run_and_a_failed_one(stack) -> None:
    stack, dispatch = stack
    stack.put_images()
    assert stack.run()["status"] == "SUCCEEDED"
    dispatch.routes.update(stack.routes(IMGSEARCH_GATE_MIN_RECALL="1.01"))

    rejected = stack.wait(stack.start({"force": True}, name="rejected-run"))
    assert rejected["error"] == "IndexPipeline.GateRejected"
    dispatch.fail_next("BuildIndexFunction", "Lambda.ServiceException", times=10)
    failed = stack.wait(stack.start({"force": True}, name="failed-run"))
    assert failed["error"] == "Lambda.ServiceException"

    assert "ReportFailureFunction" in assert_invocations_match(stack, dispatch)
    for name, step in (("rejected-run", "Gate"), ("failed-run", "Build")):
        failure = read_json(stack, f"indexes/failures/{name}.json")
        assert_matches(FailureReport, failure, f"{name} failure report")
        assert failure["step"] == step and failure["input"] == {"force": True}
    version = dispatch.calls("ReportFailureFunction")[0].event["state"]["build"]["version"]
    report = read_json(stack, f"indexes/{version}/report.json")
    assert_matches(IndexReport, report, "the rejected version's report.json")
