"""Shared by the template and image-contract tests: ``template.yaml`` read through the devkit's
one loader (``imgsearch_devkit.local.template``), each function as a stand-in stack of it would
deploy it (SAM's transform applied, intrinsics resolved to the names CloudFormation would give),
and the tools venv (``make tools``) located.

    template = load_template()
    functions(template)                       # {"EmbedFunction": {...}, ...}
    function_environment(template, "QueryFunction")["IMGSEARCH_TABLE"]
    # "imgsearch-test-EmbeddingsTable"
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from imgsearch_devkit.local import template as loader
from imgsearch_devkit.local.template import StackTemplate, Template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
TOOLS_BIN = REPO / ".venv-tools" / "bin"
STACK_NAME = "imgsearch-test"
REGION = "us-east-1"

_stacks: dict[int, tuple[Template, StackTemplate]] = {}


def load_template() -> Template:
    return loader.load_template(TEMPLATE)


def stack(template: Template) -> StackTemplate:
    """The template as a stack named ``imgsearch-test`` would see it (parameters at their
    defaults); transformed once per loaded template."""
    if id(template) not in _stacks:
        _stacks[id(template)] = (template, StackTemplate(template, STACK_NAME, REGION))
    return _stacks[id(template)][1]


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``AWS::Serverless::Function`` resources, as written."""
    return loader.resources_of_type(template, "AWS::Serverless::Function")


def handler_command(function: dict[str, Any]) -> str:
    """``embed.app.handler`` from ImageConfig.Command."""
    return loader.handler_command(function["Properties"])


def resolve(template: Template, value: Any) -> Any:
    """Intrinsics to values: parameters take their defaults, resources their stand-in names."""
    return stack(template).resolve(value)


def function_environment(template: Template, name: str) -> dict[str, str]:
    """Globals plus the function's own variables, as Lambda would set them."""
    return stack(template).function(name).environment


def function_setting(template: Template, name: str, key: str) -> Any:
    """A function's property after SAM merged the Globals in, intrinsics resolved."""
    return stack(template).resolve(stack(template).properties(name).get(key))


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
