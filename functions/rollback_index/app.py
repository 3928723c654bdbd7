"""Rollback: put an earlier validated index version back as the serving one.

Handler ``rollback_index.app.handler``. Input: ``RollbackInput`` (``{}``, one step back, or
``{"to": VERSION}``). Output: the new ``current.json`` (``CurrentIndex.dump()``). Same logic as
``imgsearch index rollback`` (``imgsearch.pipeline.rollback``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.pipeline.rollback import parse_rollback_input, rollback


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket")
    clients = function.clients

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        current = rollback(settings, clients.s3, to=parse_rollback_input(event))
        return current.dump()

    return function.instrument(handler)


handler = lambda_entry(build)
