"""Shared by the template and image-contract tests: ``template.yaml`` read the way cfn-lint reads
it (short-form tags become ``{"Ref": ...}`` dicts), each function's deployed environment with
intrinsics resolved to plausible values, and the tools venv (``make tools``) located.

    template = load_template()
    functions(template)                       # {"EmbedFunction": {...}, ...}
    function_environment(template, "QueryFunction")["IMGSEARCH_TABLE"]   # "imgsearch-test-table"
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
TOOLS_BIN = REPO / ".venv-tools" / "bin"
STACK_NAME = "imgsearch-test"
ACCOUNT = "123456789012"
REGION = "us-east-1"

# What Ref/GetAtt of a resource returns, per type, in the stand-in stack.
_REF_FORMATS = {
    "AWS::S3::Bucket": "{stack}-bucket",
    "AWS::DynamoDB::Table": "{stack}-table",
    "AWS::SNS::Topic": "arn:aws:sns:{region}:{account}:{stack}-{logical}",
    "AWS::SQS::Queue": "https://sqs.{region}.amazonaws.com/{account}/{stack}-{logical}",
    "AWS::Serverless::StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{logical}",
}
_PSEUDO = {
    "AWS::StackName": STACK_NAME,
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


def load_template() -> dict[str, Any]:
    template, errors = decode(str(TEMPLATE))
    assert template is not None and not errors, f"template.yaml does not parse: {errors}"
    return template


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def handler_command(function: dict[str, Any]) -> str:
    """``embed.app.handler`` from ImageConfig.Command."""
    command = function["Properties"]["ImageConfig"]["Command"]
    assert len(command) == 1, f"one handler per function, got {command}"
    return command[0]


def resolve(template: dict[str, Any], value: Any) -> Any:
    """Intrinsics to strings: parameters take their defaults, resources plausible names."""
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return _ref(template, arg)
        if fn == "Fn::GetAtt":
            logical = arg[0] if isinstance(arg, list) else arg.split(".")[0]
            return f"arn:aws:resource:{REGION}:{ACCOUNT}:{logical}"
        if fn == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            names = {k: resolve(template, v) for k, v in extra.items()}
            return re.sub(
                r"\$\{([^}!]+)\}",
                lambda m: str(names.get(m[1]) or _ref(template, m[1].split(".")[0])),
                text,
            )
        if fn == "Fn::If":
            return resolve(template, arg[2])  # the "else" branch: parameters at their defaults
        raise AssertionError(f"test resolver does not know {fn}")
    return value


def _ref(template: dict[str, Any], name: str) -> str:
    if name in _PSEUDO:
        return _PSEUDO[name]
    parameter = template.get("Parameters", {}).get(name)
    if parameter is not None:
        return str(parameter.get("Default", ""))
    resource = template["Resources"][name]
    form = _REF_FORMATS.get(resource["Type"], "{stack}-{logical}")
    return form.format(stack=STACK_NAME, logical=name, region=REGION, account=ACCOUNT)


def function_environment(template: dict[str, Any], name: str) -> dict[str, str]:
    """Globals plus the function's own variables, as Lambda would set them."""
    merged = dict(template.get("Globals", {}).get("Function", {}).get("Environment", {}))
    merged = dict(merged.get("Variables", {}))
    own = template["Resources"][name]["Properties"].get("Environment", {}).get("Variables", {})
    merged.update(own)
    return {key: str(resolve(template, value)) for key, value in merged.items()}


def function_setting(template: dict[str, Any], name: str, key: str) -> Any:
    """A function's property, else the Globals'; a ``Ref`` to a parameter gives its default."""
    own = template["Resources"][name]["Properties"].get(key)
    value = own if own is not None else template["Globals"]["Function"].get(key)
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in template["Parameters"]:
        return template["Parameters"][value["Ref"]]["Default"]
    return value


def tool(name: str) -> str:
    """A tool from the tools venv, or a clear failure (never a silent skip)."""
    path = TOOLS_BIN / name
    if not path.is_file():
        found = shutil.which(name)
        hint = f" (a {name} on PATH at {found} is not used)" if found else ""
        pytest.fail(
            f"{path} is missing{hint}: run `make tools` to install aws-sam-cli and checkov "
            "into .venv-tools (requirements-tools.txt)"
        )
    return str(path)
