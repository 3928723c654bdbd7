"""Query function: the HTTPS API (API Gateway HTTP API, payload format 2.0) and the search page.

Handler ``query.app.handler``. The model bundle and the serving index load in ``build``, at
init; all logic lives in ``imgsearch.query``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.core.after_response import AfterResponse
from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.query.http.api import QueryApi
from imgsearch.query.service import SearchService


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket", "table")
    # On Lambda, a swap to a new version runs after a response, never beside a request.
    after = None
    if settings.index.refresh_in == "after-response":
        after = AfterResponse.register(settings.runtime_api, "imgsearch-index-refresh")
    service = SearchService.from_settings(
        settings, function.clients, defer=after.defer if after else None
    )
    api = QueryApi(service, function.metrics)

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return api.handle(event, context)

    instrumented = function.instrument(
        handler,
        metrics=True,
        correlation_id_path=correlation_paths.API_GATEWAY_HTTP,
        cold_start_metric=True,
    )
    if after is not None:
        instrumented = after.wrap(instrumented)
    instrumented.api = api  # type: ignore[attr-defined]  # tests reach the service and resolver
    return instrumented


handler = lambda_entry(build)
