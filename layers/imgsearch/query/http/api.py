"""The query HTTP API: a Powertools ``APIGatewayHttpResolver`` with validation and OpenAPI,
assembled from one router per route group (``imgsearch.query.http.routes``).

Routes (the OpenAPI document at ``/openapi.json`` and Swagger UI at ``/docs`` are generated from
the route functions and ``imgsearch.query.http.models``)::

    GET  /search?q=&k=&cursor=&min_score=    text -> images              routes/search.py
    POST /search?k=&cursor=&min_score=       image -> images (raw image/* body, or JSON base64)
    GET  /images/{key}/similar?k=&cursor=    more like a stored image
    GET  /recent?k=                          the newest images (first view)  routes/recent.py
    POST /feedback                           a click or judgment on a result routes/feedback.py
    GET  /health   GET /version   GET /      (the search page)           routes/meta.py

Every error is JSON ``{"status", "error", "message", "details"?}`` with the right status; a
known path asked with another method gets a 405 with ``Allow``; no input reaches a 500.
``QueryApi.handle`` resolves one event and records per-route metrics::

    api = QueryApi(service, metrics)
    api.handle(event, context)      # the handler's whole body
"""

import functools
import json
import logging
import re
import time
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, single_metric

from imgsearch.query.errors import (
    ApiError,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    Unprocessable,
)
from imgsearch.query.http.routes import feedback, meta, recent, search
from imgsearch.query.service import SearchService

logger = logging.getLogger(__name__)

UNMATCHED_ROUTE = "unmatched"
OPENAPI_INFO = {
    "title": "imgsearch query API",
    "version": "1.0",
    "description": "Semantic image search: text, image and similar-image queries over S3 images.",
}
_MALFORMED = {
    "json_invalid",
    "model_attributes_type",
    "model_type",
    "missing",
    "string_unicode",
    "string_too_short",
    "string_pattern_mismatch",
}
"""Validation error types that mean a malformed request (400) rather than a bad value (422):
a body that is not JSON or not an object, a missing field, and an empty ``q`` (the last two:
``minLength`` 1, pattern ``\\S``)."""
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _json_error(error: ApiError) -> Response:
    headers = {"Allow": ", ".join(error.allow)} if isinstance(error, MethodNotAllowed) else None
    return Response(
        status_code=int(error.status),
        content_type=content_types.APPLICATION_JSON,
        body=error.body(),
        headers=headers,
    )


def _path_pattern(template: str) -> re.Pattern[str]:
    """``/images/{key}/similar`` -> a pattern of the raw paths it matches."""
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


class RouteMetrics:
    """Per-route latency, results and errors, added to the handler's Powertools ``Metrics``."""

    def __init__(self, metrics: EphemeralMetrics | None) -> None:
        self.metrics = metrics
        self.route = UNMATCHED_ROUTE
        self.results: int | None = None

    def note_route(self, app: APIGatewayHttpResolver) -> None:
        route = app.context.get("_route")
        if route is not None:
            self.route = f"{route.method} {route.openapi_path}"

    def record(self, status: int, seconds: float) -> None:
        if self.metrics is None:
            return
        self.metrics.add_dimension(name="route", value=self.route)
        self.metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=seconds * 1e3)
        self.metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        self.metrics.add_metric(
            name="ClientErrors", unit=MetricUnit.Count, value=int(400 <= status < 500)
        )
        self.metrics.add_metric(
            name="ServerErrors", unit=MetricUnit.Count, value=int(status >= 500)
        )
        if self.results is not None:
            self.metrics.add_metric(name="Results", unit=MetricUnit.Count, value=self.results)

    def fresh_full(self) -> None:
        """``FreshSegmentFull`` (its alarm's metric), on each request while the fresh set is
        full: with the service dimension only, not the route's."""
        if self.metrics is None:
            return
        dimensions = {"service": self.metrics.service or ""}
        with single_metric(
            name="FreshSegmentFull",
            unit=MetricUnit.Count,
            value=1,
            namespace=self.metrics.namespace,
            default_dimensions=dimensions,
        ):
            pass


class QueryApi:
    """The resolver and its per-request bookkeeping for one ``SearchService``."""

    def __init__(self, service: SearchService, metrics: EphemeralMetrics | None = None) -> None:
        self.service = service
        self.stats = RouteMetrics(metrics)
        self.app = create_app(service, self.stats)

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.stats.route, self.stats.results = UNMATCHED_ROUTE, None
        started = time.perf_counter()
        response = self.app.resolve(event, context)
        self.stats.record(int(response.get("statusCode", 500)), time.perf_counter() - started)
        served = self.service.server.served
        if served is not None and served.fresh.full:
            self.stats.fresh_full()
        return response


def create_app(service: SearchService, stats: RouteMetrics | None = None) -> APIGatewayHttpResolver:
    """The resolver with every router, the OpenAPI document and the error mapping."""
    stats = stats or RouteMetrics(None)
    app = APIGatewayHttpResolver(enable_validation=True)
    app.enable_swagger(path="/docs", **OPENAPI_INFO)

    def measure(app: APIGatewayHttpResolver, next_middleware: Any) -> Response:
        stats.note_route(app)
        response = next_middleware(app)
        stats.results = app.context.get(search.RESULTS)  # set by a search route or /recent
        return response

    app.use([measure])

    @app.get("/openapi.json", include_in_schema=False)
    def openapi():
        body = app.get_openapi_json_schema(**OPENAPI_INFO)
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=body)

    @functools.cache
    def published_paths() -> list[tuple[re.Pattern[str], list[str]]]:
        """Each published path and its methods, from the OpenAPI document (read once)."""
        paths = json.loads(app.get_openapi_json_schema(**OPENAPI_INFO))["paths"]
        return [
            (_path_pattern(path), [m.upper() for m in _METHODS if m in item])
            for path, item in paths.items()
        ]

    app.include_router(meta.router(service))
    app.include_router(search.router(service, service.settings.api))
    app.include_router(recent.router(service, service.settings.api))
    app.include_router(feedback.router(service))

    @app.exception_handler(ApiError)
    def api_error(error: ApiError) -> Response:
        stats.note_route(app)
        log = logger.warning if error.status >= 500 else logger.info
        log("request refused: %s", error.message, extra={"status": int(error.status)})
        return _json_error(error)

    @app.exception_handler(RequestValidationError)
    def invalid_request(error: RequestValidationError) -> Response:
        stats.note_route(app)
        problems = [
            {"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")}
            for e in error.errors()
        ]
        kind = BadRequest if any(p["type"] in _MALFORMED for p in problems) else Unprocessable
        summary = "; ".join(
            f"{'.'.join(str(part) for part in p['loc'])}: {p['msg']}" for p in problems
        )
        return _json_error(kind(summary or "invalid request", errors=problems))

    @app.not_found
    def not_found(_: NotFoundError) -> Response:
        event = app.current_event
        for pattern, methods in published_paths():
            if pattern.fullmatch(event.path):
                return _json_error(
                    MethodNotAllowed(
                        f"{event.path} does not take {event.http_method}; it takes "
                        + ", ".join(methods),
                        allow=methods,
                    )
                )
        return _json_error(NotFound(f"no route {event.http_method} {event.path}"))

    @app.exception_handler(Exception)
    def unexpected(error: Exception) -> Response:
        stats.note_route(app)
        logger.exception("unhandled error")
        body = {"status": 500, "error": "internal", "message": "internal error"}
        return Response(status_code=500, content_type=content_types.APPLICATION_JSON, body=body)

    return app
