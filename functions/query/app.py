"""Query function: the HTTPS API (API Gateway HTTP API, payload format 2.0) and the search page.

Handler ``query.app.handler``. The model bundle and the serving index load here, at init; all
logic lives in ``imgsearch.search``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.config import Settings
from imgsearch.search.api import QueryApi
from imgsearch.search.service import SearchService

settings = Settings.from_env()
logger = Logger()
metrics = Metrics()
tracer = Tracer()
# The library logs through the standard ``logging``: give it this Logger's JSON and request id.
copy_config_to_registered_loggers(source_logger=logger, include={"imgsearch"})
service = SearchService.from_settings(settings)
api = QueryApi(service, metrics)
app = api.app


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.handle(event, context)
