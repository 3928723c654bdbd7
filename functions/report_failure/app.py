"""ReportFailure: the index pipeline's Catch target.

Handler ``report_failure.app.handler``. Input: ``FailureInput`` (``{"execution":
$$.Execution.Id, "execution_name": $$.Execution.Name, "state": $}`` where ``$.failed.<Step>``
holds the caught ``{Error, Cause}``). Writes ``indexes/failures/<execution name>.json``, notifies
the alerts topic, returns ``FailureResult`` (``{step, error, cause, report_key}``) for the
``Fail`` state. Logic lives in
``imgsearch.pipeline.failure``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.pipeline.contracts import FailureInput
from imgsearch.pipeline.failure import report_failure


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket", "alerts_topic_arn")
    clients = function.clients

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        payload = FailureInput.parse(event)
        return report_failure(
            settings,
            clients.s3,
            clients.sns,
            execution_arn=payload.execution,
            execution_name=payload.execution_name or context.aws_request_id,
            state=payload.state,
        ).dump()

    return function.instrument(handler)


handler = lambda_entry(build)
