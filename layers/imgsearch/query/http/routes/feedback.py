"""``POST /feedback``: a click or a judgment on a search result, tied to the search by its
signed ``query_id``.

Included in the resolver by ``imgsearch.query.http.api``::

    app.include_router(feedback.router(service))

The body is read by hand (``uploads.read_json``) rather than by Powertools, which would also
parse form and multipart bodies: another content type is a 415, a body that is not a JSON
object or lacks a field a 400, a forged or stale ``query_id``, an unknown ``key`` or ``event``
a 422. Accepted feedback is written to the usage log (202).
"""

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import ValidationError

from imgsearch.query.http.models import FeedbackRequest, FeedbackResponse, responses
from imgsearch.query.http.uploads import read_json
from imgsearch.query.service import SearchService

FEEDBACK_BYTES = 8192
"""The largest feedback body: a query id, a key (at most 1,024 characters) and an event."""


def router(service: SearchService) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()
    answers = responses(
        FeedbackResponse,
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    )
    answers[int(HTTPStatus.ACCEPTED)] = answers.pop(200)

    @router.post(
        "/feedback",
        summary="Record a click or a relevance judgment on a search result",
        responses=answers,
        openapi_extensions={
            "requestBody": {
                "required": True,
                "content": {
                    content_types.APPLICATION_JSON: {"schema": FeedbackRequest.model_json_schema()}
                },
            }
        },
    )
    def feedback() -> Response[FeedbackResponse]:
        event = router.current_event
        document = read_json(
            event.headers.get("content-type") or "",
            event.body,
            event.is_base64_encoded,
            FEEDBACK_BYTES,
        )
        try:
            body = FeedbackRequest.model_validate(document)
        except ValidationError as exc:
            # The resolver's own handler words it, 400 or 422, as for any parameter.
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            raise RequestValidationError(errors) from exc
        accepted = service.feedback(body.query_id, body.key, body.event, body.rank)
        return Response(
            status_code=HTTPStatus.ACCEPTED,
            content_type=content_types.APPLICATION_JSON,
            body=accepted,
        )

    return router
