"""Prepare, Evaluate, Register, Finish and Fail: the retraining workflow's own steps.

Handler ``retrain.app.handler``. Input: ``{"action": "prepare" | "evaluate" | "register" |
"finish" | "fail", ...}`` with the fields of ``PrepareInput``, ``EvaluateInput``,
``RegisterInput``, ``FinishInput`` or ``FailInput`` (``statemachine/retrain.asl.json`` builds
them). The training itself is a SageMaker training job. Logic lives in
``imgsearch.retrain.steps``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.catalog.errors import ContractError
from imgsearch.catalog.retraining import execution_running
from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.retrain.steps import (
    EvaluateInput,
    FailInput,
    FinishInput,
    PrepareInput,
    RegisterInput,
    evaluate,
    fail,
    finish,
    prepare,
    register,
)


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket", "table")
    clients = function.clients
    sfn = clients.client("stepfunctions")

    def is_running(execution: str) -> bool:
        return execution_running(sfn, execution)

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        action = event.get("action") if isinstance(event, dict) else None
        if action == "prepare":
            return prepare(settings, clients, PrepareInput.parse(event), is_running).dump()
        if action == "evaluate":
            return evaluate(settings, clients, EvaluateInput.parse(event)).dump()
        if action == "register":
            return register(settings, clients, RegisterInput.parse(event)).dump()
        if action == "finish":
            return finish(settings, clients, FinishInput.parse(event)).dump()
        if action == "fail":
            return fail(settings, clients, FailInput.parse(event)).dump()
        raise ContractError(
            f'"action" must be prepare, evaluate, register, finish or fail, got {action!r}'
        )

    return function.instrument(handler)


handler = lambda_entry(build)
