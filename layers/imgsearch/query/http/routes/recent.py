"""``GET /recent?k=``: the newest images of the served index, for the page's first view.

Included in the resolver by ``imgsearch.query.http.api``::

    app.include_router(recent.router(service, settings.api))
"""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from imgsearch.core.config import ApiSettings
from imgsearch.query.http.models import RecentResponse, responses
from imgsearch.query.http.routes.search import RESULTS
from imgsearch.query.service import SearchService


def router(service: SearchService, settings: ApiSettings) -> APIGatewayHttpRouter:
    """``k`` defaults to and is bounded by ``settings``, as for the searches."""
    router = APIGatewayHttpRouter()
    K = Annotated[
        int, Query(ge=1, le=settings.max_k, description=f"How many images (1-{settings.max_k})")
    ]

    @router.get(
        "/recent",
        summary="The newest indexed images (empty before the first index)",
        description=(
            "The newest images of the snapshot the served index was built from, newest first, "
            "without those deleted since; at most `IMGSEARCH_RECENT_IMAGES` of them."
        ),
        responses=responses(RecentResponse),
    )
    def recent_images(k: K = settings.default_k) -> RecentResponse:
        response = service.recent(k)
        router.append_context(**{RESULTS: len(response.results)})
        return response

    return router
