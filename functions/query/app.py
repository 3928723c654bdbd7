"""Query function: the HTTPS API (API Gateway HTTP API, payload format 2.0) and the search page.

Handler ``query.app.handler``. The model bundle and the serving index load in ``build``, at
init; all logic lives in ``imgsearch.query``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.query.http.api import QueryApi
from imgsearch.query.service import SearchService


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket", "table")
    service = SearchService.from_settings(settings, function.clients)
    api = QueryApi(service, function.metrics)

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return api.handle(event, context)

    instrumented = function.instrument(
        handler,
        metrics=True,
        correlation_id_path=correlation_paths.API_GATEWAY_HTTP,
        cold_start_metric=True,
    )
    instrumented.api = api  # type: ignore[attr-defined]  # tests reach the service and resolver
    return instrumented


handler = lambda_entry(build)
