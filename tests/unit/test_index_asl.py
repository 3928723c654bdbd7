"""The index pipeline's ASL: cfn-lint's state machine schema (rule E3601), the graph's
transitions, retry/catch on every Lambda task, and every Task naming a template function."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from imgsearch_devkit.local.lambda_dispatch import PIPELINE_HANDLERS, render_definition
from imgsearch_devkit.local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = ROOT / "statemachine" / "index_pipeline.asl.json"
TEMPLATE = ROOT / "template.yaml"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
TRANSIENT = {"Lambda.ServiceException", "Lambda.TooManyRequestsException"}


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    return json.loads(DEFINITION.read_text(encoding="utf-8"))


def placeholders(asl: dict[str, Any]) -> set[str]:
    return set(PLACEHOLDER.findall(json.dumps(asl)))


def cfn_lint(asl: dict[str, Any]) -> list[str]:
    """Lint the definition as an AWS::StepFunctions::StateMachine's ``Definition``."""
    substitutions = {
        name: f"arn:aws:lambda:us-east-1:123456789012:function:{name}" for name in placeholders(asl)
    }
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Pipeline": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": "arn:aws:iam::123456789012:role/pipeline",
                    "Definition": asl,
                    "DefinitionSubstitutions": substitutions,
                },
            }
        },
    }
    matches = lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"]))
    return [f"{m.rule.id}: {m.message}" for m in matches]


def test_definition_passes_cfn_lint(asl: dict[str, Any]) -> None:
    assert cfn_lint(asl) == []


def test_cfn_lint_catches_a_broken_definition(asl: dict[str, Any]) -> None:
    broken = copy.deepcopy(asl)
    broken["States"]["Build"]["Retry"][0]["MaxAttempts"] = "three"
    del broken["States"]["Published"]["Type"]
    assert len([m for m in cfn_lint(broken) if m.startswith("E3601")]) >= 2


def transitions(state: dict[str, Any]) -> set[str]:
    targets = {state.get("Next"), state.get("Default")}
    targets |= {choice["Next"] for choice in state.get("Choices", [])}
    targets |= {catch["Next"] for catch in state.get("Catch", [])}
    return {t for t in targets if t}


def test_every_transition_names_a_state_and_every_state_is_reachable(asl: dict[str, Any]) -> None:
    states = asl["States"]
    for name, state in states.items():
        assert transitions(state) <= set(states), f"{name} moves to an unknown state"
        ends = state.get("End") or state["Type"] in ("Succeed", "Fail")
        assert ends or transitions(state), f"{name} neither ends nor moves on"
    reached, pending = set(), [asl["StartAt"]]
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending.extend(transitions(states[name]))
    assert reached == set(states)


def test_lambda_tasks_retry_transient_errors_and_catch_everything(asl: dict[str, Any]) -> None:
    tasks = {n: s for n, s in asl["States"].items() if s["Type"] == "Task"}
    lambda_tasks = {n: s for n, s in tasks.items() if s["Resource"].startswith("${")}
    assert set(lambda_tasks) == {"Snapshot", "Build", "Validate", "Publish", "ReportFailure"}
    for name, state in tasks.items():
        retried = {e for retry in state.get("Retry", []) for e in retry["ErrorEquals"]}
        assert retried >= TRANSIENT or name == "AlertUnreported", name
        assert any("States.ALL" in c["ErrorEquals"] for c in state["Catch"]), name
    for name in ("Snapshot", "Build", "Validate", "Publish"):
        (catch,) = lambda_tasks[name]["Catch"]
        # The failing step's name is where the error lands: the report reads it from there.
        assert catch == {
            "ErrorEquals": ["States.ALL"],
            "ResultPath": f"$.failed.{name}",
            "Next": "ReportFailure",
        }
    fails = [s for s in asl["States"].values() if s["Type"] == "Fail"]
    assert all(
        ("Error" in s or "ErrorPath" in s) and ("Cause" in s or "CausePath" in s) for s in fails
    )


def test_skip_and_gate_branches(asl: dict[str, Any]) -> None:
    states = asl["States"]
    assert states["Changed?"]["Choices"][0]["Variable"] == "$.snapshot.unchanged"
    assert states["Changed?"]["Choices"][0]["Next"] == "NothingChanged"
    assert states["Gate"]["Choices"][0] == {
        "Variable": "$.validation.passed",
        "BooleanEquals": True,
        "Next": "Publish",
    }
    assert states["Gate"]["Default"] == "Rejected"


def test_every_task_resource_names_a_function_of_the_template(asl: dict[str, Any]) -> None:
    assert TEMPLATE.is_file(), "template.yaml is missing"
    template = load_template(TEMPLATE)
    resources = template["Resources"]
    machines = [r for r in resources.values() if r["Type"] == "AWS::Serverless::StateMachine"]
    (machine,) = [
        m
        for m in machines
        if m["Properties"].get("DefinitionUri") == "statemachine/index_pipeline.asl.json"
    ]
    substitutions = machine["Properties"]["DefinitionSubstitutions"]
    assert placeholders(asl) == set(substitutions)
    tasks = [
        s for s in asl["States"].values() if s["Type"] == "Task" and s["Resource"].startswith("${")
    ]
    for state in tasks:
        (name,) = PLACEHOLDER.findall(state["Resource"])
        logical_id, attribute = substitutions[name]["Fn::GetAtt"]
        assert attribute == "Arn" and name == logical_id + "Arn"
        function = resources[logical_id]
        assert function["Type"] == "AWS::Serverless::Function"
        (command,) = function["Properties"]["ImageConfig"]["Command"]
        assert command == PIPELINE_HANDLERS[logical_id]
        module = command.split(".")[0]
        assert (ROOT / "functions" / module / "app.py").is_file()
        assert (ROOT / "functions" / module / "__init__.py").is_file()
    rollback = resources["RollbackIndexFunction"]["Properties"]["ImageConfig"]["Command"]
    assert rollback == [PIPELINE_HANDLERS["RollbackIndexFunction"]]
    schedules = [e for e in machine["Properties"]["Events"].values() if e["Type"] == "ScheduleV2"]
    assert schedules, "the pipeline has no EventBridge Scheduler trigger"


def test_render_definition_fills_every_placeholder(asl: dict[str, Any]) -> None:
    text = DEFINITION.read_text(encoding="utf-8")
    filled = render_definition(text, {name: "arn:x" for name in placeholders(asl)})
    assert "${" not in filled and json.loads(filled)["StartAt"] == "Snapshot"
    with pytest.raises(KeyError, match="AlertsTopicArn"):
        render_definition(text, {n: "arn:x" for n in placeholders(asl) - {"AlertsTopicArn"}})
