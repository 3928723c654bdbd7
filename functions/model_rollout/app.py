"""Begin, Promote and Reject: the model rollout's own steps.

Handler ``model_rollout.app.handler``. Input: ``{"action": "begin" | "promote" | "reject", ...}``
with the fields of ``BeginInput``, ``PromoteInput`` or ``RejectInput``
(``statemachine/model_rollout.asl.json`` builds them). Output: ``RolloutState`` (begin) or
``RolloutResult``. Logic lives in ``imgsearch.rollout.steps``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.catalog.errors import ContractError
from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.rollout.steps import (
    BeginInput,
    PromoteInput,
    RejectInput,
    begin,
    promote,
    reject,
)


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket")
    clients = function.clients

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        action = event.get("action") if isinstance(event, dict) else None
        if action == "begin":
            return begin(settings, clients.s3, BeginInput.parse(event)).dump()
        if action == "promote":
            return promote(settings, clients.s3, PromoteInput.parse(event)).dump()
        if action == "reject":
            return reject(settings, clients.s3, clients.sns, RejectInput.parse(event)).dump()
        raise ContractError(f'"action" must be begin, promote or reject, got {action!r}')

    return function.instrument(handler)


handler = lambda_entry(build)
