"""``GET /`` (the search page), ``GET /health`` and ``GET /version``.

Included in the resolver by ``imgsearch.query.http.api``::

    app.include_router(meta.router(service))
"""

from importlib import resources

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from imgsearch.query.http.models import Health, VersionResponse, responses
from imgsearch.query.service import SearchService


def router(service: SearchService) -> APIGatewayHttpRouter:
    """The page and what a monitor or a client asks about the service itself."""
    router = APIGatewayHttpRouter()
    page_html = resources.files("imgsearch.query.http").joinpath("page.html").read_text("utf-8")

    @router.get("/", include_in_schema=False)
    def page():
        return Response(status_code=200, content_type="text/html; charset=utf-8", body=page_html)

    @router.get(
        "/health",
        summary="Liveness and whether an index is loaded (no model or index work)",
        responses=responses(Health),
    )
    def health() -> Health:
        return service.health()

    @router.get(
        "/version",
        summary="Model and index versions, with the index's headline figures",
        responses=responses(VersionResponse),
    )
    def version_info() -> VersionResponse:
        return service.version()

    return router
