"""List (and ListMore): the backfill's listing, a budget of objects per call.

Handler ``backfill_list.app.handler``. Input: ``ListInput`` — ``{"options": <execution input>,
"run_id": $$.Execution.Name, "started_at": $$.Execution.StartTime}`` for the first call,
``{"listing": $.listing}`` for the next. Output: ``ListingState.dump()`` (``done`` ends the loop).
Logic lives in ``imgsearch.backfill.listing``.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.backfill.contracts import BackfillOptions, ListInput
from imgsearch.backfill.listing import begin, list_more
from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry

MARGIN_SECONDS = 60.0
"""Stop listing this long before the Lambda's timeout: enough to write the last manifest."""


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket")
    s3 = function.clients.s3

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        payload = ListInput.parse(event)
        deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - MARGIN_SECONDS
        state = payload.listing or begin(
            settings,
            s3,
            payload.options or BackfillOptions(),
            run_id=payload.run_id or context.aws_request_id,
            started_at=payload.started_at,
        )
        return list_more(settings, s3, state, deadline).dump()

    return function.instrument(handler)


handler = lambda_entry(build)
